"""The trio face of one circuit end's :class:`~zmesh.sansio.streams.StreamMux`.

:class:`CircuitStreams` owns the mux of one circuit end (client or exit) and hands out
:class:`MeshStream` objects, ordinary ``trio.abc.HalfCloseableStream``\\ s. Protocol decisions
stay in the mux; this module only blocks and wakes tasks:

- ``send_all`` offers bytes to the mux and sleeps while the end-to-end windows are closed
  (``SendWindowOpened`` wakes it), so a fast local sender is held back by the far end's reader
  and never fills a relay's memory (the mux's SENDME windows bound what is in flight).
- ``receive_some`` hands out what arrived and only then calls ``consumed``, which is what
  returns credit to the sender: a slow local reader pushes back across the circuit.
- A RESET from the far end, or the circuit dying, turns into ``trio.BrokenResourceError`` with
  the reason attached (``MeshStream.reset_reason``).

Every mux call is followed by ``pump()``, the node's callback that moves the mux's outgoing
payloads onto the circuit.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import trio

from zmesh.sansio.streams import (
    BeginRequested,
    DataReceived,
    EndReceived,
    ResetReason,
    SendWindowOpened,
    StreamConnected,
    StreamMux,
    StreamOpenFailed,
    StreamReset,
    StreamState,
)
from zmesh.sansio.wire import LocalProtocolError

__all__ = ["CircuitStreams", "MeshStream", "StreamClosedError"]

_DEFAULT_READ = 256 * 1024  # receive_some() without max_bytes returns at most this


class StreamClosedError(trio.BrokenResourceError):
    """The stream was reset by the far end or lost with its circuit."""

    def __init__(self, reason: ResetReason) -> None:
        super().__init__(f"stream reset: {reason.name.lower()}")
        self.reason = reason


class _StreamSlot:
    __slots__ = ("changed", "closed_locally", "connected", "eof", "reset", "rx", "stream_id")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.rx: collections.deque[bytes] = collections.deque()
        self.eof = False
        self.reset: ResetReason | None = None
        self.connected = False
        self.changed = trio.Event()
        self.closed_locally = False

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class CircuitStreams:
    """All streams of one circuit end. ``pump`` moves the mux's output onto the circuit."""

    def __init__(
        self,
        mux: StreamMux,
        pump: Callable[[], None],
        on_begin: Callable[[int, str, int], None] | None = None,
    ) -> None:
        self.mux = mux
        self._pump = pump
        self._on_begin = on_begin
        self._slots: dict[int, _StreamSlot] = {}
        self.failed: ResetReason | None = None
        self.bytes_sent = 0
        self.bytes_received = 0

    def __len__(self) -> int:
        return len(self._slots)

    # -- events from the mux (the node calls this after every receive_message) -----------

    def dispatch(self) -> None:
        mux = self.mux
        while (event := mux.next_event()) is not None:
            if isinstance(event, DataReceived):
                slot = self._slots.get(event.stream_id)
                if slot is None or slot.closed_locally:
                    # Nobody will read it: return the credit at once so the circuit flows.
                    mux.consumed(event.stream_id, len(event.data))
                    continue
                slot.rx.append(event.data)
                self.bytes_received += len(event.data)
                slot.wake()
            elif isinstance(event, BeginRequested):
                self._slots[event.stream_id] = _StreamSlot(event.stream_id)
                if self._on_begin is None:
                    mux.reject(event.stream_id, ResetReason.POLICY_REFUSED)
                    del self._slots[event.stream_id]
                else:
                    self._on_begin(event.stream_id, event.host, event.port)
            elif isinstance(event, StreamConnected):
                slot = self._slots.get(event.stream_id)
                if slot is not None:
                    slot.connected = True
                    slot.wake()
            elif isinstance(event, EndReceived):
                slot = self._slots.get(event.stream_id)
                if slot is not None:
                    slot.eof = True
                    slot.wake()
            elif isinstance(event, StreamReset):
                slot = self._slots.pop(event.stream_id, None)
                if slot is not None:
                    slot.reset = event.reason
                    slot.wake()
            elif isinstance(event, SendWindowOpened):
                slot = self._slots.get(event.stream_id)
                if slot is not None:
                    slot.wake()
        self._pump()

    def fail_all(self, reason: ResetReason = ResetReason.CIRCUIT_FAILED) -> None:
        """The circuit is gone: every stream ends with ``reason``."""
        self.failed = reason
        for slot in self._slots.values():
            slot.reset = reason
            slot.wake()
        self._slots.clear()

    # -- client side ----------------------------------------------------------------------

    async def open_stream(self, host: str, port: int) -> MeshStream:
        """Ask the exit for ``host``:``port``; raises :class:`StreamOpenFailed` on refusal."""
        if self.failed is not None:
            raise StreamOpenFailed(self.failed, "circuit is gone")
        try:
            stream_id = self.mux.open_stream(host, port)
        except LocalProtocolError as exc:
            raise StreamOpenFailed(ResetReason.RESOURCE_LIMIT, str(exc)) from exc
        slot = _StreamSlot(stream_id)
        self._slots[stream_id] = slot
        self._pump()
        try:
            while not slot.connected:
                if slot.reset is not None:
                    raise StreamOpenFailed(slot.reset, "refused by the exit")
                await slot.changed.wait()
        except BaseException:
            if slot.reset is None and self._slots.get(stream_id) is slot:
                self._drop(slot, ResetReason.CANCELLED)
            raise
        return MeshStream(self, slot)

    # -- exit side ------------------------------------------------------------------------

    def accept(self, stream_id: int) -> MeshStream | None:
        """Exit: the destination answered. ``None`` if the stream died meanwhile."""
        slot = self._slots.get(stream_id)
        if slot is None or self.mux.stream_state(stream_id) is not StreamState.ACCEPTING:
            return None
        self.mux.accept(stream_id)
        self._pump()
        slot.connected = True
        return MeshStream(self, slot)

    def reject(self, stream_id: int, reason: ResetReason) -> None:
        slot = self._slots.pop(stream_id, None)
        if slot is not None and self.mux.stream_state(stream_id) is StreamState.ACCEPTING:
            self.mux.reject(stream_id, reason)
            self._pump()

    # -- helpers for MeshStream -----------------------------------------------------------

    def _drop(self, slot: _StreamSlot, reason: ResetReason) -> None:
        self._slots.pop(slot.stream_id, None)
        slot.closed_locally = True
        if self.failed is None:
            self.mux.reset(slot.stream_id, reason)
            self._pump()
        # Bytes already delivered but never read: hand back their credit.
        unread = sum(len(b) for b in slot.rx)
        slot.rx.clear()
        if unread and self.failed is None:
            self.mux.consumed(slot.stream_id, unread)
            self._pump()

    def _release(self, slot: _StreamSlot) -> None:
        self._slots.pop(slot.stream_id, None)
        slot.closed_locally = True


