"""Inbound streams: reassembly of fragmented messages and in-order delivery (RFC 9260 §6.5,
§6.6, §6.9; RFC 3758 §3.6 for FORWARD TSN; RFC 6525 §5.2.2 for stream reset).

Fragments of one message carry consecutive TSNs (RFC 9260 §6.9; we do not do I-DATA
interleaving), so a message is found by walking TSNs from a fragment back to its B bit and
forward to its E bit. The walk only starts when a fragment could complete a message (it has the
E bit, or the next TSN is already here), so in-order arrival costs one dict insert per fragment
and one join per message.

Single-fragment messages that are deliverable right away (the common case) are never stored.
:attr:`InboundStreams.buffered` counts every byte held here; the association adds it to the
bytes of delivered-but-undrained events to compute the window it advertises.

Hostile peers: the window counts payload bytes, but each stored item costs ~200 bytes of
Python objects, so :attr:`InboundStreams.fragments_held` counts stored items too (the
association caps it). A walk never goes further than :attr:`InboundStreams.max_fragments`
(the most fragments a ``max_message_size`` message can have when no fragment but the last is
smaller than ``MIN_FRAGMENT_PAYLOAD``); a longer run can be no valid message and is dropped,
which keeps a chain that never ends from being walked again and again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Final

from zmesh.sansio.wire import MalformedInput

from .chunks import DATA_FLAG_BEGIN, DATA_FLAG_END, DATA_FLAG_UNORDERED
from .events import DataReceived
from .tsn import serial16_lt

__all__ = ["InboundStreams"]

_BE: Final = DATA_FLAG_BEGIN | DATA_FLAG_END
#: Smallest payload of a non-final fragment we expect: our own is at least 228 bytes
#: (``max_packet_size`` >= 256), Chrome's and usrsctp's about 1,100.
MIN_FRAGMENT_PAYLOAD: Final = 128


class _Inbound:
    __slots__ = ("fragments", "next_ssn", "ready")

    def __init__(self) -> None:
        self.next_ssn = 0
        # unwrapped TSN -> (flags, ssn, ppid, payload)
        self.fragments: dict[int, tuple[int, int, int, bytes]] = {}
        # complete ordered messages waiting for their turn: ssn -> (ppid, data)
        self.ready: dict[int, tuple[int, bytes]] = {}


class InboundStreams:
    __slots__ = ("_deliver", "_order", "_streams", "buffered", "fragments_held", "max_fragments",
                 "max_message_size")

    def __init__(self, deliver: Callable[[DataReceived], None], max_message_size: int) -> None:
        self._deliver = deliver
        self._streams: dict[int, _Inbound] = {}
        self.buffered = 0
        #: Fragments and out-of-order messages stored (each costs memory beyond its bytes).
        self.fragments_held = 0
        self.max_fragments = max_message_size // MIN_FRAGMENT_PAYLOAD + 1
        self.max_message_size = max_message_size
        # (tsn, stream id) of stored fragments, lowest first, for FORWARD TSN: without it each
        # FORWARD TSN chunk (8 bytes) scanned every stored fragment of every stream. Entries
        # of fragments that left otherwise go stale and are skipped, or dropped by a rebuild.
        self._order: list[tuple[int, int]] = []

    def add(
        self, tsn: int, flags: int, stream_id: int, ssn: int, ppid: int, payload: bytes
    ) -> None:
        """Take one new (not duplicate) DATA chunk; ``tsn`` is unwrapped.

        Raises :class:`MalformedInput` if the chunk completes a message that breaks the
        fragment rules (mixed ordering or SSNs, or larger than ``max_message_size``); the
        fragments involved are discarded.
        """
        st = self._streams.get(stream_id)
        if st is None:
            st = self._streams[stream_id] = _Inbound()
        if flags & _BE == _BE:
            self._complete(st, stream_id, flags, ssn, ppid, payload)
            return
        frags = st.fragments
        frags[tsn] = (flags, ssn, ppid, payload)
        self.buffered += len(payload)
        self.fragments_held += 1
        order = self._order
        heapq.heappush(order, (tsn, stream_id))
        if len(order) > 2 * self.fragments_held + 4096:
            self._order = [(t, sid) for sid, s in self._streams.items() for t in s.fragments]
            heapq.heapify(self._order)
        if not flags & DATA_FLAG_END and tsn + 1 not in frags:
            return
        # Walk both ways at once, one step each, and stop at the first gap: joining two
        # unfinished runs then costs the shorter one, so no arrival order makes this
        # quadratic (the smaller-half argument), and no walk passes ``max_fragments``.
        limit = self.max_fragments
        first = last = tsn
        need_begin = not flags & DATA_FLAG_BEGIN
        need_end = not flags & DATA_FLAG_END
        while need_begin or need_end:
            if need_begin:
                found = frags.get(first - 1)
                if found is None:
                    return
                first -= 1
                need_begin = not found[0] & DATA_FLAG_BEGIN
            if need_end:
                found = frags.get(last + 1)
                if found is None:
                    return
                last += 1
                need_end = not found[0] & DATA_FLAG_END
            if last - first >= limit:
                # Whatever message these belong to has too many fragments to be valid.
                self._discard(frags, first, last)
                raise MalformedInput(f"a message of more than {limit} fragments")
        parts = [frags.pop(t) for t in range(first, last + 1)]
        size = sum(len(p[3]) for p in parts)
        self.buffered -= size
        self.fragments_held -= len(parts)
        head = parts[0]
        unordered = head[0] & DATA_FLAG_UNORDERED
        for part in parts:
            if (part[0] & DATA_FLAG_UNORDERED) != unordered or (
                not unordered and part[1] != head[1]
            ):
                raise MalformedInput("fragments of one message disagree on ordering or SSN")
        if size > self.max_message_size:
            raise MalformedInput(f"reassembled message of {size} bytes is too large")
        data = b"".join(p[3] for p in parts)
        self._complete(st, stream_id, head[0] | _BE, head[1], head[2], data)

    def _discard(self, frags: dict[int, tuple[int, int, int, bytes]], first: int,
                 last: int) -> None:
        for t in range(first, last + 1):
            self.buffered -= len(frags.pop(t)[3])
        self.fragments_held -= last - first + 1

    def _complete(
        self, st: _Inbound, stream_id: int, flags: int, ssn: int, ppid: int, data: bytes
    ) -> None:
        if flags & DATA_FLAG_UNORDERED:
            self._deliver(DataReceived(stream_id, ppid, data, False))
            return
        if ssn == st.next_ssn:
            self._deliver(DataReceived(stream_id, ppid, data, True))
            st.next_ssn = (ssn + 1) & 0xFFFF
            if st.ready:
                self._drain(st, stream_id)
        elif serial16_lt(ssn, st.next_ssn):
            return  # an SSN already skipped by FORWARD TSN: too late to deliver
        else:
            if ssn in st.ready:
                raise MalformedInput(f"stream {stream_id} repeats SSN {ssn}")
            st.ready[ssn] = (ppid, data)
            self.buffered += len(data)
            self.fragments_held += 1

    def _drain(self, st: _Inbound, stream_id: int) -> None:
        ready = st.ready
        while True:
            item = ready.pop(st.next_ssn, None)
            if item is None:
                return
            self.buffered -= len(item[1])
            self.fragments_held -= 1
            self._deliver(DataReceived(stream_id, item[0], item[1], True))
            st.next_ssn = (st.next_ssn + 1) & 0xFFFF

    def forward(self, new_cumulative: int, skipped: tuple[tuple[int, int], ...]) -> None:
        """Apply a FORWARD TSN: drop partial messages at or below ``new_cumulative`` (unwrapped)
        and move ordered streams past the skipped SSNs (RFC 3758 §3.6)."""
        order = self._order
        while order and order[0][0] <= new_cumulative:
            t, sid = heapq.heappop(order)
            held = self._streams.get(sid)
            if held is not None and (fragment := held.fragments.pop(t, None)) is not None:
                self.buffered -= len(fragment[3])
                self.fragments_held -= 1
        for stream_id, ssn in skipped:
            found = self._streams.get(stream_id)
            if found is None:
                found = self._streams[stream_id] = _Inbound()
            st = found
            if serial16_lt(ssn, st.next_ssn):
                continue
            # Complete messages up to the skipped SSN were really received: deliver them in
            # order, then step over the abandoned one(s).
            base = st.next_ssn
            for waiting in sorted(
                (s for s in st.ready if not serial16_lt(ssn, s)),
                key=lambda s, base=base: (s - base) & 0xFFFF,  # type: ignore[misc]
            ):
                ppid, data = st.ready.pop(waiting)
                self.buffered -= len(data)
                self.fragments_held -= 1
                self._deliver(DataReceived(stream_id, ppid, data, True))
            st.next_ssn = (ssn + 1) & 0xFFFF
            self._drain(st, stream_id)

    def stream_ids(self) -> tuple[int, ...]:
        """The streams holding inbound state (an SSN other than 0 or stored data)."""
        return tuple(self._streams)

    def reset(self, stream_ids: tuple[int, ...]) -> None:
        """The peer reset these outgoing streams: SSNs start again at 0 (RFC 6525 §5.2.2)."""
        for stream_id in stream_ids:
            st = self._streams.pop(stream_id, None)
            if st is None:
                continue
            self.buffered -= sum(len(f[3]) for f in st.fragments.values())
            self.buffered -= sum(len(r[1]) for r in st.ready.values())
            self.fragments_held -= len(st.fragments) + len(st.ready)
