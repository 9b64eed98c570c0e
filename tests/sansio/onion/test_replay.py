"""Replay cache and per-epoch Sphinx key ring."""

from __future__ import annotations

import hashlib
import random as stdlib_random

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.onion.commands import CellAead, CircuitSetup
from zmesh.sansio.onion.keyring import SphinxKeyRing, UnknownEpoch
from zmesh.sansio.onion.replay import ReplayCache
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY, PathHop, create_header
from zmesh.sansio.wire import (
    AuthenticationFailed,
    LocalProtocolError,
    OversizedInput,
    RandomSource,
    ReplayedInput,
)

L = 3600.0  # a short epoch keeps the numbers readable
GRACE = 300.0
NODE_ID = hashlib.sha256(b"relay").digest()


def det_random(seed: int) -> RandomSource:
    return stdlib_random.Random(seed).randbytes


def make_ring(now: float = 10.0, capacity: int = 1000, seed: int = 0) -> SphinxKeyRing:
    return SphinxKeyRing(
        ZMESH_GEOMETRY,
        now,
        epoch_length=L,
        grace_period=GRACE,
        replay_capacity=capacity,
        random=det_random(seed),
    )


def header_for(ring: SphinxKeyRing, epoch: int, now: float, seed: int) -> bytes:
    return header_with_key(ring.public_keys(now)[epoch], seed)


def header_with_key(public: bytes, seed: int) -> bytes:
    setup = CircuitSetup(bytes(32), True, CellAead.CHACHA20_POLY1305, b"\x00\x01\x02\x03")
    path = [PathHop(NODE_ID, public, (setup,))]
    return create_header(ZMESH_GEOMETRY, path, det_random(seed)).header


# -- ReplayCache -------------------------------------------------------------------------------


def test_replay_cache_rejects_seen_tags() -> None:
    cache = ReplayCache(max_entries=3)
    cache.add(b"a" * 32)
    assert b"a" * 32 in cache
    with pytest.raises(ReplayedInput):
        cache.check(b"a" * 32)
    with pytest.raises(ReplayedInput):
        cache.add(b"a" * 32)
    cache.check(b"b" * 32)  # unseen: no error, and nothing recorded
    assert len(cache) == 1


def test_replay_cache_full_refuses_instead_of_forgetting() -> None:
    cache = ReplayCache(max_entries=2)
    cache.add(b"1")
    cache.add(b"2")
    assert cache.full
    with pytest.raises(OversizedInput):
        cache.add(b"3")
    # The old entries are still there: a replay is still a replay.
    with pytest.raises(ReplayedInput):
        cache.add(b"1")
    assert len(cache) == 2
    cache.clear()
    cache.add(b"3")


def test_replay_cache_bound_is_validated() -> None:
    with pytest.raises(LocalProtocolError):
        ReplayCache(0)


# -- SphinxKeyRing -----------------------------------------------------------------------------


def test_public_keys_current_and_next() -> None:
    ring = make_ring(now=10.0)
    keys = ring.public_keys(10.0)
    assert set(keys) == {0, 1}
    assert keys[0] != keys[1]
    assert ring.epochs == (0, 1)
    assert ring.get_timer() == L
    # Keys come from the injected random source, in order of creation.
    first = det_random(0)(32)
    assert keys[0] == X25519PrivateKey.from_private_bytes(first).public_key().public_bytes_raw()
    assert make_ring(now=10.0).public_keys(10.0) == keys


def test_rotation_keeps_previous_key_for_grace_period() -> None:
    ring = make_ring(now=10.0)
    before = ring.public_keys(10.0)
    ring.handle_timer(L)
    assert ring.epochs == (0, 1, 2)
    after = ring.public_keys(L)
    assert after[1] == before[1]  # the published "next" key became current
    assert set(after) == {1, 2}
    assert ring.get_timer() == L + GRACE
    ring.handle_timer(L + GRACE)
    assert ring.epochs == (1, 2)
    assert ring.get_timer() == 2 * L


def test_unwrap_and_replay() -> None:
    ring = make_ring()
    header = header_for(ring, 0, 10.0, seed=1)
    result = ring.unwrap(header, 0, 11.0)
    assert result.next_hop is None
    assert result.commands[0] == CircuitSetup(
        bytes(32), True, CellAead.CHACHA20_POLY1305, b"\x00\x01\x02\x03"
    )
    with pytest.raises(ReplayedInput):
        ring.unwrap(header, 0, 12.0)
    # The next epoch's key is usable ahead of time and has its own cache.
    ring.unwrap(header_for(ring, 1, 10.0, seed=2), 1, 13.0)


