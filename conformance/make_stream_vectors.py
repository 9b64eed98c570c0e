"""Write ``conformance/vectors/streams-v1.json``: STREAM message vectors (``docs/wire/streams.md``).

Run ``python -m conformance.make_stream_vectors`` (or ``python conformance/make_stream_vectors.py``)
from the repository root. The bytes are assembled here from the documented layout with
``struct`` (``type u8 | stream_id u16 | body``), not by the zmesh encoder, so the suite compares
the codec with the document rather than with itself. Deterministic; ``build`` refuses vectors
the suite does not pass.
"""

from __future__ import annotations

import json
import pathlib
import struct
import sys
import tempfile
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from conformance import streams as suite

OUTPUT = suite.STREAMS_V1

# docs/wire/streams.md §1-§2, written out independently of zmesh/sansio/streams.
BEGIN, CONNECTED, DATA, END, RESET, SENDME = range(1, 7)
ATYP = {"IPV4": 1, "DOMAIN": 3, "IPV6": 4}
REASONS = {
    "GENERAL_FAILURE": 0x01,
    "POLICY_REFUSED": 0x02,
    "NETWORK_UNREACHABLE": 0x03,
    "HOST_UNREACHABLE": 0x04,
    "CONNECTION_REFUSED": 0x05,
    "TTL_EXPIRED": 0x06,
    "PROTOCOL_ERROR": 0x10,
    "RESOURCE_LIMIT": 0x11,
    "CANCELLED": 0x12,
    "CIRCUIT_FAILED": 0x13,
}


def _head(kind: int, stream_id: int) -> bytes:
    return struct.pack("!BH", kind, stream_id)


def _begin_name(stream_id: int, name: bytes, port: int) -> bytes:
    return _head(BEGIN, stream_id) + bytes((ATYP["DOMAIN"], len(name))) + name + _port(port)


def _port(port: int) -> bytes:
    return struct.pack("!H", port)


def _valid() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, message: dict[str, Any], wire: bytes, **extra: Any) -> None:
        out.append({"name": name, "message": message, "encoded": wire.hex(), **extra})

    def begin(
        name: str, sid: int, host: str, atyp: str, address: bytes, port: int, **x: Any
    ) -> None:
        wire = _head(BEGIN, sid) + bytes((ATYP[atyp],)) + address + _port(port)
        message = {"type": "BEGIN", "stream_id": sid, "host": host, "address_type": atyp}
        add(name, {**message, "port": port}, wire, **x)

    long_name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 63])  # 255 bytes, labels of 63
    for label, host in [
        ("BEGIN hostname (docs example)", "example.org"),
        ("BEGIN hostname with a root dot", "example.org."),
        ("BEGIN single-label hostname", "localhost"),
        ("BEGIN hostname, mixed case, digits, - and _", "Srv_1.Foo-Bar.example"),
        ("BEGIN 255-byte hostname", long_name),
        ("BEGIN one-letter hostname", "a"),
    ]:
        raw = host.encode()
        begin(label, 1, host, "DOMAIN", bytes((len(raw),)) + raw, 443)
    begin("BEGIN IPv4 (docs example)", 0x1234, "192.0.2.7", "IPV4", bytes([192, 0, 2, 7]), 80)
    begin("BEGIN IPv4, highest stream id and port", 0xFFFF, "0.0.0.0", "IPV4", bytes(4), 0xFFFF)
    begin(
        "BEGIN IPv6 (docs example)",
        2,
        "2001:db8::1",
        "IPV6",
        bytes.fromhex("20010db8000000000000000000000001"),
        8080,
        also_encodes_from=["2001:DB8::1", "2001:0db8:0:0:0:0:0:1"],
    )
    begin("BEGIN IPv6 loopback, port 1", 3, "::1", "IPV6", bytes(15) + b"\x01", 1)
    begin(
        "BEGIN IPv6, longest zero run compressed (RFC 5952)",
        4,
        "2001:db8::1:0:0:1",
        "IPV6",
        bytes.fromhex("20010db8000000000001000000000001"),
        22,
        also_encodes_from=["2001:db8:0:0:1:0:0:1"],
    )
    add("CONNECTED", {"type": "CONNECTED", "stream_id": 7}, _head(CONNECTED, 7))
    add("CONNECTED stream 65535", {"type": "CONNECTED", "stream_id": 0xFFFF}, _head(2, 0xFFFF))
    for label, data in [
        ("DATA one byte", b"\x00"),
        ("DATA text", b"hi"),
        ("DATA 965 bytes (fills a 968-byte relay payload)", bytes(range(256)) * 3 + bytes(197)),
    ]:
        add(label, {"type": "DATA", "stream_id": 7, "data": data.hex()}, _head(DATA, 7) + data)
    add("END", {"type": "END", "stream_id": 7}, _head(END, 7))
    for name, code in REASONS.items():
        add(
            f"RESET {name}",
            {
                "type": "RESET",
                "stream_id": 7,
                "reason": name,
                "reason_code": code,
                "socks_reply": code if code <= 6 else 1,  # docs/wire/streams.md, RESET table
            },
            _head(RESET, 7) + bytes((code,)),
        )
    for label, sid, credit in [
        ("SENDME circuit (docs example)", 0, 131072),
        ("SENDME stream", 9, 32768),
        ("SENDME smallest credit", 0xFFFF, 1),
        ("SENDME largest credit", 1, 0x7FFF_FFFF),
    ]:
        add(
            label,
            {"type": "SENDME", "stream_id": sid, "credit": credit},
            _head(SENDME, sid) + struct.pack("!I", credit),
        )
    return out


