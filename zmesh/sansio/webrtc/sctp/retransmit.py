"""Outstanding DATA: SACK processing, retransmission marking and PR-SCTP abandonment
(RFC 9260 §6.2.1, §6.3.3, §7.2.4; RFC 3758 §3.5).

:class:`RetransmissionQueue` holds every DATA chunk that has a TSN and is not yet cumulatively
acknowledged, in TSN order, so a TSN indexes it directly (``tsn - sent[0].tsn``). It owns the
flight size and the bookkeeping that goes with each chunk (gap-acked, marked for
retransmission, abandoned, miss indications). Congestion control, the RTO and the timers stay
in the association: :meth:`RetransmissionQueue.on_sack` reports what a SACK acknowledged and
whether it revealed a loss, and the association decides what that does to cwnd and T3.

Work per SACK is proportional to what changed, not to the window: gap blocks already seen are
skipped (``_acked_ranges``), miss indications walk only the holes, and the search for chunks
to retransmit resumes from a hint.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

from . import chunks as ch
from .packet import PacketBuilder
from .send_queue import OutMessage
from .tsn import TSN_MASK

__all__ = ["RetransmissionQueue", "SentChunk"]

_FAST_RETRANSMIT_MISSES: Final = 3  # RFC 9260 §7.2.4


class SentChunk:
    """A DATA chunk that has a TSN (unwrapped) and is not yet cumulatively acknowledged."""

    __slots__ = (
        "abandoned",
        "acked",
        "fast_retransmitted",
        "flags",
        "in_flight",
        "message",
        "misses",
        "payload",
        "retransmit",
        "sent_at",
        "ssn",
        "stream_id",
        "transmits",
        "tsn",
    )

    def __init__(
        self, tsn: int, flags: int, message: OutMessage, payload: bytes, now: float
    ) -> None:
        self.tsn = tsn
        self.flags = flags
        self.stream_id = message.stream_id
        self.ssn = message.ssn
        self.message = message
        self.payload = payload
        self.sent_at = now
        self.transmits = 1
        self.acked = False  # gap-acked
        self.abandoned = False
        self.in_flight = True
        self.retransmit = False  # marked, waiting to go out again
        self.fast_retransmitted = False
        self.misses = 0


class RetransmissionQueue:
    __slots__ = (
        "_acked_ranges",
        "_hint",
        "_on_abandon",
        "abandoned_messages",
        "adv_peer_ack",
        "cum_acked",
        "fast_retransmissions",
        "flight",
        "partial_reliability",
        "retransmissions",
        "retransmit_count",
        "sent",
    )

    def __init__(self, initial_tsn: int, on_abandon: Callable[[OutMessage], None]) -> None:
        self.sent: deque[SentChunk] = deque()
        self.flight = 0  # bytes of chunks in flight
        self.cum_acked = initial_tsn - 1  # the peer's cumulative TSN ack, unwrapped
        self.adv_peer_ack = initial_tsn - 1  # RFC 3758 Advanced.Peer.Ack.Point
        self.retransmit_count = 0  # chunks marked for retransmission
        self.partial_reliability = False  # the peer supports PR-SCTP
        self.retransmissions = 0
        self.fast_retransmissions = 0
        self.abandoned_messages = 0
        self._hint = initial_tsn  # no TSN below this is marked for retransmission
        self._acked_ranges: list[tuple[int, int]] = []  # gap blocks of the previous SACK
        self._on_abandon = on_abandon

    def push(self, chunk: SentChunk) -> None:
        """A new DATA chunk went out."""
        self.sent.append(chunk)
        self.flight += len(chunk.payload)

    # ------------------------------------------------------------------ SACK

    def on_sack(
        self, cum: int, gaps: tuple[tuple[int, int], ...], now: float
    ) -> tuple[int, float | None, bool]:
        """Apply a SACK whose cumulative TSN ``cum`` (unwrapped) is not older than ours.

        Returns (bytes newly acknowledged, an RTT sample or None, whether a chunk reached three
        miss indications and was marked for fast retransmission)."""
        sent = self.sent
        acked_bytes = 0
        rtt: float | None = None
        while sent and sent[0].tsn <= cum:
            c = sent.popleft()
            size = len(c.payload)
            if c.in_flight:
                self.flight -= size
            if not c.acked and not c.abandoned:
                acked_bytes += size
                if c.transmits == 1:  # Karn: no samples from retransmitted chunks
                    rtt = now - c.sent_at
            if c.retransmit:
                self.retransmit_count -= 1
        self.cum_acked = cum
        if self.adv_peer_ack < cum:
            self.adv_peer_ack = cum
        lost = False
        new_ranges = [(cum + s, cum + e) for s, e in gaps]
        if new_ranges and sent:
            base = sent[0].tsn
            last = base + len(sent) - 1
            highest_new = cum
            prev = self._acked_ranges
            j = 0
            for s, e in new_ranges:
                t = max(s, base)
                e = min(e, last)
                while t <= e:
                    # Skip what the previous SACK already reported.
                    while j < len(prev) and prev[j][1] < t:
                        j += 1
                    if j < len(prev) and prev[j][0] <= t:
                        t = prev[j][1] + 1
                        continue
                    stop = min(e, prev[j][0] - 1) if j < len(prev) else e
                    for u in range(t, stop + 1):
                        c = sent[u - base]
                        if c.acked:
                            continue
                        c.acked = True
                        size = len(c.payload)
                        if c.in_flight:
                            c.in_flight = False
                            self.flight -= size
                        if c.retransmit:
                            c.retransmit = False
                            self.retransmit_count -= 1
                        if not c.abandoned:
                            acked_bytes += size
                            if c.transmits == 1:
                                rtt = now - c.sent_at
                        highest_new = u
                    t = stop + 1
            if highest_new > cum:
                lost = self._count_misses(new_ranges, highest_new, base, last, now)
            self._acked_ranges = [(s, min(e, last)) for s, e in new_ranges if s <= last]
        else:
            self._acked_ranges = []
        return acked_bytes, rtt, lost

    def _count_misses(
        self, ranges: list[tuple[int, int]], highest_new: int, base: int, last: int, now: float
    ) -> bool:
        """Miss indications for the holes below the highest newly acked TSN (RFC 9260 §7.2.4
        with the HTNA rule); True if a chunk was marked for fast retransmission."""
        sent = self.sent
        lost = False
        hole = self.cum_acked + 1
        for s, e in ranges:
            if s > highest_new:
                break
            for u in range(max(hole, base), min(s, last + 1)):
                c = sent[u - base]
                if c.acked or c.abandoned or c.retransmit or not c.in_flight:
                    continue
                c.misses += 1
                if c.misses >= _FAST_RETRANSMIT_MISSES and not c.fast_retransmitted:
                    c.fast_retransmitted = True  # a TSN is fast-retransmitted once only
                    self.fast_retransmissions += 1
                    self.mark(c, now)
                    lost = True
            hole = e + 1
        return lost

    # ------------------------------------------------------------------ retransmission

    def mark(self, c: SentChunk, now: float) -> None:
        """Mark one chunk for retransmission, or abandon its message if PR-SCTP says so."""
        message = c.message
        if (
            self.partial_reliability
            and message.partially_reliable
            and (
                (message.max_retransmits is not None and c.transmits > message.max_retransmits)
                or (message.expires_at is not None and now > message.expires_at)
            )
        ):
            self.abandon(message)
            return
        if c.in_flight:
            c.in_flight = False
            self.flight -= len(c.payload)
        if not c.retransmit:
            c.retransmit = True
            self.retransmit_count += 1
            if c.tsn < self._hint:
                self._hint = c.tsn

    def mark_all(self, now: float) -> None:
        """T3-rtx expired: everything not yet acknowledged goes again (RFC 9260 §6.3.3 E3)."""
        for c in list(self.sent):
            if not c.acked and not c.abandoned:
                self.mark(c, now)

    def take_retransmissions(
        self, b: PacketBuilder, now: float, cwnd: int, ignore_cwnd: bool
    ) -> int:
        """Put marked chunks, lowest TSN first, into the packet; returns the bytes added."""
        sent = self.sent
        added = 0
        # Resume at the lowest TSN that may be marked, so that recovering a large window
        # after a T3 timeout is linear, not quadratic.
        start = max(0, self._hint - sent[0].tsn) if sent else 0
        for index in range(start, len(sent)):
            c = sent[index]
            if not c.retransmit:
                self._hint = c.tsn + 1
                continue
            size = len(c.payload)
            if 16 + size > b.room:
                break
            if not ignore_cwnd and self.flight + size > cwnd:
                break
            b.append_data(c.flags, c.tsn & TSN_MASK, c.stream_id, c.ssn, c.message.ppid, c.payload)
            c.retransmit = False
            self._hint = c.tsn + 1
            c.in_flight = True
            c.transmits += 1
            c.sent_at = now
            self.retransmit_count -= 1
            self.flight += size
            self.retransmissions += 1
            added += size
            if not self.retransmit_count:
                break
        return added

    # ------------------------------------------------------------------ PR-SCTP

    def abandon(self, message: OutMessage) -> None:
        """Give up on every fragment of ``message`` (RFC 3758 §3.5 A3)."""
        if message.abandoned:
            return
        message.abandoned = True
        self.abandoned_messages += 1
        self._on_abandon(message)  # the send queue drops its unsent fragments
        sent = self.sent
        if sent and message.first_tsn >= 0:
            base = sent[0].tsn
            for u in range(max(message.first_tsn, base), message.last_tsn + 1):
                c = sent[u - base]
                c.abandoned = True
                if c.in_flight:
                    c.in_flight = False
                    self.flight -= len(c.payload)
                if c.retransmit:
                    c.retransmit = False
                    self.retransmit_count -= 1
        self.advance_peer_ack()

    def advance_peer_ack(self) -> bool:
        """Move the advanced peer ack point over abandoned chunks only (RFC 3758 §3.5 C);
        True when a FORWARD TSN is due. Moving it over gap-acked chunks as well would be
        tempting, but a FORWARD TSN inside a live message makes the receiver drop it."""
        adv = self.cum_acked
        for c in self.sent:
            if not c.abandoned:
                break
            adv = c.tsn
        if adv > self.adv_peer_ack:
            self.adv_peer_ack = adv
        return self.adv_peer_ack > self.cum_acked

    def forward_tsn_chunk(self) -> bytes | None:
        """FORWARD TSN up to the advanced peer ack point, with the highest abandoned SSN of
        each ordered stream (RFC 3758 §3.2)."""
        if self.adv_peer_ack <= self.cum_acked:
            return None
        streams: dict[int, int] = {}
        for c in self.sent:
            if c.tsn > self.adv_peer_ack:
                break
            if c.abandoned and not c.flags & ch.DATA_FLAG_UNORDERED:
                streams[c.stream_id] = c.ssn
        return ch.ForwardTsnChunk(
            self.adv_peer_ack & TSN_MASK, tuple(sorted(streams.items()))
        ).encode()

    def clear(self) -> None:
        self.sent.clear()
        self.flight = 0
        self.retransmit_count = 0
        self._acked_ranges = []