def test_wrong_epoch_hint() -> None:
    ring = make_ring()
    header = header_for(ring, 0, 10.0, seed=3)
    with pytest.raises(AuthenticationFailed):
        ring.unwrap(header, 1, 11.0)
    with pytest.raises(UnknownEpoch):
        ring.unwrap(header, 5, 11.0)
    with pytest.raises(UnknownEpoch):
        ring.unwrap(header, -1, 11.0)
    ring.unwrap(header, 0, 11.0)  # a failed attempt under another key recorded nothing


def test_tag_recorded_only_after_mac_verifies() -> None:
    ring = make_ring()
    header = header_for(ring, 0, 10.0, seed=4)
    forged = bytearray(header)
    forged[-1] ^= 1  # same alpha, so same replay tag, but a bad MAC
    with pytest.raises(AuthenticationFailed):
        ring.unwrap(bytes(forged), 0, 11.0)
    cache = ring.replay_cache(0)
    assert cache is not None and len(cache) == 0
    ring.unwrap(header, 0, 11.0)
    assert len(cache) == 1


def test_epoch_rotation_drops_key_and_cache() -> None:
    ring = make_ring()
    header = header_for(ring, 0, 10.0, seed=5)
    ring.unwrap(header, 0, 11.0)
    cache = ring.replay_cache(0)
    assert cache is not None and len(cache) == 1
    # Still accepted as a replay during the grace period after the epoch ends.
    with pytest.raises(ReplayedInput):
        ring.unwrap(header, 0, L + GRACE - 1)
    # After the grace period the key and its cache are gone, even without a timer call.
    with pytest.raises(UnknownEpoch):
        ring.unwrap(header, 0, L + GRACE)
    assert ring.replay_cache(0) is None
    assert len(cache) == 0


def test_full_cache_rejects_new_setups() -> None:
    ring = make_ring(capacity=2)
    ring.unwrap(header_for(ring, 0, 10.0, seed=6), 0, 11.0)
    ring.unwrap(header_for(ring, 0, 10.0, seed=7), 0, 11.0)
    with pytest.raises(OversizedInput):
        ring.unwrap(header_for(ring, 0, 10.0, seed=8), 0, 11.0)
    # The next epoch's key has an empty cache of its own.
    ring.unwrap(header_for(ring, 1, 10.0, seed=8), 1, 11.0)


def test_time_going_backwards_is_ignored() -> None:
    ring = make_ring(now=L + GRACE + 1)
    assert ring.epochs == (1, 2)
    ring.handle_timer(5.0)
    assert ring.epochs == (1, 2)


def test_bad_configuration() -> None:
    with pytest.raises(LocalProtocolError):
        SphinxKeyRing(ZMESH_GEOMETRY, 0.0, epoch_length=0)
    with pytest.raises(LocalProtocolError):
        SphinxKeyRing(ZMESH_GEOMETRY, 0.0, epoch_length=10, grace_period=10)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 2 * L), st.integers(-1, 2), st.booleans()), max_size=12))
def test_key_ring_invariants(steps: list[tuple[float, int, bool]]) -> None:
    """Random time steps and setups: the window rules hold and keys never change in place."""
    now = 10.0
    ring = make_ring(now=now)
    published: dict[int, bytes] = dict(ring.public_keys(now))
    accepted: list[tuple[bytes, int]] = []
    for advance, offset, replay in steps:
        now += advance
        epoch = ring.epoch_at(now)
        keys = ring.public_keys(now)
        assert set(keys) == {epoch, epoch + 1}
        for e, key in keys.items():
            assert published.setdefault(e, key) == key  # a key is never regenerated
        held = set(ring.epochs)
        expected = {epoch, epoch + 1}
        if now < epoch * L + GRACE and epoch - 1 in published:
            expected.add(epoch - 1)
        assert held == expected
        timer = ring.get_timer()
        assert timer is not None and now < timer <= (epoch + 1) * L
        if replay and accepted:
            old_header, old_epoch = accepted[-1]
            with pytest.raises((ReplayedInput, UnknownEpoch)):
                ring.unwrap(old_header, old_epoch, now)
        target = epoch + offset
        if target in held:
            header = header_with_key(published[target], seed=len(accepted) + 100)
            ring.unwrap(header, target, now)
            accepted.append((header, target))
        else:
            with pytest.raises(UnknownEpoch):
                ring.unwrap(b"\x00" * ZMESH_GEOMETRY.header_length, target, now)
