"""Read a (D)TLS ClientHello and compute its JA4 and JA3 fingerprints.

Used by the stealth tests to compare our DTLS ClientHello with Chromium's, field by field
(RFC 6347 §4.2.2 ClientHello with cookie, RFC 8446 §4.1.2 fields, RFC 6066/8422/5764
extensions), and by the fuzz harness for record framing. JA4 follows FoxIO's specification
(technical_details/JA4.md): ``d`` for DTLS, version ``d2``/``d3`` for DTLS 1.2/1.3, ``d``/``i``
for SNI present or not, two-digit cipher and extension counts (GREASE excluded), the first and
last characters of the first ALPN value (``00`` if none), then the first 12 hex digits of the
SHA-256 of the sorted cipher list and of the sorted extension list (without SNI and ALPN)
followed by ``_`` and the signature algorithms in their original order. JA3 is the classic
``version,ciphers,extensions,groups,point_formats`` MD5.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from zmesh.sansio.webrtc.dtls import split_records
from zmesh.sansio.wire import MalformedInput, Reader, TruncatedInput

__all__ = ["ClientHello", "parse_dtls_client_hello", "parse_client_hello_body", "ja4", "ja3"]

_GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_VERSION_NAMES = {0xFEFD: "d2", 0xFEFC: "d3", 0xFEFF: "d1", 0x0303: "12", 0x0304: "13"}
MAX_HELLO = 1 << 16


@dataclass(frozen=True)
class ClientHello:
    version: int
    random: bytes
    session_id: bytes
    cookie: bytes | None  # DTLS only
    ciphers: tuple[int, ...]
    compression: bytes
    extensions: tuple[tuple[int, bytes], ...]  # in wire order

    def extension(self, ext_type: int) -> bytes | None:
        for kind, data in self.extensions:
            if kind == ext_type:
                return data
        return None

    @property
    def extension_types(self) -> tuple[int, ...]:
        return tuple(kind for kind, _ in self.extensions)

    def _u16_list(self, ext_type: int, prefix: int = 2) -> tuple[int, ...]:
        data = self.extension(ext_type)
        if data is None:
            return ()
        reader = Reader(data)
        length = reader.uint(prefix)
        body = Reader(reader.view(length))
        values = []
        while not body.at_end():
            values.append(body.u16())
        return tuple(values)

    @property
    def groups(self) -> tuple[int, ...]:
        return self._u16_list(0x000A)

    @property
    def signature_algorithms(self) -> tuple[int, ...]:
        return self._u16_list(0x000D)

    @property
    def srtp_profiles(self) -> tuple[int, ...]:
        return self._u16_list(0x000E)

    @property
    def supported_versions(self) -> tuple[int, ...]:
        data = self.extension(0x002B)
        if data is None:
            return ()
        reader = Reader(data)
        body = Reader(reader.view(reader.u8()))
        values = []
        while not body.at_end():
            values.append(body.u16())
        return tuple(values)

    @property
    def alpn(self) -> tuple[bytes, ...]:
        data = self.extension(0x0010)
        if data is None:
            return ()
        reader = Reader(data)
        body = Reader(reader.view(reader.u16()))
        names = []
        while not body.at_end():
            names.append(body.bytes_(body.u8()))
        return tuple(names)

    @property
    def point_formats(self) -> tuple[int, ...]:
        data = self.extension(0x000B)
        if data is None:
            return ()
        reader = Reader(data)
        return tuple(reader.bytes_(reader.u8()))


def parse_client_hello_body(body: bytes | memoryview, *, dtls: bool = True) -> ClientHello:
    """Parse the ClientHello message body (after the handshake header)."""
    reader = Reader(body)
    version = reader.u16()
    random = reader.bytes_(32)
    session_id = reader.bytes_(reader.u8())
    if len(session_id) > 32:
        raise MalformedInput("session id longer than 32 bytes")
    cookie = reader.bytes_(reader.u8()) if dtls else None
    cipher_len = reader.u16()
    if cipher_len % 2:
        raise MalformedInput("odd cipher suite length")
    cipher_reader = Reader(reader.view(cipher_len))
    ciphers = tuple(cipher_reader.u16() for _ in range(cipher_len // 2))
    compression = reader.bytes_(reader.u8())
    extensions: list[tuple[int, bytes]] = []
    if not reader.at_end():
        ext_reader = Reader(reader.view(reader.u16()))
        while not ext_reader.at_end():
            ext_type = ext_reader.u16()
            extensions.append((ext_type, ext_reader.bytes_(ext_reader.u16())))
    reader.expect_end()
    return ClientHello(version, random, session_id, cookie, ciphers, compression,
                       tuple(extensions))


def parse_dtls_client_hello(datagrams: list[bytes]) -> ClientHello:
    """Reassemble the ClientHello from the first handshake records of one or more datagrams."""
    fragments: dict[int, bytes] = {}
    total: int | None = None
    for datagram in datagrams:
        for record in split_records(datagram):
            if record.content_type != _HANDSHAKE or record.epoch != 0:
                continue
            reader = Reader(record.fragment)
            while not reader.at_end():
                msg_type = reader.u8()
                length = reader.u24()
                _seq = reader.u16()
                offset = reader.u24()
                frag_len = reader.u24()
                data = reader.bytes_(frag_len)
                if msg_type != _CLIENT_HELLO:
                    continue
                if length > MAX_HELLO or offset + frag_len > length:
                    raise MalformedInput("ClientHello fragment out of bounds")
                total = length
                fragments[offset] = data
    if total is None:
        raise TruncatedInput("no ClientHello in these datagrams")
    body = bytearray(total)
    covered = 0
    for offset in sorted(fragments):
        data = fragments[offset]
        body[offset : offset + len(data)] = data
        covered = max(covered, offset + len(data)) if offset <= covered else covered
    if covered < total:
        raise TruncatedInput("ClientHello fragments do not cover the message")
    return parse_client_hello_body(bytes(body), dtls=True)


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def ja4(hello: ClientHello, *, transport: str = "d") -> str:
    versions = [v for v in hello.supported_versions if v not in _GREASE]
    version = max(versions, key=_version_rank) if versions else hello.version
    ciphers = [c for c in hello.ciphers if c not in _GREASE]
    ext_types = [e for e in hello.extension_types if e not in _GREASE]
    sni = "d" if 0x0000 in ext_types else "i"
    alpn_values = hello.alpn
    if alpn_values and alpn_values[0]:
        first = alpn_values[0].decode("latin-1")
        alpn = first[0] + first[-1]
    else:
        alpn = "00"
    part_a = (f"{transport}{_VERSION_NAMES.get(version, '00')}{sni}"
              f"{min(len(ciphers), 99):02d}{min(len(ext_types), 99):02d}{alpn}")
    part_b = _hash12(",".join(f"{c:04x}" for c in sorted(ciphers)))
    exts = ",".join(f"{e:04x}" for e in sorted(ext_types) if e not in (0x0000, 0x0010))
    sigalgs = ",".join(f"{s:04x}" for s in hello.signature_algorithms)
    part_c = _hash12(f"{exts}_{sigalgs}" if sigalgs else exts)
    return f"{part_a}_{part_b}_{part_c}"


def _version_rank(version: int) -> int:
    # DTLS versions count down (0xfeff=1.0, 0xfefd=1.2, 0xfefc=1.3): invert them to compare.
    return 0x10000 - version if version >= 0xFE00 else version


def ja3(hello: ClientHello) -> tuple[str, str]:
    """(JA3 string, its MD5): version,ciphers,extensions,groups,point formats."""
    def join(values: tuple[int, ...] | list[int]) -> str:
        return "-".join(str(v) for v in values if v not in _GREASE)

    text = ",".join([str(hello.version), join(hello.ciphers), join(hello.extension_types),
                     join(hello.groups), join(hello.point_formats)])
    return text, hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
