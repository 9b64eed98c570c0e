"""The STREAM relay-message payload: six message types, byte by byte in ``docs/wire/streams.md``.

Every message starts with ``type (1) | stream_id (2)``; the rest depends on the type. The
payload's length comes from the relay message that carries it, so DATA needs no length field and
every parser insists on consuming the payload exactly. The address encoding in BEGIN reuses
RFC 1928 §5's ATYP values (1 = IPv4, 3 = domain name, 4 = IPv6) so that a SOCKS request maps onto
a BEGIN field for field; the hostname travels to the exit unresolved (no DNS at the client).
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Final

from zmesh.sansio.streams.reasons import ResetReason
from zmesh.sansio.wire import LocalProtocolError, MalformedInput, Reader, Writer

__all__ = [
    "HEADER_SIZE",
    "MIN_MESSAGE_SIZE",
    "MAX_CREDIT",
    "CIRCUIT_STREAM_ID",
    "MessageType",
    "AddressType",
    "Begin",
    "Connected",
    "Data",
    "End",
    "Reset",
    "Sendme",
    "Message",
    "encode_message",
    "parse_message",
    "validate_hostname",
    "address_type_of",
]

HEADER_SIZE: Final = 3  # type u8 + stream_id u16
MAX_HOSTNAME: Final = 255  # RFC 1035 §2.3.4 name limit; also SOCKS5's one-byte length
#: The largest message the codec must be able to carry: BEGIN with a 255-byte hostname.
MIN_MESSAGE_SIZE: Final = HEADER_SIZE + 1 + 1 + MAX_HOSTNAME + 2
#: SENDME credit is a u32 but never more than 2**31 - 1, so window sums cannot overflow a
#: signed 32-bit counter in another implementation.
MAX_CREDIT: Final = 0x7FFF_FFFF
#: SENDME on stream id 0 returns circuit-level credit; no stream ever gets id 0.
CIRCUIT_STREAM_ID: Final = 0

_HOST_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class MessageType(enum.IntEnum):
    BEGIN = 0x01
    CONNECTED = 0x02
    DATA = 0x03
    END = 0x04
    RESET = 0x05
    SENDME = 0x06


class AddressType(enum.IntEnum):
    """RFC 1928 §5 ATYP values, reused in BEGIN."""

    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


@dataclass(frozen=True, slots=True)
class Begin:
    """Client → exit: open a TCP connection to ``host``:``port`` (resolved at the exit)."""

    stream_id: int
    host: str  # a hostname, or the canonical text of an IPv4/IPv6 literal
    port: int


@dataclass(frozen=True, slots=True)
class Connected:
    """Exit → client: the TCP connection is up; data may flow both ways."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The sender will send no more DATA on this stream (half-close, like TCP FIN)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class Reset:
    """Abort the stream in both directions (or refuse a BEGIN); undelivered data is dropped."""

    stream_id: int
    reason: ResetReason


@dataclass(frozen=True, slots=True)
class Sendme:
    """Return ``credit`` bytes of send window; stream id 0 means the circuit window."""

    stream_id: int
    credit: int


Message = Begin | Connected | Data | End | Reset | Sendme


def validate_hostname(host: str) -> None:
    """Raise :class:`MalformedInput` unless ``host`` is an acceptable DNS name.

    ASCII letters, digits, ``-``, ``_`` and ``.`` only (IDNs travel as punycode, as every SOCKS
    client sends them), 1 to 255 bytes, no empty label except a final root dot.
    """
    raw = host.encode("ascii", "replace")
    if not 1 <= len(raw) <= MAX_HOSTNAME:
        raise MalformedInput(f"hostname length {len(raw)} outside 1..{MAX_HOSTNAME}")
    if not _HOST_CHARS.issuperset(raw):
        raise MalformedInput("hostname holds characters outside [A-Za-z0-9._-]")
    labels = raw[:-1].split(b".") if raw.endswith(b".") and len(raw) > 1 else raw.split(b".")
    if any(not 1 <= len(label) <= 63 for label in labels):  # RFC 1035 §2.3.4: labels ≤ 63
        raise MalformedInput("hostname has an empty or over-long label")


