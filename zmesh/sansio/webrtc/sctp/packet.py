"""SCTP common header and CRC32c checksum (RFC 9260 §3.1, Appendix A).

An SCTP packet is a 12-byte common header (source port, destination port, verification tag,
CRC32c checksum) followed by chunks. Over DTLS (RFC 8261) the ports are the SDP
``a=sctp-port`` values (5000 for every browser) and the checksum is still required.

The CRC32c comes from the ``google-crc32c`` wheel (a C/SSE4.2 kernel; it is already a
dependency of aiortc) when it imports, else from the table-driven pure-Python twin below,
which the tests hold the C kernel to. :data:`CRC32C_BACKEND` says which one is in use.

:class:`PacketBuilder` writes a packet into one pre-allocated ``bytearray`` of the path MTU,
so the hot path (DATA chunks) packs fields with precompiled :class:`struct.Struct` objects and
copies each payload exactly once.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from zmesh.sansio.wire import LocalProtocolError, MalformedInput, TruncatedInput

__all__ = [
    "COMMON_HEADER_SIZE",
    "CRC32C_BACKEND",
    "PacketBuilder",
    "PacketHeader",
    "crc32c",
    "crc32c_extend",
    "crc32c_python",
    "parse_header",
    "packet_checksum_ok",
    "with_checksum",
]

COMMON_HEADER_SIZE: Final = 12
_HEADER: Final = struct.Struct("!HHI")
_CRC: Final = struct.Struct("<I")  # RFC 9260 Appendix A: the CRC32c is stored little-endian
_ZERO4: Final = b"\x00\x00\x00\x00"
_PADDING: Final = (b"", b"\x00", b"\x00\x00", b"\x00\x00\x00")

# Castagnoli polynomial, reflected (RFC 9260 Appendix A).
_POLY: Final = 0x82F63B78


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE: Final = _make_table()


def crc32c_python(data: bytes, crc: int = 0) -> int:
    """Table-driven CRC32c (the specification twin of the C kernel)."""
    table = _TABLE
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_python_value(data: bytes) -> int:
    return crc32c_python(data)


def _crc32c_python_extend(crc: int, data: bytes) -> int:
    return crc32c_python(data, crc)


def _load_backend() -> tuple[Callable[[bytes], int], Callable[[int, bytes], int], str]:
    try:
        from google_crc32c import _crc32c  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # pragma: no cover - depends on the environment
        return _crc32c_python_value, _crc32c_python_extend, "python"
    value: Callable[[bytes], int] = _crc32c.value
    extend: Callable[[int, bytes], int] = _crc32c.extend
    return value, extend, "google-crc32c"


#: ``crc32c(data)`` and ``crc32c_extend(crc, more)`` from the backend picked at import.
crc32c, crc32c_extend, CRC32C_BACKEND = _load_backend()


class PacketHeader:
    """The parsed common header (a plain slotted object: one per received packet)."""

    __slots__ = ("destination_port", "source_port", "verification_tag")

    def __init__(self, source_port: int, destination_port: int, verification_tag: int) -> None:
        self.source_port = source_port
        self.destination_port = destination_port
        self.verification_tag = verification_tag

    def __repr__(self) -> str:
        return (
            f"PacketHeader({self.source_port}->{self.destination_port}, "
            f"vtag={self.verification_tag:#010x})"
        )


def parse_header(packet: bytes) -> PacketHeader:
    """Read the common header; raises :class:`TruncatedInput` for a runt packet."""
    if len(packet) < COMMON_HEADER_SIZE:
        raise TruncatedInput(f"SCTP packet of {len(packet)} bytes is shorter than its header")
    src, dst, vtag = _HEADER.unpack_from(packet, 0)
    if src == 0 or dst == 0:
        raise MalformedInput("SCTP port 0")
    return PacketHeader(src, dst, vtag)


def packet_checksum_ok(packet: bytes) -> bool:
    """True if the CRC32c in the header matches the packet (checksum field taken as zero)."""
    if len(packet) < COMMON_HEADER_SIZE:
        return False
    expected: int = _CRC.unpack_from(packet, 8)[0]
    return crc32c(packet[:8] + _ZERO4 + packet[12:]) == expected


def with_checksum(packet: bytes | bytearray) -> bytes:
    """Return ``packet`` with its checksum field filled in (used by tests and tools)."""
    buf = bytearray(packet)
    buf[8:12] = _ZERO4
    _CRC.pack_into(buf, 8, crc32c(bytes(buf)))
    return bytes(buf)


class PacketBuilder:
    """Assembles SCTP packets of at most ``max_size`` bytes.

    Usage: :meth:`start`, then :meth:`append` / :meth:`append_data` while :attr:`room` allows,
    then :meth:`finish` which returns the packet bytes with the checksum set.

    The packet is kept as a list of ``bytes`` parts: the CRC32c runs over the parts in place
    (the C kernel's ``extend``) and one ``join`` makes the packet, so a DATA payload is copied
    once on its way out (twice when it is a fragment cut out of a larger message).
    """

    __slots__ = ("_header", "_header_crc", "_parts", "_size", "max_size")

    _DATA_HEADER: Final = struct.Struct("!BBHIHHI")

    def __init__(self, max_size: int) -> None:
        if max_size < 64:
            raise LocalProtocolError(f"SCTP packet size {max_size} is too small")
        self.max_size = max_size
        self._header = b""
        self._header_crc = 0  # CRC32c of header + zero checksum: the same for every packet
        self._parts: list[bytes] = []
        self._size = COMMON_HEADER_SIZE

    def start(self, source_port: int, destination_port: int, verification_tag: int) -> None:
        header = _HEADER.pack(source_port, destination_port, verification_tag)
        if header != self._header:
            self._header = header
            self._header_crc = crc32c(header + _ZERO4)
        self._parts = []
        self._size = COMMON_HEADER_SIZE

    @property
    def room(self) -> int:
        """Bytes still free in the packet."""
        return self.max_size - self._size

    @property
    def empty(self) -> bool:
        return self._size == COMMON_HEADER_SIZE

    def append(self, chunk: bytes) -> None:
        """Append one encoded chunk (already padded to a multiple of four bytes)."""
        size = self._size + len(chunk)
        if size > self.max_size:
            raise LocalProtocolError("chunk does not fit the packet")
        self._parts.append(chunk)
        self._size = size

    def append_data(
        self,
        flags: int,
        tsn: int,
        stream_id: int,
        ssn: int,
        ppid: int,
        payload: bytes,
    ) -> None:
        """Append a DATA chunk (RFC 9260 §3.3.1) without building an intermediate object."""
        length = 16 + len(payload)
        pad = -length & 3
        size = self._size + length + pad
        if size > self.max_size:
            raise LocalProtocolError("DATA chunk does not fit the packet")
        parts = self._parts
        parts.append(self._DATA_HEADER.pack(0, flags, length, tsn, stream_id, ssn, ppid))
        parts.append(payload)
        if pad:
            parts.append(_PADDING[pad])
        self._size = size

    def finish(self) -> bytes:
        header = self._header
        crc = self._header_crc
        parts = self._parts
        for part in parts:
            crc = crc32c_extend(crc, part)
        packet = b"".join((header, _CRC.pack(crc), *parts))
        self._parts = []
        self._size = COMMON_HEADER_SIZE
        return packet
