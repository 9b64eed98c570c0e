"""SCTP chunks: parse and encode (RFC 9260 §3.2-3.3, RFC 3758 §3.2, RFC 6525 §3.1).

Our WebRTC profile (see ``docs/wire/sctp.md``) uses DATA, INIT, INIT ACK, SACK, HEARTBEAT,
HEARTBEAT ACK, ABORT, SHUTDOWN, SHUTDOWN ACK, ERROR, COOKIE ECHO, COOKIE ACK,
SHUTDOWN COMPLETE, RE-CONFIG (RFC 6525) and FORWARD TSN (RFC 3758). Any other chunk type is kept
as :class:`UnknownChunk` so the association can apply the action that the type's two upper bits
ask for (RFC 9260 §3.2).

Chunks are frozen, slotted dataclasses. :func:`parse_chunks` reads a whole packet body before
returning, so a malformed chunk anywhere rejects the packet with a :class:`ProtocolError` and
the association never acts on half of it. ``encode()`` returns the chunk padded to a multiple
of four bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from zmesh.sansio.wire import MalformedInput, TruncatedInput

__all__ = [
    "ABORT",
    "COOKIE_ACK",
    "COOKIE_ECHO",
    "DATA",
    "ERROR",
    "FORWARD_TSN",
    "HEARTBEAT",
    "HEARTBEAT_ACK",
    "INIT",
    "INIT_ACK",
    "RECONFIG",
    "SACK",
    "SHUTDOWN",
    "SHUTDOWN_ACK",
    "SHUTDOWN_COMPLETE",
    "DATA_FLAG_END",
    "DATA_FLAG_BEGIN",
    "DATA_FLAG_UNORDERED",
    "DATA_FLAG_IMMEDIATE",
    "PARAM_STATE_COOKIE",
    "PARAM_HEARTBEAT_INFO",
    "PARAM_SUPPORTED_EXTENSIONS",
    "PARAM_FORWARD_TSN_SUPPORTED",
    "CAUSE_INVALID_STREAM",
    "CAUSE_STALE_COOKIE",
    "CAUSE_UNRECOGNIZED_CHUNK",
    "CAUSE_NO_USER_DATA",
    "CAUSE_USER_ABORT",
    "CAUSE_PROTOCOL_VIOLATION",
    "AbortChunk",
    "Chunk",
    "CookieAckChunk",
    "CookieEchoChunk",
    "DataChunk",
    "ErrorChunk",
    "ForwardTsnChunk",
    "HeartbeatAckChunk",
    "HeartbeatChunk",
    "InitAckChunk",
    "InitChunk",
    "Params",
    "ReconfigChunk",
    "SackChunk",
    "ShutdownAckChunk",
    "ShutdownChunk",
    "ShutdownCompleteChunk",
    "UnknownChunk",
    "decode_params",
    "encode_params",
    "parse_chunks",
]

# Chunk types (RFC 9260 §3.2, RFC 6525 §3.1, RFC 3758 §3.2).
DATA: Final = 0
INIT: Final = 1
INIT_ACK: Final = 2
SACK: Final = 3
HEARTBEAT: Final = 4
HEARTBEAT_ACK: Final = 5
ABORT: Final = 6
SHUTDOWN: Final = 7
SHUTDOWN_ACK: Final = 8
ERROR: Final = 9
COOKIE_ECHO: Final = 10
COOKIE_ACK: Final = 11
SHUTDOWN_COMPLETE: Final = 14
RECONFIG: Final = 130
FORWARD_TSN: Final = 192

# DATA chunk flags (RFC 9260 §3.3.1, RFC 7053 I bit).
DATA_FLAG_END: Final = 0x01
DATA_FLAG_BEGIN: Final = 0x02
DATA_FLAG_UNORDERED: Final = 0x04
DATA_FLAG_IMMEDIATE: Final = 0x08

# Parameters (RFC 9260 §3.3.2-3.3.3, RFC 5061 §4.2.7, RFC 3758 §3.1).
PARAM_HEARTBEAT_INFO: Final = 1
PARAM_STATE_COOKIE: Final = 7
PARAM_SUPPORTED_EXTENSIONS: Final = 0x8008
PARAM_FORWARD_TSN_SUPPORTED: Final = 0xC000

# Error causes (RFC 9260 §3.3.10).
CAUSE_INVALID_STREAM: Final = 1
CAUSE_STALE_COOKIE: Final = 3
CAUSE_UNRECOGNIZED_CHUNK: Final = 6
CAUSE_NO_USER_DATA: Final = 9
CAUSE_USER_ABORT: Final = 12
CAUSE_PROTOCOL_VIOLATION: Final = 13

#: A TLV list: (parameter or cause type, value without the 4-byte header).
Params: TypeAlias = tuple[tuple[int, bytes], ...]

_CHUNK_HEADER: Final = struct.Struct("!BBH")
_DATA_FIELDS: Final = struct.Struct("!IHHI")
_DATA_HEADER: Final = struct.Struct("!BBHIHHI")
_INIT_FIELDS: Final = struct.Struct("!IIHHI")
_SACK_FIELDS: Final = struct.Struct("!IIHH")
_U16: Final = struct.Struct("!H")
_U16PAIR: Final = struct.Struct("!HH")
_U32: Final = struct.Struct("!I")
_TLV: Final = struct.Struct("!HH")

#: A SACK never carries more gap blocks / duplicate TSNs than this (bounds parse work and the
#: state a SACK may ask us to walk).
MAX_SACK_GAP_BLOCKS: Final = 1024
MAX_SACK_DUPLICATES: Final = 1024


def _pad(length: int) -> int:
    return (4 - (length & 3)) & 3


def _frame(chunk_type: int, flags: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return _CHUNK_HEADER.pack(chunk_type, flags, length) + value + b"\x00" * _pad(length)


def encode_params(params: Params) -> bytes:
    """TLV parameters/causes, each padded to four bytes (RFC 9260 §3.2.1)."""
    out = bytearray()
    for ptype, value in params:
        length = 4 + len(value)
        if length > 0xFFFF:
            raise MalformedInput(f"parameter {ptype} of {length} bytes")
        out += _TLV.pack(ptype, length)
        out += value
        out += b"\x00" * _pad(length)
    return bytes(out)


def decode_params(data: bytes | memoryview) -> Params:
    """Parse a TLV list; the last parameter's padding may be missing."""
    params: list[tuple[int, bytes]] = []
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 4:
            raise TruncatedInput("truncated parameter header")
        ptype, length = _TLV.unpack_from(data, pos)
        if length < 4:
            raise MalformedInput(f"parameter length {length}")
        if pos + length > end:
            raise TruncatedInput(f"parameter {ptype} overruns its chunk")
        params.append((ptype, bytes(data[pos + 4 : pos + length])))
        pos += length + _pad(length)
    return tuple(params)