class MeshStream(trio.abc.HalfCloseableStream):
    """One stream through a circuit, as a trio stream."""

    def __init__(self, owner: CircuitStreams, slot: _StreamSlot) -> None:
        self._owner = owner
        self._slot = slot
        self._ended = False
        self._closed = False

    @property
    def stream_id(self) -> int:
        return self._slot.stream_id

    @property
    def reset_reason(self) -> ResetReason | None:
        return self._slot.reset

    def _check_usable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._slot.reset is not None:
            raise StreamClosedError(self._slot.reset)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_usable()
        if self._ended:
            raise trio.ClosedResourceError("send after send_eof")
        view = memoryview(data)
        owner = self._owner
        mux = owner.mux
        sid = self._slot.stream_id
        while view:
            self._check_usable()
            n = mux.send(sid, view)
            if n:
                owner.bytes_sent += n
                owner._pump()
                view = view[n:]
                await trio.lowlevel.checkpoint()
            else:
                await self._slot.changed.wait()
        if not data:
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        while self._owner.mux.send_capacity(self._slot.stream_id) == 0:
            self._check_usable()
            await self._slot.changed.wait()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        slot = self._slot
        while not slot.rx:
            if self._closed:
                raise trio.ClosedResourceError("stream closed")
            if slot.eof:
                await trio.lowlevel.checkpoint()
                return b""
            if slot.reset is not None:
                raise StreamClosedError(slot.reset)
            await slot.changed.wait()
        limit = max_bytes if max_bytes is not None else _DEFAULT_READ
        data = slot.rx.popleft()
        if slot.rx and len(data) < limit:
            # Several chunks waiting: hand them out together (fewer writes downstream).
            parts = [data]
            size = len(data)
            while slot.rx and size + len(slot.rx[0]) <= limit:
                chunk = slot.rx.popleft()
                parts.append(chunk)
                size += len(chunk)
            data = b"".join(parts)
        if len(data) > limit:
            slot.rx.appendleft(data[limit:])
            data = data[:limit]
        if slot.reset is None:
            self._owner.mux.consumed(slot.stream_id, len(data))
            self._owner._pump()
        await trio.lowlevel.checkpoint()
        return data

    async def send_eof(self) -> None:
        self._check_usable()
        if not self._ended:
            self._ended = True
            self._owner.mux.end(self._slot.stream_id)
            self._owner._pump()
            if self._slot.eof:
                self._owner._release(self._slot)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            slot = self._slot
            if slot.reset is None:
                if slot.eof and not slot.rx:
                    if not self._ended:
                        self._owner.mux.end(slot.stream_id)
                        self._owner._pump()
                    self._owner._release(slot)
                elif slot.eof and self._ended:
                    self._owner._release(slot)
                else:
                    # Closing before the far end finished: abort, as a TCP RST would.
                    self._owner._drop(slot, ResetReason.CANCELLED)
        await trio.lowlevel.checkpoint()
