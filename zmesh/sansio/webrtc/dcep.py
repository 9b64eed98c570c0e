"""Data Channel Establishment Protocol messages (RFC 8832 §5) and WebRTC PPIDs (RFC 8831 §8).

DCEP runs on the data channel's own SCTP stream with PPID 50. DATA_CHANNEL_OPEN::

     0      1      2             4                 8            10             12
    | 0x03 | type | priority u16 | reliability u32 | label len  | protocol len | label | protocol

and DATA_CHANNEL_ACK is the single byte 0x02. Channel types (RFC 8832 §5.1): 0x00 reliable,
0x80 reliable unordered, 0x01/0x81 partial reliable by retransmissions (reliability parameter =
max retransmissions), 0x02/0x82 partial reliable by time (parameter = lifetime in ms).
Labels and protocols are UTF-8 (RFC 8832 §5.1: "encoded in UTF-8").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from zmesh.sansio.wire import MalformedInput, TruncatedInput

__all__ = [
    "CHANNEL_PARTIAL_RELIABLE_REXMIT",
    "CHANNEL_PARTIAL_RELIABLE_TIMED",
    "CHANNEL_RELIABLE",
    "CHANNEL_UNORDERED_BIT",
    "DCEP_ACK",
    "DCEP_OPEN",
    "PPID_BINARY",
    "PPID_BINARY_EMPTY",
    "PPID_DCEP",
    "PPID_STRING",
    "PPID_STRING_EMPTY",
    "DataChannelAck",
    "DataChannelOpen",
    "DcepMessage",
    "parse_dcep",
]

# PPIDs (RFC 8831 §8, IANA "SCTP Payload Protocol Identifiers").
PPID_DCEP: Final = 50
PPID_STRING: Final = 51
PPID_BINARY_PARTIAL: Final = 52  # deprecated
PPID_BINARY: Final = 53
PPID_STRING_PARTIAL: Final = 54  # deprecated
PPID_STRING_EMPTY: Final = 56
PPID_BINARY_EMPTY: Final = 57

DCEP_ACK: Final = 0x02
DCEP_OPEN: Final = 0x03

CHANNEL_RELIABLE: Final = 0x00
CHANNEL_PARTIAL_RELIABLE_REXMIT: Final = 0x01
CHANNEL_PARTIAL_RELIABLE_TIMED: Final = 0x02
CHANNEL_UNORDERED_BIT: Final = 0x80

_OPEN_HEADER: Final = struct.Struct("!BBHIHH")


@dataclass(frozen=True, slots=True)
class DataChannelOpen:
    """DATA_CHANNEL_OPEN (RFC 8832 §5.1)."""

    channel_type: int
    priority: int
    reliability: int
    label: str
    protocol: str

    @property
    def ordered(self) -> bool:
        return not self.channel_type & CHANNEL_UNORDERED_BIT

    @property
    def max_retransmits(self) -> int | None:
        kind = self.channel_type & 0x7F
        return self.reliability if kind == CHANNEL_PARTIAL_RELIABLE_REXMIT else None

    @property
    def max_packet_lifetime(self) -> int | None:
        """Lifetime in milliseconds, as WebRTC's maxPacketLifeTime."""
        kind = self.channel_type & 0x7F
        return self.reliability if kind == CHANNEL_PARTIAL_RELIABLE_TIMED else None

    @classmethod
    def for_channel(
        cls,
        label: str,
        protocol: str,
        *,
        ordered: bool,
        max_retransmits: int | None,
        max_packet_lifetime: int | None,
        priority: int = 256,
    ) -> DataChannelOpen:
        """Build the OPEN for a channel's parameters (priority 256 = "normal", RFC 8831 §6.4
        as browsers send it)."""
        if max_retransmits is not None and max_packet_lifetime is not None:
            raise MalformedInput("a channel has max_retransmits or a lifetime, not both")
        if max_retransmits is not None:
            kind, reliability = CHANNEL_PARTIAL_RELIABLE_REXMIT, max_retransmits
        elif max_packet_lifetime is not None:
            kind, reliability = CHANNEL_PARTIAL_RELIABLE_TIMED, max_packet_lifetime
        else:
            kind, reliability = CHANNEL_RELIABLE, 0
        if not ordered:
            kind |= CHANNEL_UNORDERED_BIT
        return cls(kind, priority, reliability, label, protocol)

    def encode(self) -> bytes:
        label = self.label.encode("utf-8")
        protocol = self.protocol.encode("utf-8")
        if len(label) > 0xFFFF or len(protocol) > 0xFFFF:
            raise MalformedInput("label or protocol longer than 65535 bytes")
        return (
            _OPEN_HEADER.pack(
                DCEP_OPEN,
                self.channel_type,
                self.priority,
                self.reliability,
                len(label),
                len(protocol),
            )
            + label
            + protocol
        )


@dataclass(frozen=True, slots=True)
class DataChannelAck:
    """DATA_CHANNEL_ACK (RFC 8832 §5.2)."""

    def encode(self) -> bytes:
        return bytes([DCEP_ACK])


DcepMessage: TypeAlias = DataChannelOpen | DataChannelAck

_VALID_TYPES: Final = frozenset(
    {
        CHANNEL_RELIABLE,
        CHANNEL_PARTIAL_RELIABLE_REXMIT,
        CHANNEL_PARTIAL_RELIABLE_TIMED,
        CHANNEL_RELIABLE | CHANNEL_UNORDERED_BIT,
        CHANNEL_PARTIAL_RELIABLE_REXMIT | CHANNEL_UNORDERED_BIT,
        CHANNEL_PARTIAL_RELIABLE_TIMED | CHANNEL_UNORDERED_BIT,
    }
)


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedInput(f"{what} is not UTF-8") from exc


def parse_dcep(data: bytes) -> DcepMessage:
    """Parse one DCEP message (a whole SCTP user message with PPID 50)."""
    if not data:
        raise TruncatedInput("empty DCEP message")
    kind = data[0]
    if kind == DCEP_ACK:
        # RFC 8832 §5.2: the ACK is one byte; tolerate nothing after it.
        if len(data) != 1:
            raise MalformedInput("DATA_CHANNEL_ACK with trailing bytes")
        return DataChannelAck()
    if kind != DCEP_OPEN:
        raise MalformedInput(f"unknown DCEP message type {kind:#04x}")
    if len(data) < _OPEN_HEADER.size:
        raise TruncatedInput("DATA_CHANNEL_OPEN shorter than its header")
    _, ctype, priority, reliability, label_len, proto_len = _OPEN_HEADER.unpack_from(data, 0)
    if ctype not in _VALID_TYPES:
        raise MalformedInput(f"unknown channel type {ctype:#04x}")
    end = _OPEN_HEADER.size + label_len + proto_len
    if len(data) < end:
        raise TruncatedInput("DATA_CHANNEL_OPEN label/protocol overrun")
    if len(data) > end:
        raise MalformedInput("DATA_CHANNEL_OPEN with trailing bytes")
    label = _utf8(data[12 : 12 + label_len], "label")
    protocol = _utf8(data[12 + label_len : end], "protocol")
    return DataChannelOpen(ctype, priority, reliability, label, protocol)
