"""A node's Sphinx keys per epoch, each with its own replay cache.

Sphinx gives no forward secrecy by itself: a hop's secret is a static-ephemeral X25519 between
its Sphinx key and the header's alpha (Katzenpost spec ``sphinx.md`` §9.3: keys "MUST" be
rotated "relatively frequently"). So node keys live for one epoch and are destroyed afterwards,
taking their replay cache with them (Katzenpost ``specs/sphinx_replay_detection.rst``: one
replay cache per routing key; tags are inserted only into the cache of the key that worked).

Epoch ``e`` covers ``[e * epoch_length, (e + 1) * epoch_length)``. At time ``now`` in epoch
``e`` the ring holds:

- the key of epoch ``e`` (current) and ``e + 1`` (next, published ahead so peer records carry
  it before it is needed);
- the key of epoch ``e - 1`` until ``e * epoch_length + grace_period``, for headers built
  just before the boundary or by a client whose clock lags.

Senders name the epoch of the key they used (``epoch_hint``); there is no trial decryption.
Time is an argument (``now``, seconds); :meth:`SphinxKeyRing.get_timer` tells the driver when
keys next change. The ring also catches up on its own whenever it is given a later ``now``,
so a late timer never lets an expired key answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from zmesh.sansio.onion.replay import DEFAULT_MAX_ENTRIES, ReplayCache
from zmesh.sansio.onion.sphinx import (
    KEY_LENGTH,
    Geometry,
    UnwrappedHeader,
    _unwrap,
    replay_tag,
)
from zmesh.sansio.wire import (
    DEFAULT_RANDOM,
    LocalProtocolError,
    OversizedInput,
    RandomSource,
    RemoteProtocolError,
)

__all__ = [
    "DEFAULT_EPOCH_LENGTH",
    "DEFAULT_GRACE_PERIOD",
    "UnknownEpoch",
    "SphinxKeyRing",
]

DEFAULT_EPOCH_LENGTH: Final = 3 * 3600.0  # 3 h: the window a stolen key can decrypt
#: Long enough for a header in flight and modest clock skew; short next to the epoch.
DEFAULT_GRACE_PERIOD: Final = 15 * 60.0

_ALPHA: Final = slice(2, 2 + KEY_LENGTH)  # where alpha sits in any geometry's header


class UnknownEpoch(RemoteProtocolError):
    """The sender named an epoch for which this node holds no Sphinx key (expired or future)."""


@dataclass(eq=False)
class _EpochKey:
    epoch: int
    private_key: X25519PrivateKey
    public_key: bytes
    replay_cache: ReplayCache


class SphinxKeyRing:
    """Sphinx private keys of one node, by epoch, with per-key replay protection."""

    def __init__(
        self,
        geometry: Geometry,
        now: float,
        *,
        epoch_length: float = DEFAULT_EPOCH_LENGTH,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        replay_capacity: int = DEFAULT_MAX_ENTRIES,
        random: RandomSource = DEFAULT_RANDOM,
    ) -> None:
        if not epoch_length > 0:
            raise LocalProtocolError("epoch_length must be positive")
        if not 0 <= grace_period < epoch_length:
            raise LocalProtocolError("grace_period must be in [0, epoch_length)")
        if replay_capacity < 1:
            raise LocalProtocolError("replay_capacity must be at least 1")
        self._geometry = geometry
        self._epoch_length = float(epoch_length)
        self._grace_period = float(grace_period)
        self._replay_capacity = replay_capacity
        self._random = random
        self._keys: dict[int, _EpochKey] = {}
        self._now = -math.inf
        self.handle_timer(now)

    # -- time -------------------------------------------------------------------------------

    def epoch_at(self, now: float) -> int:
        return math.floor(now / self._epoch_length)

    def get_timer(self) -> float | None:
        """When the set of keys next changes: the grace deadline or the next epoch start."""
        epoch = self.epoch_at(self._now)
        deadline = (epoch + 1) * self._epoch_length
        if epoch - 1 in self._keys:
            deadline = min(deadline, epoch * self._epoch_length + self._grace_period)
        return deadline

    def handle_timer(self, now: float) -> None:
        """Create missing current/next keys and destroy keys (and caches) past their grace."""
        if now < self._now:
            return  # time never runs backwards for the ring; ignore a stale `now`
        self._now = now
        epoch = self.epoch_at(now)
        keep = {epoch, epoch + 1}
        if now < epoch * self._epoch_length + self._grace_period:
            keep.add(epoch - 1)
        for old in [e for e in self._keys if e not in keep]:
            # Drop our only references: the private key object and every tag go with them.
            self._keys.pop(old).replay_cache.clear()
        for wanted in (epoch, epoch + 1):
            if wanted not in self._keys:
                self._keys[wanted] = self._new_key(wanted)

    def _new_key(self, epoch: int) -> _EpochKey:
        secret = self._random(KEY_LENGTH)
        if len(secret) != KEY_LENGTH:
            raise LocalProtocolError("random source returned a short key")
        private_key = X25519PrivateKey.from_private_bytes(secret)
        return _EpochKey(
            epoch=epoch,
            private_key=private_key,
            public_key=private_key.public_key().public_bytes_raw(),
            replay_cache=ReplayCache(self._replay_capacity),
        )

    # -- queries ----------------------------------------------------------------------------

    @property
    def epochs(self) -> tuple[int, ...]:
        """Epochs whose keys are held right now (including one in its grace period)."""
        return tuple(sorted(self._keys))

    def public_keys(self, now: float) -> dict[int, bytes]:
        """Current and next epoch's public keys, for this node's peer record."""
        self.handle_timer(now)
        epoch = self.epoch_at(self._now)
        return {e: self._keys[e].public_key for e in (epoch, epoch + 1)}

    def replay_cache(self, epoch: int) -> ReplayCache | None:
        key = self._keys.get(epoch)
        return key.replay_cache if key is not None else None

    # -- input ------------------------------------------------------------------------------

    def unwrap(self, header: bytes | memoryview, epoch_hint: int, now: float) -> UnwrappedHeader:
        """Unwrap ``header`` with the key of ``epoch_hint`` and record its replay tag.

        Raises :class:`UnknownEpoch` if no such key is held at ``now``, :class:`ReplayedInput`
        for a header already accepted under that key, :class:`OversizedInput` when that key's
        replay cache is full, and whatever :func:`unwrap_header` raises. The tag is recorded
        only after the MAC verified and the commands parsed.
        """
        self.handle_timer(now)
        key = self._keys.get(epoch_hint)
        if key is None:
            raise UnknownEpoch(f"no Sphinx key for epoch {epoch_hint}")
        cache = key.replay_cache
        if cache.full:
            raise OversizedInput(f"replay cache of epoch {epoch_hint} is full")
        tag: bytes | None = None
        if len(header) == self._geometry.header_length:
            # Cheap early reject: the tag depends on alpha only, so replays skip the X25519s.
            tag = replay_tag(header[_ALPHA])
            cache.check(tag)
        result = _unwrap(self._geometry, key.private_key, header, tag)
        cache.add(result.replay_tag)
        return result
