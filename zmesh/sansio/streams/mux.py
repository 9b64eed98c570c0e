"""``StreamMux``: TCP-like streams multiplexed on one circuit, with end-to-end flow control.

One ``StreamMux`` sits at each end of a circuit: role ``CLIENT`` (opens streams for local
applications) or ``EXIT`` (accepts or refuses them). The circuit carries the payloads that
``messages_to_send`` returns and hands the other end's payloads to ``receive_message``; the
layout of those payloads is in :mod:`zmesh.sansio.streams.messages`.

Flow control follows Tor's SENDME idea (tor-spec §7.3-7.4) counted in bytes instead of cells:

- Each direction of each stream has a window of ``stream_window`` bytes, and each direction of
  the circuit a window of ``circuit_window`` bytes shared by all its streams. DATA spends both;
  the sender stops at zero.
- The receiver returns credit (SENDME) only when the *application consumes* bytes
  (``consumed``), not when they arrive. So the bytes a receiver holds, and the bytes in flight
  through the relays, never exceed the circuit window: a fast sender cannot fill a relay's or an
  exit's memory, and a slow reader pushes back on the sender instead of buffering.
- Credit is batched: a SENDME goes out once at least an eighth of the window is owed.
- Both ends must use the same window sizes (zmesh uses the defaults); a SENDME that would raise
  a window above its size, or DATA beyond the window, is a protocol violation.

States and transitions are in ``_TRANSITIONS``. A remote violation raises a
``RemoteProtocolError`` before anything changes; the driver should then tear the circuit down,
because the two ends no longer agree on the windows.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from zmesh.sansio.streams.messages import (
    CIRCUIT_STREAM_ID,
    HEADER_SIZE,
    MIN_MESSAGE_SIZE,
    Begin,
    Connected,
    Data,
    End,
    Message,
    MessageType,
    Reset,
    Sendme,
    encode_message,
    parse_message,
    validate_hostname,
)
from zmesh.sansio.streams.reasons import ResetReason
from zmesh.sansio.wire import LocalProtocolError, MalformedInput, OversizedInput

__all__ = [
    "Role",
    "StreamState",
    "StreamMux",
    "StreamEvent",
    "BeginRequested",
    "StreamConnected",
    "DataReceived",
    "EndReceived",
    "StreamReset",
    "SendWindowOpened",
    "DEFAULT_STREAM_WINDOW",
    "DEFAULT_CIRCUIT_WINDOW",
    "DEFAULT_MAX_STREAMS",
]

#: 2 MiB per stream: one stream's throughput is at most window / round trip, and the round trip
#: under load includes every queue on the path (socket buffers, link queues, the batches each
#: hop works on). 256 KiB (Tor's old 500-cell window) held a loopback mesh to ~200 Mbit/s;
#: 2 MiB allows ~80 Mbit/s at a 200 ms round trip (bench/e2e.py; docs/architecture.md §6).
DEFAULT_STREAM_WINDOW: Final = 2 * 1024 * 1024
#: 4 MiB per circuit (two full-speed streams): bounds what one circuit can make an exit or a
#: client hold, and the queueing delay a bulk transfer adds for other streams of its circuit
#: (window / bandwidth; there is no congestion control yet, see docs/threat-model.md).
DEFAULT_CIRCUIT_WINDOW: Final = 4 * 1024 * 1024
#: Streams alive at once on one circuit (a browser opens a few dozen per site).
DEFAULT_MAX_STREAMS: Final = 256
#: A SENDME goes out once this fraction of the window is owed (1/8: the sender rarely stalls,
#: and credit costs one message per 32 KiB by default).
_CREDIT_DIVISOR: Final = 8
#: Queued events per live-stream slot before the peer is flooding a reader that does not drain.
_EVENTS_PER_STREAM: Final = 8
_MAX_STREAM_ID: Final = 0xFFFF
_DATA_HEADER_PACK: Final = struct.Struct("!BH").pack  # DATA: type u8, stream id u16


class Role(enum.Enum):
    CLIENT = "client"
    EXIT = "exit"


class StreamState(enum.Enum):
    CONNECTING = "connecting"  # client: BEGIN sent, waiting for CONNECTED or RESET
    ACCEPTING = "accepting"  # exit: BEGIN received, the application has not decided
    OPEN = "open"
    LOCAL_ENDED = "local-ended"  # we sent END; the peer may still send
    REMOTE_ENDED = "remote-ended"  # the peer sent END; we may still send
    CLOSED = "closed"  # both ENDs exchanged: the stream leaves the table


class _Input(enum.Enum):
    ACCEPT = "accept"  # exit application accepts (we send CONNECTED)
    CONNECTED = "connected"  # client receives CONNECTED
    LOCAL_END = "local-end"
    REMOTE_END = "remote-end"


_TRANSITIONS: Final[dict[tuple[StreamState, _Input], StreamState]] = {
    (StreamState.ACCEPTING, _Input.ACCEPT): StreamState.OPEN,
    (StreamState.CONNECTING, _Input.CONNECTED): StreamState.OPEN,
    (StreamState.OPEN, _Input.LOCAL_END): StreamState.LOCAL_ENDED,
    (StreamState.OPEN, _Input.REMOTE_END): StreamState.REMOTE_ENDED,
    (StreamState.REMOTE_ENDED, _Input.LOCAL_END): StreamState.CLOSED,
    (StreamState.LOCAL_ENDED, _Input.REMOTE_END): StreamState.CLOSED,
}
_CAN_SEND: Final = frozenset({StreamState.OPEN, StreamState.REMOTE_ENDED})
_CAN_RECEIVE: Final = frozenset({StreamState.OPEN, StreamState.LOCAL_ENDED})  # see receive_message


# ---------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class BeginRequested:
    """Exit side: the client asks for ``host``:``port``; answer with accept() or reject()."""

    stream_id: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class StreamConnected:
    """Client side: the exit reached the destination; the stream can now send."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes for the application; call ``consumed(stream_id, n)`` once they are passed on."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class EndReceived:
    """The peer half-closed: no more data will arrive on this stream."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer reset (or refused) the stream; it is gone."""

    stream_id: int
    reason: ResetReason