@dataclass(slots=True)
class DataChunk:
    """DATA (RFC 9260 §3.3.1). Not frozen only because a frozen dataclass's ``__init__`` costs
    several times more, and one is built per received DATA chunk; treat it as immutable."""

    flags: int
    tsn: int
    stream_id: int
    ssn: int
    ppid: int
    payload: bytes

    @property
    def unordered(self) -> bool:
        return bool(self.flags & DATA_FLAG_UNORDERED)

    @property
    def beginning(self) -> bool:
        return bool(self.flags & DATA_FLAG_BEGIN)

    @property
    def ending(self) -> bool:
        return bool(self.flags & DATA_FLAG_END)

    def encode(self) -> bytes:
        length = 16 + len(self.payload)
        return (
            _DATA_HEADER.pack(
                DATA, self.flags, length, self.tsn, self.stream_id, self.ssn, self.ppid
            )
            + self.payload
            + b"\x00" * _pad(length)
        )


@dataclass(frozen=True, slots=True)
class _InitBase:
    initiate_tag: int
    a_rwnd: int
    outbound_streams: int
    inbound_streams: int
    initial_tsn: int
    params: Params = ()

    def _encode(self, chunk_type: int) -> bytes:
        value = _INIT_FIELDS.pack(
            self.initiate_tag,
            self.a_rwnd,
            self.outbound_streams,
            self.inbound_streams,
            self.initial_tsn,
        ) + encode_params(self.params)
        return _frame(chunk_type, 0, value)

    def param(self, ptype: int) -> bytes | None:
        for kind, value in self.params:
            if kind == ptype:
                return value
        return None