def _invalid() -> list[dict[str, Any]]:
    m, t = "MalformedInput", "TruncatedInput"
    ipv4 = bytes((ATYP["IPV4"],)) + bytes([127, 0, 0, 1])
    cases: list[tuple[str, bytes, str]] = [
        ("empty", b"", t),
        ("type only", b"\x01", t),
        ("half a stream id", b"\x02\x00", t),
        ("type 0", _head(0, 1), m),
        ("type 7", _head(7, 1), m),
        ("type 255", _head(255, 1), m),
        ("BEGIN on stream 0", _head(BEGIN, 0) + ipv4 + _port(80), m),
        ("BEGIN to port 0", _head(BEGIN, 1) + ipv4 + _port(0), m),
        ("BEGIN ATYP 2", _head(BEGIN, 1) + b"\x02" + bytes(4) + _port(80), m),
        ("BEGIN ATYP 0", _head(BEGIN, 1) + b"\x00" + bytes(4) + _port(80), m),
        ("BEGIN without an address", _head(BEGIN, 1), t),
        ("BEGIN IPv4 cut short", _head(BEGIN, 1) + ipv4[:4], t),
        ("BEGIN without a port", _head(BEGIN, 1) + ipv4, t),
        ("BEGIN half a port", _head(BEGIN, 1) + ipv4 + b"\x00", t),
        ("BEGIN IPv6 cut short", _head(BEGIN, 1) + b"\x04" + bytes(15), t),
        ("BEGIN trailing byte", _head(BEGIN, 1) + ipv4 + _port(80) + b"\x00", m),
        ("BEGIN name longer than the message", _head(BEGIN, 1) + b"\x03\x10abc" + _port(80), t),
        ("BEGIN empty name", _begin_name(1, b"", 80), m),
        ("BEGIN IPv4 literal as a name", _begin_name(1, b"1.2.3.4", 80), m),
        ("BEGIN IPv6 literal as a name", _begin_name(1, b"::1", 80), m),
        ("BEGIN name with a space", _begin_name(1, b"a b.", 80), m),
        ("BEGIN name with a non-ASCII byte", _begin_name(1, b"caf\xc3\xa9", 80), m),
        ("BEGIN name with a NUL", _begin_name(1, b"a\x00b", 80), m),
        ("BEGIN name with an empty label", _begin_name(1, b"a..bc", 80), m),
        ("BEGIN name that is only a dot", _begin_name(1, b".", 80), m),
        ("BEGIN name with a leading dot", _begin_name(1, b".example", 80), m),
        ("BEGIN name with a 64-byte label", _begin_name(1, b"a" * 64 + b".org", 80), m),
        ("CONNECTED on stream 0", _head(CONNECTED, 0), m),
        ("CONNECTED with a body", _head(CONNECTED, 1) + b"\x00", m),
        ("DATA empty", _head(DATA, 1), m),
        ("DATA on stream 0", _head(DATA, 0) + b"A", m),
        ("END on stream 0", _head(END, 0), m),
        ("END with a body", _head(END, 1) + b"\x00", m),
        ("RESET without a reason", _head(RESET, 1), t),
        ("RESET on stream 0", _head(RESET, 0) + b"\x01", m),
        ("RESET with a trailing byte", _head(RESET, 1) + b"\x01\x00", m),
    ]
    known = set(REASONS.values())
    for code in (0x00, 0x07, 0x0F, 0x14, 0xFF):
        assert code not in known
        cases.append((f"RESET reason 0x{code:02x}", _head(RESET, 1) + bytes((code,)), m))
    cases += [
        ("SENDME credit 0", _head(SENDME, 1) + struct.pack("!I", 0), m),
        ("SENDME credit 2**31", _head(SENDME, 1) + struct.pack("!I", 1 << 31), m),
        ("SENDME credit 2**32 - 1", _head(SENDME, 0) + struct.pack("!I", 0xFFFF_FFFF), m),
        ("SENDME credit cut short", _head(SENDME, 1) + b"\x00\x00", t),
        ("SENDME trailing byte", _head(SENDME, 1) + struct.pack("!I", 1) + b"\x00", m),
    ]
    return [{"name": name, "encoded": wire.hex(), "error": error} for name, wire, error in cases]