@dataclass(frozen=True, slots=True)
class SendWindowOpened:
    """A stream whose last ``send`` was cut short by a window may send again."""

    stream_id: int


StreamEvent = (
    BeginRequested | StreamConnected | DataReceived | EndReceived | StreamReset | SendWindowOpened
)


@dataclass(frozen=True, slots=True)
class _DataReady:
    """Queue marker: the stream's coalesced receive buffer becomes one DataReceived here."""

    stream_id: int


@dataclass(slots=True)
class _Stream:
    stream_id: int
    state: StreamState
    send_window: int  # bytes we may still send before the peer returns credit
    recv_window: int  # bytes the peer may still send us
    credit_owed: int = 0  # consumed bytes not yet returned by a SENDME
    blocked: bool = False  # the last send() was cut short; report SendWindowOpened


class StreamMux:
    """The stream layer of one circuit end. Sans-IO: no clock, no sockets, no randomness."""

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int = 960,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        circuit_window: int = DEFAULT_CIRCUIT_WINDOW,
        max_streams: int = DEFAULT_MAX_STREAMS,
    ) -> None:
        if max_message_size < MIN_MESSAGE_SIZE:
            raise LocalProtocolError(f"max_message_size must be ≥ {MIN_MESSAGE_SIZE}")
        if not (0 < stream_window <= circuit_window <= 0x7FFF_FFFF) or max_streams < 1:
            raise LocalProtocolError("need 0 < stream_window ≤ circuit_window < 2**31")
        if max_streams >= _MAX_STREAM_ID:
            raise LocalProtocolError(f"max_streams must be < {_MAX_STREAM_ID}")
        self.role = role
        self.max_message_size = max_message_size
        self.stream_window = stream_window
        self.circuit_window = circuit_window
        self.max_streams = max_streams
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._circ_send_window = circuit_window
        self._circ_recv_window = circuit_window
        self._circ_credit_owed = 0
        # Bytes received per stream id and not yet consumed. Outlives the stream's protocol
        # state (the application may still be writing the tail of a closed stream out), and
        # is what the circuit credit is paid from.
        self._unconsumed: dict[int, int] = {}
        self._rx_buffers: dict[int, bytearray] = {}
        self._events: deque[StreamEvent | _DataReady] = deque()
        self._max_events = _EVENTS_PER_STREAM * max_streams + 16
        self._outbox: list[bytes] = []

    # ----------------------------------------------------------------------------- queries

    @property
    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def stream_state(self, stream_id: int) -> StreamState:
        """The stream's state; ``CLOSED`` once it has left the table (or never existed)."""
        stream = self._streams.get(stream_id)
        return stream.state if stream is not None else StreamState.CLOSED

    def send_capacity(self, stream_id: int) -> int:
        """How many bytes ``send`` would take right now (0 while connecting or blocked)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in _CAN_SEND:
            return 0
        return min(stream.send_window, self._circ_send_window)

    def outstanding(self, stream_id: int) -> int:
        """Bytes sent on the stream that the peer has not yet returned credit for."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else self.stream_window - stream.send_window

    @property
    def circuit_outstanding(self) -> int:
        return self.circuit_window - self._circ_send_window

    # ---------------------------------------------------------------------------- commands

    def open_stream(self, host: str, port: int) -> int:
        """Client: ask the exit to connect to ``host``:``port``; returns the new stream id."""
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("only the client end opens streams")
        if not 1 <= port <= 0xFFFF:
            raise LocalProtocolError(f"port {port} outside 1..65535")
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            try:
                validate_hostname(host)
            except MalformedInput as exc:
                raise LocalProtocolError(str(exc)) from None
        else:
            if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
                raise LocalProtocolError("a scoped IPv6 address means nothing at the exit")
        if len(self._streams) >= self.max_streams:
            raise LocalProtocolError(f"already {self.max_streams} streams on this circuit")
        stream_id = self._allocate_id()
        payload = encode_message(Begin(stream_id, host, port))
        self._streams[stream_id] = _Stream(
            stream_id, StreamState.CONNECTING, self.stream_window, self.stream_window
        )
        self._outbox.append(payload)
        return stream_id

    def accept(self, stream_id: int) -> None:
        """Exit: the destination is connected; tell the client.

        Raises ``LocalProtocolError`` if the stream is gone (the client reset it while the
        exit was connecting; check ``stream_state`` first) or is not waiting for a decision."""
        stream = self._require(stream_id)
        self._transition(stream, _Input.ACCEPT)
        self._outbox.append(encode_message(Connected(stream_id)))

    def reject(self, stream_id: int, reason: ResetReason) -> None:
        """Exit: refuse a requested stream (policy, DNS failure, refused, timeout …).

        A no-op if the client already reset it (it raced our decision)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.state is not StreamState.ACCEPTING:
            raise LocalProtocolError(f"stream {stream_id} is {stream.state.value}, not accepting")
        self.reset(stream_id, reason)

    def send(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the windows allow; returns the number of bytes taken.

        Returns 0 while the stream is still connecting. A short count means the application
        must wait for :class:`SendWindowOpened` before offering the rest.
        """
        stream = self._require(stream_id)
        if stream.state is StreamState.LOCAL_ENDED:
            raise LocalProtocolError(f"stream {stream_id}: send after end")
        n = self.send_capacity(stream_id) if stream.state in _CAN_SEND else 0
        n = min(n, len(data))
        if n < len(data):
            stream.blocked = True
        if n == 0:
            return 0
        view = memoryview(data)[:n]
        chunk = self.max_message_size - HEADER_SIZE
        # encode_message(Data(...)) inlined: header + bytes, one join per message.
        header = _DATA_HEADER_PACK(MessageType.DATA, stream_id)
        join = b"".join
        self._outbox.extend(
            [join((header, view[start : start + chunk])) for start in range(0, n, chunk)]
        )
        stream.send_window -= n
        self._circ_send_window -= n
        return n

    def end(self, stream_id: int) -> None:
        """Half-close: we will send no more data on this stream."""
        stream = self._require(stream_id)
        if (stream.state, _Input.LOCAL_END) not in _TRANSITIONS:
            raise LocalProtocolError(f"cannot end stream {stream_id} in {stream.state.value}")
        self._outbox.append(encode_message(End(stream_id)))
        self._transition(stream, _Input.LOCAL_END)

    def reset(self, stream_id: int, reason: ResetReason) -> None:
        """Abort the stream both ways. A no-op if the stream is already gone (a reset race)."""
        if stream_id not in self._streams:
            return
        self._outbox.append(encode_message(Reset(stream_id, ResetReason(reason))))
        self._drop_stream(stream_id, discard_received=True)

    def consumed(self, stream_id: int, n: int) -> None:
        """The application passed ``n`` received bytes on: return them as credit.

        Ignored for a stream that was reset (its credit was returned when it was dropped).
        """
        if n <= 0:
            raise LocalProtocolError("consumed() needs a positive byte count")
        owed = self._unconsumed.get(stream_id)
        if owed is None:
            return
        if n > owed:
            raise LocalProtocolError(f"consumed {n} bytes but only {owed} were delivered")
        if owed == n:
            del self._unconsumed[stream_id]
        else:
            self._unconsumed[stream_id] = owed - n
        self._circ_credit_owed += n
        stream = self._streams.get(stream_id)
        if stream is not None and stream.state in _CAN_RECEIVE:
            # Cap at what this stream object received: after an id wraps around, the new
            # stream must not be paid for its predecessor's bytes.
            room = self.stream_window - stream.recv_window - stream.credit_owed
            stream.credit_owed += min(n, room)
            self._pay_stream_credit(stream)
        self._pay_circuit_credit()

    # --------------------------------------------------------------------------- I/O

    def messages_to_send(self) -> list[bytes]:
        """Payloads for the circuit, in order; each at most ``max_message_size`` bytes."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> StreamEvent | None:
        while self._events:
            item = self._events.popleft()
            if not isinstance(item, _DataReady):
                return item
            buf = self._rx_buffers.pop(item.stream_id, None)
            if buf:  # None when a reset dropped the buffered bytes
                return DataReceived(item.stream_id, bytes(buf))
        return None

    def receive_messages(self, payloads: Iterable[bytes]) -> None:
        """Feed STREAM payloads in order: :meth:`receive_message` on each, with the DATA fast
        path inlined for the runs a circuit delivers. Stops at the first violation and
        raises it; the messages before it have been applied, the rest not."""
        streams, rx_buffers, unconsumed = self._streams, self._rx_buffers, self._unconsumed
        events, max_events, limit = self._events, self._max_events, self.max_message_size
        open_, local_ended = StreamState.OPEN, StreamState.LOCAL_ENDED
        for payload in payloads:
            size = len(payload)
            if 3 < size <= limit and payload[0] == 3:  # HEADER_SIZE, MessageType.DATA
                stream = streams.get(payload[1] << 8 | payload[2])
                n = size - 3
                if (
                    stream is not None
                    and (stream.state is open_ or stream.state is local_ended)
                    and n <= stream.recv_window
                    and n <= self._circ_recv_window
                ):
                    stream_id = stream.stream_id
                    buf = rx_buffers.get(stream_id)
                    if buf is not None or len(events) < max_events:
                        self._circ_recv_window -= n
                        stream.recv_window -= n
                        unconsumed[stream_id] = unconsumed.get(stream_id, 0) + n
                        if buf is None:
                            rx_buffers[stream_id] = bytearray(memoryview(payload)[3:])
                            events.append(_DataReady(stream_id))
                        else:
                            buf += memoryview(payload)[3:]
                        continue
            self.receive_message(payload)

    def receive_message(self, payload: bytes | bytearray | memoryview) -> None:
        """Feed one STREAM payload from the peer. Raises ``RemoteProtocolError`` on violation,
        leaving the mux unchanged."""
        size = len(payload)
        if size > self.max_message_size:
            raise OversizedInput(f"stream message of {size} bytes")
        if size > 3 and payload[0] == 3:  # HEADER_SIZE, MessageType.DATA
            # Fast path for the bulk of a transfer: DATA for an open stream within both
            # windows. It appends to the stream's receive buffer (no message object; one
            # event per buffer, not per message); any case it does not cover (window
            # overrun, wrong state, unknown stream or id 0, event queue full) takes the full
            # path below, which validates and reports it.
            stream_id = payload[1] << 8 | payload[2]
            stream = self._streams.get(stream_id)
            n = size - 3
            if (
                stream is not None
                # _CAN_RECEIVE spelled out: identity tests, no enum hash per message
                and (stream.state is StreamState.OPEN or stream.state is StreamState.LOCAL_ENDED)
                and n <= stream.recv_window
                and n <= self._circ_recv_window
            ):
                buf = self._rx_buffers.get(stream_id)
                if buf is not None or len(self._events) < self._max_events:
                    self._circ_recv_window -= n
                    stream.recv_window -= n
                    self._unconsumed[stream_id] = self._unconsumed.get(stream_id, 0) + n
                    if buf is None:
                        self._rx_buffers[stream_id] = bytearray(memoryview(payload)[3:])
                        self._events.append(_DataReady(stream_id))
                    else:
                        buf += memoryview(payload)[3:]
                    return
        msg = parse_message(payload)
        self._check_event_room(msg)
        match msg:
            case Begin():
                self._on_begin(msg)
            case Connected():
                self._on_connected(msg)
            case Data():
                self._on_data(msg)
            case End():
                self._on_end(msg)
            case Reset():
                self._on_reset(msg)
            case Sendme():
                self._on_sendme(msg)

    # ------------------------------------------------------------------------ handlers
    # Each handler validates first and mutates after its last raise.

    def _on_begin(self, msg: Begin) -> None:
        if self.role is not Role.EXIT:
            raise MalformedInput("BEGIN sent to the client end")
        if msg.stream_id in self._streams:
            raise MalformedInput(f"BEGIN for stream {msg.stream_id}, which is in use")
        if msg.stream_id in self._rx_buffers:
            # An id that wrapped around while its predecessor's bytes are still queued for
            # the application: merging them would corrupt both streams, so refuse this one.
            self._outbox.append(encode_message(Reset(msg.stream_id, ResetReason.RESOURCE_LIMIT)))
            return
        if len(self._streams) >= self.max_streams:
            # The client counts streams the same way over an ordered circuit, so this is a
            # misbehaving (or differently configured) client; refuse just this stream.
            self._outbox.append(encode_message(Reset(msg.stream_id, ResetReason.RESOURCE_LIMIT)))
            return
        self._streams[msg.stream_id] = _Stream(
            msg.stream_id, StreamState.ACCEPTING, self.stream_window, self.stream_window
        )
        self._events.append(BeginRequested(msg.stream_id, msg.host, msg.port))

    def _on_connected(self, msg: Connected) -> None:
        stream = self._streams.get(msg.stream_id)
        if self.role is not Role.CLIENT:
            raise MalformedInput("CONNECTED sent to the exit end")
        if stream is None:
            return  # we reset it while the exit was connecting
        if stream.state is not StreamState.CONNECTING:
            raise MalformedInput(f"CONNECTED for stream {msg.stream_id} in {stream.state.value}")
        self._transition(stream, _Input.CONNECTED)
        stream.blocked = False  # StreamConnected already tells the application to send
        self._events.append(StreamConnected(msg.stream_id))

    def _on_data(self, msg: Data) -> None:
        n = len(msg.data)
        if n > self._circ_recv_window:
            raise OversizedInput(f"DATA of {n} bytes overruns the circuit window")
        stream = self._streams.get(msg.stream_id)
        if stream is None:
            # It crossed our RESET. The bytes still spent circuit window; give it back now.
            self._circ_recv_window -= n
            self._circ_credit_owed += n
            self._pay_circuit_credit()
            return
        if stream.state not in _CAN_RECEIVE:
            raise MalformedInput(f"DATA for stream {msg.stream_id} in {stream.state.value}")
        if n > stream.recv_window:
            raise OversizedInput(f"DATA of {n} bytes overruns stream {msg.stream_id}'s window")
        self._circ_recv_window -= n
        stream.recv_window -= n
        self._unconsumed[msg.stream_id] = self._unconsumed.get(msg.stream_id, 0) + n
        buf = self._rx_buffers.get(msg.stream_id)
        if buf is None:
            self._rx_buffers[msg.stream_id] = bytearray(msg.data)
            self._events.append(_DataReady(msg.stream_id))
        else:
            buf += msg.data

    def _on_end(self, msg: End) -> None:
        stream = self._streams.get(msg.stream_id)
        if stream is None:
            return
        if (stream.state, _Input.REMOTE_END) not in _TRANSITIONS:
            raise MalformedInput(f"END for stream {msg.stream_id} in {stream.state.value}")
        self._events.append(EndReceived(msg.stream_id))
        self._transition(stream, _Input.REMOTE_END)

    def _on_reset(self, msg: Reset) -> None:
        if msg.stream_id not in self._streams:
            return
        self._events.append(StreamReset(msg.stream_id, msg.reason))
        self._drop_stream(msg.stream_id, discard_received=True)

    def _on_sendme(self, msg: Sendme) -> None:
        if msg.stream_id == CIRCUIT_STREAM_ID:
            if self._circ_send_window + msg.credit > self.circuit_window:
                raise MalformedInput("circuit SENDME beyond the circuit window")
            self._circ_send_window += msg.credit
            for other in self._streams.values():
                self._maybe_unblock(other)
            return
        stream = self._streams.get(msg.stream_id)
        if stream is None:
            return
        if stream.send_window + msg.credit > self.stream_window:
            raise MalformedInput(f"SENDME beyond stream {msg.stream_id}'s window")
        stream.send_window += msg.credit
        self._maybe_unblock(stream)

    # ------------------------------------------------------------------------- helpers

    def _check_event_room(self, msg: Message) -> None:
        # Each message adds at most one event, except a circuit SENDME (one per blocked stream).
        needed = 1
        if isinstance(msg, Sendme) and msg.stream_id == CIRCUIT_STREAM_ID:
            needed = sum(1 for s in self._streams.values() if s.blocked)
        if len(self._events) + needed > self._max_events:
            raise OversizedInput("event queue full: the application is not draining next_event")
        if len(self._outbox) > self._max_events + self.circuit_window // 64:
            # Only replies (RESET to an excess BEGIN, SENDMEs) grow this from remote input.
            raise OversizedInput("send queue full: the driver is not draining messages_to_send")

    def _maybe_unblock(self, stream: _Stream) -> None:
        if stream.blocked and self.send_capacity(stream.stream_id) > 0:
            stream.blocked = False
            self._events.append(SendWindowOpened(stream.stream_id))

    def _pay_stream_credit(self, stream: _Stream) -> None:
        threshold = max(1, self.stream_window // _CREDIT_DIVISOR)
        if stream.credit_owed >= threshold:
            self._outbox.append(encode_message(Sendme(stream.stream_id, stream.credit_owed)))
            stream.recv_window += stream.credit_owed
            stream.credit_owed = 0

    def _pay_circuit_credit(self) -> None:
        threshold = max(1, self.circuit_window // _CREDIT_DIVISOR)
        owed = self._circ_credit_owed
        if owed >= threshold:
            self._outbox.append(encode_message(Sendme(CIRCUIT_STREAM_ID, owed)))
            self._circ_recv_window += owed
            self._circ_credit_owed = 0

    def _transition(self, stream: _Stream, event: _Input) -> None:
        new = _TRANSITIONS.get((stream.state, event))
        if new is None:
            raise LocalProtocolError(
                f"stream {stream.stream_id}: {event.value} not allowed in {stream.state.value}"
            )
        stream.state = new
        if new is StreamState.CLOSED:
            self._drop_stream(stream.stream_id, discard_received=False)

    def _drop_stream(self, stream_id: int, *, discard_received: bool) -> None:
        del self._streams[stream_id]
        if discard_received:
            # A reset stream's bytes will never be consumed: pay the circuit back for all of
            # them, delivered or not, so the circuit window does not leak.
            if self._rx_buffers.pop(stream_id, None) is not None:
                self._events = deque(
                    e
                    for e in self._events
                    if not (isinstance(e, _DataReady) and e.stream_id == stream_id)
                )
            self._circ_credit_owed += self._unconsumed.pop(stream_id, 0)
            self._pay_circuit_credit()

    def _allocate_id(self) -> int:
        # Sequential with wrap-around, so an id comes back only after 65535 others; ids still
        # owed consumption are skipped so credit cannot land on the wrong stream.
        for _ in range(_MAX_STREAM_ID):
            candidate = self._next_id
            self._next_id = candidate % _MAX_STREAM_ID + 1
            if candidate not in self._streams and candidate not in self._unconsumed:
                return candidate
        raise LocalProtocolError("no free stream id")  # unreachable while max_streams < 65535

    def _require(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"no stream {stream_id}")
        return stream