def address_type_of(host: str) -> AddressType:
    """How ``host`` travels in BEGIN: as an IP literal if it is one, else as a name."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return AddressType.DOMAIN
    return AddressType.IPV4 if addr.version == 4 else AddressType.IPV6


def _check_stream_id(stream_id: int, *, allow_zero: bool = False) -> None:
    if stream_id == CIRCUIT_STREAM_ID and not allow_zero:
        raise MalformedInput("stream id 0 is reserved for circuit-level SENDME")


def encode_message(msg: Message) -> bytes:
    """The payload bytes of ``msg``; raises ``LocalProtocolError`` on out-of-range fields."""
    w = Writer()
    match msg:
        case Begin(stream_id, host, port):
            _local_check(stream_id != 0 and 1 <= port <= 0xFFFF, "bad stream id or port")
            w.u8(MessageType.BEGIN).u16(stream_id)
            atype = address_type_of(host)
            if atype is AddressType.DOMAIN:
                _local_hostname(host)
                name = host.encode("ascii")
                w.u8(atype).u8(len(name)).bytes_(name)
            else:
                addr = ipaddress.ip_address(host)
                _local_check(not getattr(addr, "scope_id", None), "scoped IPv6 literal")
                w.u8(atype).bytes_(addr.packed)
            w.u16(port)
        case Connected(stream_id):
            _local_check(stream_id != 0, "stream id 0")
            w.u8(MessageType.CONNECTED).u16(stream_id)
        case Data(stream_id, data):
            _local_check(stream_id != 0 and len(data) > 0, "stream id 0 or empty DATA")
            w.u8(MessageType.DATA).u16(stream_id).bytes_(data)
        case End(stream_id):
            _local_check(stream_id != 0, "stream id 0")
            w.u8(MessageType.END).u16(stream_id)
        case Reset(stream_id, reason):
            _local_check(stream_id != 0, "stream id 0")
            w.u8(MessageType.RESET).u16(stream_id).u8(ResetReason(reason))
        case Sendme(stream_id, credit):
            _local_check(1 <= credit <= MAX_CREDIT, f"credit {credit} outside 1..{MAX_CREDIT}")
            w.u8(MessageType.SENDME).u16(stream_id).u32(credit)
    return w.getvalue()


def parse_message(payload: bytes | bytearray | memoryview) -> Message:
    """Parse one STREAM payload; raises a ``RemoteProtocolError`` subclass on any defect."""
    r = Reader(payload)
    try:
        mtype = MessageType(r.u8())
    except ValueError as exc:
        raise MalformedInput("unknown stream message type") from exc
    stream_id = r.u16()
    msg: Message
    match mtype:
        case MessageType.BEGIN:
            _check_stream_id(stream_id)
            host = _parse_address(r)
            port = r.u16()
            if port == 0:
                raise MalformedInput("BEGIN to port 0")
            msg = Begin(stream_id, host, port)
        case MessageType.CONNECTED:
            _check_stream_id(stream_id)
            msg = Connected(stream_id)
        case MessageType.DATA:
            _check_stream_id(stream_id)
            if r.at_end():
                raise MalformedInput("empty DATA")
            msg = Data(stream_id, bytes(r.rest()))
        case MessageType.END:
            _check_stream_id(stream_id)
            msg = End(stream_id)
        case MessageType.RESET:
            _check_stream_id(stream_id)
            try:
                reason = ResetReason(r.u8())
            except ValueError as exc:
                raise MalformedInput("unknown RESET reason") from exc
            msg = Reset(stream_id, reason)
        case MessageType.SENDME:
            credit = r.u32()
            if not 1 <= credit <= MAX_CREDIT:
                raise MalformedInput(f"SENDME credit {credit} outside 1..{MAX_CREDIT}")
            msg = Sendme(stream_id, credit)
    r.expect_end()
    return msg


def _parse_address(r: Reader) -> str:
    try:
        atype = AddressType(r.u8())
    except ValueError as exc:
        raise MalformedInput("unknown BEGIN address type") from exc
    if atype is AddressType.IPV4:
        return str(ipaddress.IPv4Address(r.bytes_(4)))
    if atype is AddressType.IPV6:
        return str(ipaddress.IPv6Address(r.bytes_(16)))
    raw = r.bytes_(r.u8())
    try:
        host = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedInput("non-ASCII hostname") from exc
    validate_hostname(host)
    if address_type_of(host) is not AddressType.DOMAIN:
        # An IP literal sent as a name would dodge the one canonical encoding per address.
        raise MalformedInput("IP literal sent as a domain name")
    return host


def _local_check(ok: bool, what: str) -> None:
    if not ok:
        raise LocalProtocolError(what)


def _local_hostname(host: str) -> None:
    """Validate our own caller's hostname: a bad one is a local error, not the peer's."""
    try:
        validate_hostname(host)
    except MalformedInput as exc:
        raise LocalProtocolError(str(exc)) from None