@dataclass(frozen=True, slots=True)
class InitChunk(_InitBase):
    """INIT (RFC 9260 §3.3.2)."""

    def encode(self) -> bytes:
        return self._encode(INIT)


@dataclass(frozen=True, slots=True)
class InitAckChunk(_InitBase):
    """INIT ACK (RFC 9260 §3.3.3); carries the State Cookie parameter."""

    def encode(self) -> bytes:
        return self._encode(INIT_ACK)


@dataclass(slots=True)
class SackChunk:  # not frozen for speed, like DataChunk
    """SACK (RFC 9260 §3.3.4). Gap blocks are (start, end) offsets from ``cumulative_tsn``."""

    cumulative_tsn: int
    a_rwnd: int
    gaps: tuple[tuple[int, int], ...] = ()
    duplicates: tuple[int, ...] = ()

    def encode(self) -> bytes:
        value = bytearray(
            _SACK_FIELDS.pack(
                self.cumulative_tsn, self.a_rwnd, len(self.gaps), len(self.duplicates)
            )
        )
        for start, end in self.gaps:
            value += _U16PAIR.pack(start, end)
        for tsn in self.duplicates:
            value += _U32.pack(tsn)
        return _frame(SACK, 0, bytes(value))


@dataclass(frozen=True, slots=True)
class HeartbeatChunk:
    """HEARTBEAT (RFC 9260 §3.3.5); ``info`` is the opaque Heartbeat Info value."""

    info: bytes

    def encode(self) -> bytes:
        return _frame(HEARTBEAT, 0, encode_params(((PARAM_HEARTBEAT_INFO, self.info),)))


@dataclass(frozen=True, slots=True)
class HeartbeatAckChunk:
    """HEARTBEAT ACK (RFC 9260 §3.3.6): echoes the Heartbeat Info."""

    info: bytes

    def encode(self) -> bytes:
        return _frame(HEARTBEAT_ACK, 0, encode_params(((PARAM_HEARTBEAT_INFO, self.info),)))


@dataclass(frozen=True, slots=True)
class AbortChunk:
    """ABORT (RFC 9260 §3.3.7). ``reflected`` is the T bit (tag reflected)."""

    causes: Params = ()
    reflected: bool = False

    def encode(self) -> bytes:
        return _frame(ABORT, 1 if self.reflected else 0, encode_params(self.causes))


@dataclass(frozen=True, slots=True)
class ShutdownChunk:
    """SHUTDOWN (RFC 9260 §3.3.8)."""

    cumulative_tsn: int

    def encode(self) -> bytes:
        return _frame(SHUTDOWN, 0, _U32.pack(self.cumulative_tsn))


@dataclass(frozen=True, slots=True)
class ShutdownAckChunk:
    """SHUTDOWN ACK (RFC 9260 §3.3.9)."""

    def encode(self) -> bytes:
        return _frame(SHUTDOWN_ACK, 0, b"")


@dataclass(frozen=True, slots=True)
class ErrorChunk:
    """ERROR (RFC 9260 §3.3.10): a list of error causes."""

    causes: Params

    def encode(self) -> bytes:
        return _frame(ERROR, 0, encode_params(self.causes))


@dataclass(frozen=True, slots=True)
class CookieEchoChunk:
    """COOKIE ECHO (RFC 9260 §3.3.11)."""

    cookie: bytes

    def encode(self) -> bytes:
        return _frame(COOKIE_ECHO, 0, self.cookie)