def _unencodable() -> list[dict[str, Any]]:
    def begin(sid: int, host: str, port: int) -> dict[str, Any]:
        return {"type": "BEGIN", "stream_id": sid, "host": host, "port": port}

    return [
        {"name": "BEGIN on stream 0", "message": begin(0, "example.org", 80)},
        {"name": "BEGIN to port 0", "message": begin(1, "example.org", 0)},
        {"name": "BEGIN to port 65536", "message": begin(1, "example.org", 65536)},
        {"name": "BEGIN bad hostname", "message": begin(1, "bad host", 80)},
        {"name": "BEGIN 256-byte hostname", "message": begin(1, "a." * 127 + "bc", 80)},
        {"name": "BEGIN scoped IPv6", "message": begin(1, "fe80::1%eth0", 80)},
        {"name": "DATA empty", "message": {"type": "DATA", "stream_id": 1, "data": ""}},
        {"name": "END on stream 0", "message": {"type": "END", "stream_id": 0}},
        {"name": "SENDME credit 0", "message": {"type": "SENDME", "stream_id": 1, "credit": 0}},
        {
            "name": "SENDME credit 2**31",
            "message": {"type": "SENDME", "stream_id": 1, "credit": 1 << 31},
        },
    ]


def build() -> dict[str, Any]:
    data = {
        "format": (
            "zmesh STREAM payloads v1 (docs/wire/streams.md); checked by "
            "python -m conformance streams; hex strings, big-endian integers"
        ),
        "valid": _valid(),
        "invalid": _invalid(),
        "unencodable": _unencodable(),
    }
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "streams.json"
        path.write_text(json.dumps(data))
        _, failed = suite.check_file(path, problems.append)
    if failed:
        raise SystemExit("generated vectors do not pass:\n" + "\n".join(problems))
    return data


def main() -> None:
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
