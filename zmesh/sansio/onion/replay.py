"""Bounded replay cache for Sphinx replay tags (Danezis & Goldberg 2009 §3.3 "replay").

A Sphinx header is valid for as long as the node key it was built for, so a node must remember
every replay tag it accepted under a key until that key is destroyed (Katzenpost
``specs/sphinx_replay_detection.rst``: one cache per routing key, dropped with it). Forgetting
an entry early would let an attacker replay a setup; so when the cache is full it refuses new
setups (:class:`OversizedInput`) instead of evicting. The bound is what keeps memory finite; the
key epoch (see :mod:`zmesh.sansio.onion.keyring`) is what empties the cache.
"""

from __future__ import annotations

from typing import Final

from zmesh.sansio.wire import LocalProtocolError, OversizedInput, ReplayedInput

__all__ = ["DEFAULT_MAX_ENTRIES", "ReplayCache"]

#: 12 setups a second for a 3-hour epoch; a CPython set of 32-byte tags costs about 100 bytes
#: an entry, so ~13 MB per key at the bound (measured figure in docs/wire/sphinx.md).
DEFAULT_MAX_ENTRIES: Final = 131_072


class ReplayCache:
    """The set of replay tags accepted under one Sphinx key, never larger than ``max_entries``."""

    __slots__ = ("_max_entries", "_tags")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise LocalProtocolError("a replay cache needs room for at least one tag")
        self._max_entries = max_entries
        self._tags: set[bytes] = set()

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def full(self) -> bool:
        return len(self._tags) >= self._max_entries

    def __len__(self) -> int:
        return len(self._tags)

    def __contains__(self, tag: object) -> bool:
        return tag in self._tags

    def check(self, tag: bytes) -> None:
        """Raise :class:`ReplayedInput` if ``tag`` was seen, without recording it."""
        if tag in self._tags:
            raise ReplayedInput("Sphinx replay tag already seen under this key")

    def add(self, tag: bytes) -> None:
        """Record ``tag``; raise :class:`ReplayedInput` if seen, :class:`OversizedInput` if full.

        Call only after the header MAC verified, or an attacker could fill the cache with
        tags of forged headers.
        """
        if tag in self._tags:
            raise ReplayedInput("Sphinx replay tag already seen under this key")
        if len(self._tags) >= self._max_entries:
            raise OversizedInput(f"replay cache full ({self._max_entries} tags)")
        self._tags.add(bytes(tag))

    def clear(self) -> None:
        self._tags.clear()