@dataclass(frozen=True, slots=True)
class CookieAckChunk:
    """COOKIE ACK (RFC 9260 §3.3.12)."""

    def encode(self) -> bytes:
        return _frame(COOKIE_ACK, 0, b"")


@dataclass(frozen=True, slots=True)
class ShutdownCompleteChunk:
    """SHUTDOWN COMPLETE (RFC 9260 §3.3.13). ``reflected`` is the T bit."""

    reflected: bool = False

    def encode(self) -> bytes:
        return _frame(SHUTDOWN_COMPLETE, 1 if self.reflected else 0, b"")


@dataclass(frozen=True, slots=True)
class ReconfigChunk:
    """RE-CONFIG (RFC 6525 §3.1): one or two re-configuration parameters."""

    params: Params

    def encode(self) -> bytes:
        return _frame(RECONFIG, 0, encode_params(self.params))


@dataclass(frozen=True, slots=True)
class ForwardTsnChunk:
    """FORWARD TSN (RFC 3758 §3.2): new cumulative TSN and (stream, SSN) pairs skipped."""

    new_cumulative_tsn: int
    streams: tuple[tuple[int, int], ...] = ()

    def encode(self) -> bytes:
        value = bytearray(_U32.pack(self.new_cumulative_tsn))
        for stream_id, ssn in self.streams:
            value += _U16PAIR.pack(stream_id, ssn)
        return _frame(FORWARD_TSN, 0, bytes(value))


@dataclass(frozen=True, slots=True)
class UnknownChunk:
    """A chunk type we do not implement; kept so its action bits can be honoured."""

    chunk_type: int
    flags: int
    value: bytes

    def encode(self) -> bytes:
        return _frame(self.chunk_type, self.flags, self.value)


Chunk: TypeAlias = (
    DataChunk
    | InitChunk
    | InitAckChunk
    | SackChunk
    | HeartbeatChunk
    | HeartbeatAckChunk
    | AbortChunk
    | ShutdownChunk
    | ShutdownAckChunk
    | ErrorChunk
    | CookieEchoChunk
    | CookieAckChunk
    | ShutdownCompleteChunk
    | ReconfigChunk
    | ForwardTsnChunk
    | UnknownChunk
)


def _expect_length(value: memoryview, size: int, name: str) -> None:
    if len(value) != size:
        raise MalformedInput(f"{name} chunk value of {len(value)} bytes, expected {size}")


def _heartbeat_info(value: memoryview) -> bytes:
    params = decode_params(value)
    for ptype, info in params:
        if ptype == PARAM_HEARTBEAT_INFO:
            return info
    raise MalformedInput("HEARTBEAT without Heartbeat Info")


