"""Rendezvous codec and the bounded record store."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.signaling.peer_record import (
    MAX_RECORD_LIFETIME,
    Capability,
    ExpiredRecord,
    SphinxKey,
    sign_record,
)
from zmesh.sansio.signaling.rendezvous import (
    MAX_FETCH,
    Fetch,
    Publish,
    Records,
    RecordStore,
    Result,
    StaleRecord,
    decode_message,
    encode_message,
)
from zmesh.sansio.wire import AuthenticationFailed, ProtocolError


def record_bytes(n: int, seq: int = 1, expires: int = 1_000) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(n.to_bytes(4, "big")).digest())
    return sign_record(
        key,
        seq=seq,
        expires=expires,
        capabilities=Capability.RELAY,
        cert_sha256=bytes(32),
        sphinx_keys=[SphinxKey(1, bytes(32))],
    ).encode()


@pytest.mark.parametrize(
    "message",
    [
        Publish(b"abc"),
        Fetch(0),
        Fetch(65535),
        Records(()),
        Records((b"x", b"yz")),
        Result(True),
        Result(False, "stale record ✓"),
    ],
)
def test_codec_round_trip(message: object) -> None:
    assert decode_message(encode_message(message)) == message  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2_000))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(data)


def test_store_keeps_newest_and_refuses_stale() -> None:
    store = RecordStore(capacity=4)
    store.publish(record_bytes(1, seq=1), now=0)
    store.publish(record_bytes(1, seq=2), now=0)
    with pytest.raises(StaleRecord):
        store.publish(record_bytes(1, seq=2), now=0)
    assert len(store) == 1
    assert store.snapshot(now=0) == [record_bytes(1, seq=2)]


def test_store_refuses_forged_and_expired() -> None:
    store = RecordStore()
    forged = bytearray(record_bytes(1))
    forged[-1] ^= 1
    with pytest.raises(AuthenticationFailed):
        store.publish(bytes(forged), now=0)
    with pytest.raises(ExpiredRecord):
        store.publish(record_bytes(2, expires=5), now=5)
    assert len(store) == 0


def test_store_is_bounded_and_drops_expired() -> None:
    store = RecordStore(capacity=3)
    for n in range(5):
        store.publish(record_bytes(n, expires=100 + n), now=0)
    assert len(store) == 3
    assert len(store.snapshot(now=0, limit=MAX_FETCH)) == 3
    assert store.snapshot(now=103) == [record_bytes(4, expires=104)]
    assert store.snapshot(now=0, limit=0) == []


def test_far_future_records_cannot_pin_the_store() -> None:
    """Review finding: eviction picks the record expiring soonest, so records signed with an
    expiry decades away (fresh keys cost nothing) would push out every honest record and stay
    forever. Records must not claim more than MAX_RECORD_LIFETIME."""
    store = RecordStore(capacity=2)
    with pytest.raises(ExpiredRecord):
        store.publish(record_bytes(1, expires=2**63), now=0)
    with pytest.raises(ExpiredRecord):
        store.publish(record_bytes(2, expires=MAX_RECORD_LIFETIME + 1), now=0)
    assert len(store) == 0
    store.publish(record_bytes(3, expires=MAX_RECORD_LIFETIME), now=0)
    assert len(store) == 1
