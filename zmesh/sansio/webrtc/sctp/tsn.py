"""TSN and SSN serial-number arithmetic and the received-TSN tracker (RFC 9260 §1.6, §6.2).

TSNs are 32-bit and SSNs 16-bit serial numbers (RFC 1982 arithmetic). Rather than comparing
wrapped numbers everywhere, the association *unwraps* each TSN into an unbounded Python int next
to a reference point it trusts (its cumulative TSN, or the peer's). Unwrapped TSNs compare with
plain ``<`` and index dicts without ambiguity, and wrap-around is handled in exactly one place:
:func:`unwrap`.

:class:`ReceivedTsns` tracks what we received: the cumulative TSN plus sorted, disjoint ranges
above it, from which the SACK gap-ack blocks are read directly (no sort per SACK).
"""

from __future__ import annotations

import bisect
from typing import Final

__all__ = [
    "TSN_MASK",
    "ReceivedTsns",
    "serial16_lt",
    "serial32_lt",
    "unwrap",
]

TSN_MASK: Final = 0xFFFFFFFF
_HALF32: Final = 0x80000000


def serial32_lt(a: int, b: int) -> bool:
    """RFC 1982 ``a < b`` for 32-bit serial numbers."""
    return a != b and ((b - a) & TSN_MASK) < _HALF32


def serial16_lt(a: int, b: int) -> bool:
    """RFC 1982 ``a < b`` for 16-bit serial numbers (SSNs)."""
    return a != b and ((b - a) & 0xFFFF) < 0x8000


def unwrap(wire: int, reference: int) -> int:
    """The unbounded TSN closest to ``reference`` (unwrapped) whose low 32 bits are ``wire``."""
    delta = (wire - reference) & TSN_MASK
    if delta >= _HALF32:
        delta -= 1 << 32
    return reference + delta


class ReceivedTsns:
    """Received TSNs as a cumulative point and sorted disjoint ranges above it.

    ``max_ranges`` bounds the number of holes a peer can make us remember; a TSN that would
    need another range beyond it is refused (the caller drops the chunk, the peer resends).
    """

    __slots__ = ("_ends", "_starts", "cumulative", "max_ranges")

    def __init__(self, cumulative: int, max_ranges: int = 4096) -> None:
        self.cumulative = cumulative  # unwrapped: every TSN <= this was received
        self._starts: list[int] = []  # range starts, ascending, each > cumulative + 1
        self._ends: list[int] = []  # inclusive range ends
        self.max_ranges = max_ranges

    @property
    def has_gaps(self) -> bool:
        return bool(self._starts)

    @property
    def highest(self) -> int:
        """The highest TSN received."""
        return self._ends[-1] if self._ends else self.cumulative

    def contains(self, tsn: int) -> bool:
        if tsn <= self.cumulative:
            return True
        i = bisect.bisect_right(self._starts, tsn) - 1
        return i >= 0 and tsn <= self._ends[i]

    def can_add(self, tsn: int) -> bool:
        """False if remembering ``tsn`` would exceed ``max_ranges``."""
        if tsn == self.cumulative + 1 or len(self._starts) < self.max_ranges:
            return True
        i = bisect.bisect_right(self._starts, tsn) - 1
        if i >= 0 and tsn <= self._ends[i] + 1:
            return True
        return i + 1 < len(self._starts) and self._starts[i + 1] == tsn + 1

    def add(self, tsn: int) -> bool:
        """Record ``tsn``; returns False if it was already received (a duplicate)."""
        cum = self.cumulative
        if tsn <= cum:
            return False
        starts = self._starts
        if tsn == cum + 1:
            if starts and starts[0] == tsn + 1:
                self.cumulative = self._ends[0]
                del starts[0]
                del self._ends[0]
            else:
                self.cumulative = tsn
            return True
        ends = self._ends
        # Common cases first: extend or append after the last range.
        if ends and tsn == ends[-1] + 1:
            ends[-1] = tsn
            return True
        if not ends or tsn > ends[-1] + 1:
            starts.append(tsn)
            ends.append(tsn)
            return True
        i = bisect.bisect_right(starts, tsn) - 1
        if i >= 0 and tsn <= ends[i]:
            return False
        joins_left = i >= 0 and ends[i] + 1 == tsn
        joins_right = i + 1 < len(starts) and starts[i + 1] == tsn + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1]
            del ends[i + 1]
        elif joins_left:
            ends[i] = tsn
        elif joins_right:
            starts[i + 1] = tsn
        else:
            starts.insert(i + 1, tsn)
            ends.insert(i + 1, tsn)
        return True

    def advance_to(self, tsn: int) -> None:
        """Move the cumulative point forward (FORWARD TSN): everything <= ``tsn`` is done."""
        if tsn <= self.cumulative:
            return
        self.cumulative = tsn
        starts, ends = self._starts, self._ends
        while starts and starts[0] <= tsn + 1:
            if ends[0] > self.cumulative:
                self.cumulative = ends[0]
            del starts[0]
            del ends[0]

    def gap_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` (start, end) offsets from the cumulative TSN, as a SACK carries."""
        cum = self.cumulative
        starts, ends = self._starts[:limit], self._ends[:limit]
        return [(s - cum, e - cum) for s, e in zip(starts, ends, strict=True)]