def _parse_one(ctype: int, flags: int, value: memoryview) -> Chunk:
    if ctype == DATA:
        if len(value) < 12:
            raise TruncatedInput("DATA chunk shorter than its header")
        if len(value) == 12:
            raise MalformedInput("DATA chunk without user data")
        tsn, sid, ssn, ppid = _DATA_FIELDS.unpack_from(value, 0)
        return DataChunk(flags, tsn, sid, ssn, ppid, bytes(value[12:]))
    if ctype == SACK:
        if len(value) < 12:
            raise TruncatedInput("SACK chunk shorter than its header")
        cum, rwnd, ngaps, ndups = _SACK_FIELDS.unpack_from(value, 0)
        if ngaps > MAX_SACK_GAP_BLOCKS or ndups > MAX_SACK_DUPLICATES:
            raise MalformedInput("SACK with too many gap blocks or duplicates")
        if len(value) != 12 + 4 * (ngaps + ndups):
            raise MalformedInput("SACK length does not match its counts")
        gaps = []
        pos = 12
        for _ in range(ngaps):
            start, end = _U16PAIR.unpack_from(value, pos)
            if start == 0 or end < start:
                raise MalformedInput(f"SACK gap block {start}-{end}")
            gaps.append((start, end))
            pos += 4
        dups = []
        for _ in range(ndups):
            dups.append(_U32.unpack_from(value, pos)[0])
            pos += 4
        return SackChunk(cum, rwnd, tuple(gaps), tuple(dups))
    if ctype in (INIT, INIT_ACK):
        if len(value) < 16:
            raise TruncatedInput("INIT chunk shorter than its fixed fields")
        tag, rwnd, os_, mis, tsn = _INIT_FIELDS.unpack_from(value, 0)
        if tag == 0:
            raise MalformedInput("INIT with initiate tag 0")
        if os_ == 0 or mis == 0:
            raise MalformedInput("INIT with zero streams")
        params = decode_params(value[16:])
        cls = InitChunk if ctype == INIT else InitAckChunk
        return cls(tag, rwnd, os_, mis, tsn, params)
    if ctype == HEARTBEAT:
        return HeartbeatChunk(_heartbeat_info(value))
    if ctype == HEARTBEAT_ACK:
        return HeartbeatAckChunk(_heartbeat_info(value))
    if ctype == ABORT:
        return AbortChunk(decode_params(value), bool(flags & 1))
    if ctype == SHUTDOWN:
        _expect_length(value, 4, "SHUTDOWN")
        return ShutdownChunk(_U32.unpack_from(value, 0)[0])
    if ctype == SHUTDOWN_ACK:
        _expect_length(value, 0, "SHUTDOWN ACK")
        return ShutdownAckChunk()
    if ctype == ERROR:
        return ErrorChunk(decode_params(value))
    if ctype == COOKIE_ECHO:
        return CookieEchoChunk(bytes(value))
    if ctype == COOKIE_ACK:
        _expect_length(value, 0, "COOKIE ACK")
        return CookieAckChunk()
    if ctype == SHUTDOWN_COMPLETE:
        _expect_length(value, 0, "SHUTDOWN COMPLETE")
        return ShutdownCompleteChunk(bool(flags & 1))
    if ctype == RECONFIG:
        return ReconfigChunk(decode_params(value))
    if ctype == FORWARD_TSN:
        if len(value) < 4 or len(value) % 4:
            raise MalformedInput(f"FORWARD TSN value of {len(value)} bytes")
        new_cum = _U32.unpack_from(value, 0)[0]
        streams = tuple(_U16PAIR.unpack_from(value, pos) for pos in range(4, len(value), 4))
        return ForwardTsnChunk(new_cum, streams)
    return UnknownChunk(ctype, flags, bytes(value))


def parse_chunks(packet: bytes | memoryview, offset: int = 12) -> list[Chunk]:
    """Parse every chunk after the common header; raises on any malformed chunk."""
    end = len(packet)
    if end - offset >= 32 and type(packet) is bytes:
        # Fast path: a packet holding exactly one DATA chunk (most packets in bulk transfer).
        ctype, flags, length = _CHUNK_HEADER.unpack_from(packet, offset)
        if ctype == DATA and length > 16 and 0 <= end - offset - length <= (-length & 3):
            tsn, sid, ssn, ppid = _DATA_FIELDS.unpack_from(packet, offset + 4)
            return [DataChunk(flags, tsn, sid, ssn, ppid, packet[offset + 16 : offset + length])]
    view = memoryview(packet)
    chunks: list[Chunk] = []
    pos = offset
    if pos >= end:
        raise TruncatedInput("SCTP packet without chunks")
    while pos < end:
        if end - pos < 4:
            raise TruncatedInput("truncated chunk header")
        ctype, flags, length = _CHUNK_HEADER.unpack_from(view, pos)
        if length < 4:
            raise MalformedInput(f"chunk length {length}")
        if pos + length > end:
            raise TruncatedInput(f"chunk type {ctype} overruns the packet")
        chunks.append(_parse_one(ctype, flags, view[pos + 4 : pos + length]))
        # The final chunk's padding may be missing (RFC 9260 §3.2: receivers ignore padding).
        pos += length + _pad(length)
    return chunks
