"""RFC 6455 §5 framing for the cell link once its opening handshake is done (sans-IO).

The link's HTTP upgrade still goes through wsproto; after it, both ends switch to this codec
(the client speaks first after the upgrade, so no byte is in flight at the switch). It covers
what a cell link uses and refuses the rest:

- binary messages, possibly fragmented (§5.4), reassembled up to ``max_message`` bytes;
- Ping, Pong and Close control frames (§5.5), at most 125 bytes, never fragmented;
- masking (§5.3): frames from the client MUST be masked and frames from the server MUST NOT
  be (§5.1); the masking itself is a kernel of ``zmesh._accel.cells`` (C or its twin), since
  the generic pure-Python loop cost more per byte than a relay's whole cell work.

Refused with :class:`~zmesh.sansio.wire.MalformedInput` (the link is then closed): text frames,
RSV bits (no extension is ever negotiated), unknown opcodes, a continuation without a start
or a new message inside one, a non-minimal length encoding, a 64-bit length with its top bit
set, masking the wrong way round, a Close payload of 1 byte or with invalid UTF-8; with
:class:`~zmesh.sansio.wire.OversizedInput`: a message or control frame over its limit, or
more unparsed bytes than ``max_buffer``. After an error the decoder must not be fed again
(the link closes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from zmesh._accel.cells import ws_mask
from zmesh.sansio.wire import LocalProtocolError, MalformedInput, OversizedInput

__all__ = [
    "OP_CONTINUATION",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "BinaryMessage",
    "PingFrame",
    "PongFrame",
    "CloseFrame",
    "FrameEvent",
    "FrameDecoder",
    "encode_frame",
    "encode_frame_header",
    "encode_close_payload",
]

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
MAX_CONTROL_PAYLOAD: Final = 125
_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")


@dataclass(frozen=True)
class BinaryMessage:
    data: bytes


@dataclass(frozen=True)
class PingFrame:
    payload: bytes


@dataclass(frozen=True)
class PongFrame:
    payload: bytes


@dataclass(frozen=True)
class CloseFrame:
    code: int | None  # None: the Close frame had no payload (§7.1.5: 1005 "no status")
    reason: str


FrameEvent: TypeAlias = BinaryMessage | PingFrame | PongFrame | CloseFrame


class FrameDecoder:
    """Frames from one direction of an open connection."""

    def __init__(self, *, expect_masked: bool, max_message: int, max_buffer: int) -> None:
        if max_message < 1 or max_buffer < max_message + 14:
            raise LocalProtocolError("max_buffer must hold at least one whole frame")
        self._expect_masked = expect_masked
        self._max_message = max_message
        self._max_buffer = max_buffer
        self._buf = bytearray()
        self._pos = 0
        self._parts: list[bytes] = []  # fragments of the binary message in progress
        self._size = 0
        self._in_message = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if len(self._buf) - self._pos + len(data) > self._max_buffer:
            raise OversizedInput("more unparsed WebSocket bytes than the buffer bound")
        if self._pos and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]  # compact: what was parsed is gone
            self._pos = 0
        self._buf += data

    def next_event(self) -> FrameEvent | None:
        """The next complete message or control frame; None until more bytes arrive."""
        while True:
            event = self._next_frame()
            if event is not True:
                return event or None

    def _next_frame(self) -> FrameEvent | bool:
        """A frame's event, True when a fragment was taken in, False when bytes are missing."""
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 2:
            return False
        b0, b1 = buf[pos], buf[pos + 1]
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if b0 & 0x70:
            raise MalformedInput("WebSocket frame with RSV bits but no extension")
        masked = bool(b1 & 0x80)
        if masked != self._expect_masked:
            raise MalformedInput(
                "unmasked frame from a client"
                if self._expect_masked
                else "masked frame from a server"
            )
        length = b1 & 0x7F
        head = 2
        if length == 126:
            if avail < 4:
                return False
            (length,) = _U16.unpack_from(buf, pos + 2)
            if length < 126:
                raise MalformedInput("non-minimal WebSocket length")
            head = 4
        elif length == 127:
            if avail < 10:
                return False
            (length,) = _U64.unpack_from(buf, pos + 2)
            if length >> 63:
                raise MalformedInput("WebSocket length with its top bit set")
            if length <= 0xFFFF:
                raise MalformedInput("non-minimal WebSocket length")
            head = 10
        control = bool(opcode & 0x8)
        if control:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise MalformedInput(f"unknown WebSocket opcode {opcode:#x}")
            if not fin:
                raise MalformedInput("fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise OversizedInput("control frame over 125 bytes")
        else:
            if opcode == OP_TEXT:
                raise MalformedInput("text frame on a cell link")
            if opcode not in (OP_CONTINUATION, OP_BINARY):
                raise MalformedInput(f"unknown WebSocket opcode {opcode:#x}")
            if (opcode == OP_CONTINUATION) != self._in_message:
                raise MalformedInput(
                    "continuation without a message"
                    if opcode == OP_CONTINUATION
                    else "new message inside a fragmented one"
                )
            if self._size + length > self._max_message:
                raise OversizedInput(f"WebSocket message over {self._max_message} bytes")
        if masked:
            head += 4
        end = pos + head + length
        if end > len(buf):
            return False
        view = memoryview(buf)
        try:
            if masked:
                payload = ws_mask(view[pos + head : end], bytes(view[pos + head - 4 : pos + head]))
            else:
                payload = bytes(view[pos + head : end])
        finally:
            view.release()  # the bytearray must stay resizable
        self._pos = end
        if control:
            return _control_event(opcode, payload)
        if fin and not self._in_message:
            return BinaryMessage(payload)  # the usual case: one frame, no join
        self._parts.append(payload)
        self._size += length
        self._in_message = not fin
        if not fin:
            return True
        data = b"".join(self._parts)
        self._parts, self._size = [], 0
        return BinaryMessage(data)


def _control_event(opcode: int, payload: bytes) -> FrameEvent:
    if opcode == OP_PING:
        return PingFrame(payload)
    if opcode == OP_PONG:
        return PongFrame(payload)
    if not payload:
        return CloseFrame(None, "")
    if len(payload) == 1:
        raise MalformedInput("Close frame with a 1-byte payload")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedInput("Close reason is not UTF-8") from None
    return CloseFrame(_U16.unpack_from(payload)[0], reason)


def encode_frame_header(opcode: int, length: int, *, masked: bool = False) -> bytes:
    """A final frame's header (FIN set) for a ``length``-byte payload (§5.2), without the
    4-byte masking key that follows it when ``masked``."""
    b0 = 0x80 | opcode
    mask_bit = 0x80 if masked else 0
    if length <= 125:
        return bytes((b0, mask_bit | length))
    if length <= 0xFFFF:
        return bytes((b0, mask_bit | 126)) + _U16.pack(length)
    return bytes((b0, mask_bit | 127)) + _U64.pack(length)


def encode_frame(
    opcode: int, payload: bytes | bytearray | memoryview, mask_key: bytes | None
) -> bytes:
    """One final frame of ``opcode``; masked with ``mask_key`` (4 fresh random bytes per
    frame, §5.3) when this end is the client, unmasked (``None``) when it is the server."""
    n = len(payload)
    if opcode & 0x8 and n > MAX_CONTROL_PAYLOAD:
        raise LocalProtocolError("control frame over 125 bytes")
    if mask_key is None:
        return encode_frame_header(opcode, n) + bytes(payload)
    return encode_frame_header(opcode, n, masked=True) + mask_key + ws_mask(payload, mask_key)


def encode_close_payload(code: int, reason: str) -> bytes:
    data = _U16.pack(code) + reason.encode("utf-8")
    if len(data) > MAX_CONTROL_PAYLOAD:
        raise LocalProtocolError("Close reason too long")
    return data
