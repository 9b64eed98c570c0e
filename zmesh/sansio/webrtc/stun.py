"""STUN messages for ICE (RFC 8489 §5-§14, RFC 8445 §7.1) on top of aioice's codec.

Parsing goes through :func:`aioice.stun.parse_message` (aioice 0.13.0 is pinned in
``pyproject.toml``), after a strict framing check of our own (RFC 8489 §5: leading zero bits,
magic cookie, length a multiple of 4, every attribute inside the message), so hostile input raises
:class:`~zmesh.sansio.wire.MalformedInput` / :class:`~zmesh.sansio.wire.TruncatedInput` and
never an ``IndexError``. aioice's attribute table is closed (it cannot emit Chrome's
GOOG-NETWORK-INFO), so the *encoder* lays attributes out itself, in the order libwebrtc's
``Connection::BuildPingRequest`` uses, and borrows aioice's value packers and its
MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) and FINGERPRINT (CRC-32 xor 0x5354554E, §14.7)
functions.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Final

from aioice import stun as _aioice_stun

from zmesh.sansio.wire import MalformedInput, Reader, TruncatedInput

__all__ = [
    "MAGIC_COOKIE",
    "StunClass",
    "StunMethod",
    "StunMessage",
    "Attr",
    "looks_like_stun",
    "parse_stun",
    "encode_stun",
    "binding_request",
    "binding_success",
    "binding_error",
]

MAGIC_COOKIE: Final = 0x2112A442  # RFC 8489 §5
HEADER_LENGTH: Final = 20
MAX_STUN_SIZE: Final = 1500  # one datagram; anything longer is not ours to parse
_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")

StunMessage = _aioice_stun.Message


#: aioice's enums (REQUEST/INDICATION/RESPONSE/ERROR; BINDING, ...), so parsed messages compare.
StunClass = _aioice_stun.Class
StunMethod = _aioice_stun.Method


class Attr(enum.IntEnum):
    """Attribute type codes (RFC 8489 §18.3, RFC 8445 §16.1, libwebrtc ``stun.h``)."""

    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    XOR_MAPPED_ADDRESS = 0x0020
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    GOOG_NETWORK_INFO = 0xC057  # Chrome: (network_id << 16) | network_cost


#: Chrome's host candidates carry ``network-id 1 network-cost 10`` on a wired/loopback interface.
CHROME_NETWORK_ID: Final = 1
CHROME_NETWORK_COST: Final = 10


def looks_like_stun(data: bytes | bytearray | memoryview) -> bool:
    """RFC 7983 §7 demultiplexing: first byte 0..3 and the magic cookie in place."""
    return (
        len(data) >= HEADER_LENGTH
        and data[0] < 4
        and data[4] == 0x21
        and data[5] == 0x12
        and data[6] == 0xA4
        and data[7] == 0x42
    )


def _check_framing(data: bytes) -> None:
    if len(data) > MAX_STUN_SIZE:
        raise MalformedInput(f"STUN message of {len(data)} bytes exceeds {MAX_STUN_SIZE}")
    reader = Reader(data)
    message_type = reader.u16()
    length = reader.u16()
    cookie = reader.u32()
    reader.skip(12)
    if message_type & 0xC000:
        raise MalformedInput("STUN message type has its top two bits set")
    if cookie != MAGIC_COOKIE:
        raise MalformedInput("STUN magic cookie missing")
    if length % 4:
        raise MalformedInput("STUN length is not a multiple of 4")
    if reader.remaining != length:
        raise TruncatedInput(f"STUN length says {length}, datagram holds {reader.remaining}")
    while not reader.at_end():
        _attr_type = reader.u16()
        attr_len = reader.u16()
        reader.skip(attr_len + (-attr_len % 4))


def parse_stun(data: bytes | bytearray | memoryview) -> StunMessage:
    """Parse one STUN message; FINGERPRINT, when present, is verified.

    MESSAGE-INTEGRITY is checked by the caller with ``message.check_message_integrity(key)``
    because the key depends on who the message claims to be from.
    """
    raw = bytes(data)
    _check_framing(raw)
    try:
        message = _aioice_stun.parse_message(raw)
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise MalformedInput(f"bad STUN message: {exc}") from None
    integrity = message.attributes.get("MESSAGE-INTEGRITY")
    if integrity is not None and len(integrity) != 20:
        raise MalformedInput("MESSAGE-INTEGRITY is not 20 bytes")
    error = message.attributes.get("ERROR-CODE")
    # RFC 8489 §14.8: class 3..6, number 0..99 (aioice accepts any byte values).
    if error is not None and not _error_code_ok(raw):
        raise MalformedInput(f"ERROR-CODE {error[0]} out of range")
    return message


def _error_code_ok(raw: bytes) -> bool:
    """Class 3..6 and number below 100 (aioice folds an overflowing number into the class)."""
    pos = HEADER_LENGTH
    while pos + 4 <= len(raw):
        attr_type, attr_len = _ATTR_HEADER.unpack_from(raw, pos)
        if attr_type == Attr.ERROR_CODE:
            return attr_len >= 4 and raw[pos + 7] < 100 and 3 <= raw[pos + 6] & 0x07 <= 6
        pos += 4 + attr_len + (-attr_len % 4)
    return True


def encode_stun(
    method: int,
    cls: StunClass,
    transaction_id: bytes,
    attributes: Sequence[tuple[int, bytes]],
    *,
    integrity_key: bytes | None = None,
    fingerprint: bool = True,
) -> bytes:
    """Lay out a STUN message with attributes in exactly the order given (RFC 8489 §5, §14)."""
    if len(transaction_id) != 12:
        raise ValueError("transaction id must be 12 bytes")
    body = bytearray()
    for attr_type, value in attributes:
        body += _ATTR_HEADER.pack(attr_type, len(value)) + value + bytes(-len(value) % 4)
    data = _HEADER.pack(method | cls, len(body), MAGIC_COOKIE, transaction_id) + bytes(body)
    if integrity_key is not None:
        mac = _aioice_stun.message_integrity(data, integrity_key)
        data = _set_length(data + _ATTR_HEADER.pack(Attr.MESSAGE_INTEGRITY, 20) + mac)
    if fingerprint:
        crc = _aioice_stun.message_fingerprint(data)
        data = _set_length(data + _ATTR_HEADER.pack(Attr.FINGERPRINT, 4) + struct.pack("!I", crc))
    return data


def _set_length(data: bytes) -> bytes:
    return data[:2] + struct.pack("!H", len(data) - HEADER_LENGTH) + data[4:]


def binding_request(
    transaction_id: bytes,
    *,
    username: str,
    key: bytes,
    priority: int,
    controlling: bool,
    tie_breaker: int,
    use_candidate: bool = False,
    network_info: bool = True,
) -> bytes:
    """An ICE connectivity check laid out like Chrome's (research notes §9)."""
    attrs: list[tuple[int, bytes]] = [(Attr.USERNAME, username.encode())]
    if network_info:
        attrs.append(
            (Attr.GOOG_NETWORK_INFO, struct.pack("!HH", CHROME_NETWORK_ID, CHROME_NETWORK_COST))
        )
    role = Attr.ICE_CONTROLLING if controlling else Attr.ICE_CONTROLLED
    attrs.append((role, struct.pack("!Q", tie_breaker)))
    if use_candidate:
        attrs.append((Attr.USE_CANDIDATE, b""))
    attrs.append((Attr.PRIORITY, struct.pack("!I", priority)))
    return encode_stun(StunMethod.BINDING, StunClass.REQUEST, transaction_id, attrs,
                       integrity_key=key)


def binding_success(
    transaction_id: bytes, mapped: tuple[str, int], *, key: bytes | None
) -> bytes:
    """A Binding success response carrying XOR-MAPPED-ADDRESS (RFC 8489 §14.2)."""
    value = _aioice_stun.pack_xor_address(mapped, transaction_id)
    return encode_stun(StunMethod.BINDING, StunClass.RESPONSE, transaction_id,
                       [(Attr.XOR_MAPPED_ADDRESS, value)], integrity_key=key)


def binding_error(
    transaction_id: bytes, code: int, reason: str, *, key: bytes | None
) -> bytes:
    """A Binding error response (RFC 8489 §14.8), e.g. 487 Role Conflict or 400 Bad Request."""
    value = _aioice_stun.pack_error_code((code, reason))
    return encode_stun(StunMethod.BINDING, StunClass.ERROR, transaction_id,
                       [(Attr.ERROR_CODE, value)], integrity_key=key)
