"""Outbound messages waiting for TSNs, scheduled round-robin per stream (RFC 9260 §6.1, §6.9).

``send`` puts a whole user message here; the association cuts fragments off the current message
only when it builds a packet (so an unsent message costs no TSN and can still be dropped when
its PR-SCTP lifetime runs out, RFC 3758 §3.5 A2). Streams take turns message by message, so one
channel's 256 KiB message does not hold up another channel's small ones for long; a message's
fragments are never interleaved with another message's (no I-DATA), which keeps their TSNs
consecutive as the receiver's reassembly expects.

The queue is bounded in bytes (``capacity``): :meth:`SendQueue.add` refuses a message that does
not fit, and the per-stream low-water mark drives :class:`BufferedAmountLow`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

__all__ = ["OutMessage", "SendQueue"]


class OutMessage:
    """A user message on its way out. ``offset`` = bytes already given TSNs."""

    __slots__ = (
        "abandoned",
        "data",
        "expires_at",
        "first_tsn",
        "last_tsn",
        "max_retransmits",
        "offset",
        "ordered",
        "ppid",
        "ssn",
        "stream_id",
    )

    def __init__(
        self,
        stream_id: int,
        ppid: int,
        data: bytes,
        ordered: bool,
        max_retransmits: int | None,
        expires_at: float | None,
    ) -> None:
        self.stream_id = stream_id
        self.ppid = ppid
        self.data = data  # slicing bytes copies only the fragment; a whole message is shared
        self.ordered = ordered
        self.max_retransmits = max_retransmits
        self.expires_at = expires_at
        self.offset = 0
        self.ssn = 0
        self.first_tsn = -1  # unwrapped TSN of the first fragment, -1 until sent
        self.last_tsn = -1  # unwrapped TSN of the last fragment given so far
        self.abandoned = False

    @property
    def partially_reliable(self) -> bool:
        return self.max_retransmits is not None or self.expires_at is not None


class SendQueue:
    __slots__ = (
        "_on_low",
        "_queues",
        "_turns",
        "buffered",
        "capacity",
        "current",
        "default_threshold",
        "expired_messages",
        "stream_buffered",
        "thresholds",
    )

    def __init__(
        self, capacity: int, default_threshold: int, on_low: Callable[[int], None]
    ) -> None:
        self.capacity = capacity
        self.buffered = 0
        self.stream_buffered: dict[int, int] = {}
        self.thresholds: dict[int, int] = {}
        self.default_threshold = default_threshold
        self._on_low = on_low
        self._queues: dict[int, deque[OutMessage]] = {}
        self._turns: deque[int] = deque()  # streams with queued messages, in turn order
        self.current: OutMessage | None = None  # the message being fragmented
        self.expired_messages = 0  # dropped before any byte was sent (PR-SCTP lifetime)

    def fits(self, size: int) -> bool:
        return self.buffered + size <= self.capacity

    def add(self, message: OutMessage) -> None:
        sid = message.stream_id
        queue = self._queues.get(sid)
        if queue is None:
            queue = self._queues[sid] = deque()
        if not queue:
            self._turns.append(sid)
        queue.append(message)
        size = len(message.data)
        self.buffered += size
        self.stream_buffered[sid] = self.stream_buffered.get(sid, 0) + size

    def stream_idle(self, stream_id: int) -> bool:
        """True when the stream has no queued message and none being fragmented."""
        cur = self.current
        return not self._queues.get(stream_id) and (cur is None or cur.stream_id != stream_id)

    @property
    def empty(self) -> bool:
        return self.current is None and not self._turns

    def next_message(self, now: float) -> OutMessage | None:
        """The message to fragment next (the current one, else the next stream's turn).

        Messages whose lifetime ran out before any byte was sent are dropped here (counted in
        :attr:`expired_messages`)."""
        if self.current is not None:
            return self.current
        turns = self._turns
        while turns:
            sid = turns.popleft()
            queue = self._queues[sid]
            message = queue.popleft()
            if queue:
                turns.append(sid)
            else:
                del self._queues[sid]
            if message.expires_at is not None and now > message.expires_at:
                message.abandoned = True
                self.expired_messages += 1
                self.consumed(message, len(message.data))
                continue
            self.current = message
            return message
        return None

    def consumed(self, message: OutMessage, size: int) -> None:
        """``size`` bytes of ``message`` left the queue (sent as a fragment, or dropped)."""
        self.buffered -= size
        sid = message.stream_id
        before = self.stream_buffered[sid]
        after = before - size
        if after:
            self.stream_buffered[sid] = after
        else:
            del self.stream_buffered[sid]
        threshold = self.thresholds.get(sid, self.default_threshold)
        if before > threshold >= after:
            self._on_low(sid)

    def drop_current(self) -> None:
        """Abandon the rest of the message being fragmented (PR-SCTP)."""
        message = self.current
        if message is None:
            return
        self.current = None
        rest = len(message.data) - message.offset
        if rest:
            self.consumed(message, rest)

    def clear(self) -> None:
        self._queues.clear()
        self._turns.clear()
        self.current = None
        self.buffered = 0
        self.stream_buffered.clear()
