"""Peer records: round trips, signature and expiry checks, hostile bytes."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.signaling.peer_record import (
    MAX_RECORD_LIFETIME,
    MAX_RECORD_SIZE,
    Capability,
    ExpiredRecord,
    PeerRecord,
    SphinxKey,
    node_id_of,
    sign_record,
)
from zmesh.sansio.wire import AuthenticationFailed, LocalProtocolError, ProtocolError

SEED = bytes(range(32))


def make(
    seq: int = 7, expires: int = 2_000, addresses: tuple[str, ...] = ("wss://127.0.0.1:4433/",)
) -> PeerRecord:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    return sign_record(
        key,
        seq=seq,
        expires=expires,
        capabilities=Capability.RELAY | Capability.EXIT,
        cert_sha256=hashlib.sha256(b"cert").digest(),
        sphinx_keys=[SphinxKey(5, b"\x01" * 32), SphinxKey(6, b"\x02" * 32)],
        addresses=addresses,
    )


def test_round_trip_and_verify() -> None:
    record = make()
    data = record.encode()
    back = PeerRecord.decode(data).verify(now=1_000)
    assert back == record
    assert back.node_id == hashlib.sha256(record.identity_key).digest()
    assert back.node_id == node_id_of(record.identity_key)
    assert back.sphinx_key_for(6) == SphinxKey(6, b"\x02" * 32)
    assert back.sphinx_key_for(9) is None


def test_every_single_bit_flip_is_refused() -> None:
    data = bytearray(make().encode())
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            mutated = bytearray(data)
            mutated[i] ^= bit
            with pytest.raises(ProtocolError):
                PeerRecord.decode(bytes(mutated)).verify(now=1_000)


def test_expired_record_is_refused_after_signature_check() -> None:
    record = make(expires=1_000)
    with pytest.raises(ExpiredRecord):
        PeerRecord.decode(record.encode()).verify(now=1_000)


def test_forged_field_fails_authentication() -> None:
    record = make()
    forged = dataclasses.replace(record, seq=record.seq + 1)
    with pytest.raises(AuthenticationFailed):
        PeerRecord.decode(forged.encode()).verify(now=0)


def test_signing_refuses_oversized_record() -> None:
    with pytest.raises(LocalProtocolError):
        make(addresses=tuple("wss://" + "a" * 240 for _ in range(8)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_RECORD_SIZE + 8))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        PeerRecord.decode(data).verify(now=0)


@settings(max_examples=60, deadline=None)
@given(
    seq=st.integers(0, 2**64 - 1),
    expires=st.integers(0, 2**64 - 1),
    caps=st.integers(0, 15),
    epochs=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4, unique=True),
    addresses=st.lists(st.text(max_size=40), max_size=8),
)
def test_round_trip_property(
    seq: int, expires: int, caps: int, epochs: list[int], addresses: list[str]
) -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    record = sign_record(
        key,
        seq=seq,
        expires=expires,
        capabilities=Capability(caps),
        cert_sha256=b"\x09" * 32,
        sphinx_keys=[SphinxKey(e, e.to_bytes(4, "big") * 8) for e in epochs],
        addresses=addresses,
    )
    back = PeerRecord.decode(record.encode())
    assert back == record
    if expires > 0:
        back.verify(now=expires - 1)


def test_expiry_too_far_ahead_is_refused() -> None:
    record = make(expires=1_000 + MAX_RECORD_LIFETIME + 1)
    with pytest.raises(ExpiredRecord):
        PeerRecord.decode(record.encode()).verify(now=1_000)
    assert make(expires=1_000 + MAX_RECORD_LIFETIME).verify(now=1_000).seq == 7
