"""Per-hop key exchange, key schedule and the layered CREATED reply (session.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.onion.cells import BODY_SIZE
from zmesh.sansio.onion.commands import CellAead, CircuitSetup
from zmesh.sansio.onion.session import (
    RECORD_SIZE,
    ClientHopHandshake,
    derive_reply_key,
    respond,
    unwrap_created,
    wrap_created,
)
from zmesh.sansio.wire import AuthenticationFailed, MalformedInput


def _rng(seed: int = 5) -> random.Random:
    return random.Random(seed)


def _setup(n: int, aead: CellAead = CellAead.CHACHA20_POLY1305, seed: int = 5):  # type: ignore[no-untyped-def]
    rng = _rng(seed)
    handshakes = [
        ClientHopHandshake(is_exit=i == n - 1, aead=aead, random=rng.randbytes) for i in range(n)
    ]
    secrets = [rng.randbytes(32) for _ in range(n)]
    responses = [
        respond(h.setup, s, rng.randbytes) for h, s in zip(handshakes, secrets, strict=True)
    ]
    body = None
    for r in reversed(responses):
        body = wrap_created(r.reply_key, r.record, body, rng.randbytes)
    assert body is not None
    return handshakes, secrets, responses, body


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("aead", list(CellAead))
def test_both_sides_derive_the_same_keys(hops: int, aead: CellAead) -> None:
    handshakes, secrets, responses, body = _setup(hops, aead)
    assert len(body) == BODY_SIZE
    records = unwrap_created([derive_reply_key(s) for s in secrets], body)
    keys = [h.finish(s, r) for h, s, r in zip(handshakes, secrets, records, strict=True)]
    assert keys == [r.keys for r in responses]
    for k in keys:
        assert k.aead is aead
        parts = [k.forward_key, k.backward_key, k.forward_pad_key, k.backward_pad_key]
        assert len(set(parts)) == 4  # separate keys per direction and purpose
    # Separate keys per hop too.
    assert len({k.forward_key for k in keys}) == hops


def test_keys_depend_on_both_secrets() -> None:
    """Forward secrecy: the same Sphinx secret with fresh ephemerals gives other keys."""
    a = _setup(2, seed=1)
    b = _setup(2, seed=2)
    a_keys = [r.keys.forward_key for r in a[2]]
    b_keys = [r.keys.forward_key for r in b[2]]
    assert not set(a_keys) & set(b_keys)


def test_repr_hides_keys() -> None:
    _, _, responses, _ = _setup(1)
    text = repr(responses[0])
    assert responses[0].keys.forward_key.hex() not in text
    assert "forward_key" not in text


def test_created_body_changes_at_every_hop() -> None:
    rng = _rng(9)
    _handshakes, _secrets, responses, _ = _setup(3)
    inner = wrap_created(responses[2].reply_key, responses[2].record, None, rng.randbytes)
    middle = wrap_created(responses[1].reply_key, responses[1].record, inner, rng.randbytes)
    # No 16-byte window of one link's body shows up on the next link.
    windows = {inner[i : i + 16] for i in range(0, BODY_SIZE - 16)}
    assert not any(middle[i : i + 16] in windows for i in range(0, BODY_SIZE - 16))


def test_tampered_record_fails_confirmation() -> None:
    handshakes, secrets, _, body = _setup(2)
    for position in (0, RECORD_SIZE - 1, RECORD_SIZE + 5):
        bad = bytearray(body)
        bad[position] ^= 0x01
        records = unwrap_created([derive_reply_key(s) for s in secrets], bytes(bad))
        hop = 0 if position < RECORD_SIZE else 1
        with pytest.raises(AuthenticationFailed):
            handshakes[hop].finish(secrets[hop], records[hop])


def test_low_order_shares_are_refused() -> None:
    rng = _rng()
    setup = CircuitSetup(bytes(32), False, CellAead.CHACHA20_POLY1305, b"abcd")
    with pytest.raises(MalformedInput):
        respond(setup, rng.randbytes(32), rng.randbytes)
    hs = ClientHopHandshake(is_exit=True, aead=CellAead.CHACHA20_POLY1305, random=rng.randbytes)
    with pytest.raises(AuthenticationFailed):
        hs.finish(rng.randbytes(32), bytes(RECORD_SIZE))


@given(body=st.binary(min_size=BODY_SIZE, max_size=BODY_SIZE), hops=st.integers(1, 3))
@settings(max_examples=40, deadline=None)
def test_random_created_bodies_fail_cleanly(body: bytes, hops: int) -> None:
    """Random CREATED bodies: the client gets AuthenticationFailed, nothing else."""
    rng = _rng(hops)
    handshakes = [
        ClientHopHandshake(
            is_exit=i == hops - 1, aead=CellAead.CHACHA20_POLY1305, random=rng.randbytes
        )
        for i in range(hops)
    ]
    secrets = [rng.randbytes(32) for _ in range(hops)]
    records = unwrap_created([derive_reply_key(s) for s in secrets], body)
    assert len(records) == hops
    with pytest.raises(AuthenticationFailed):
        handshakes[0].finish(secrets[0], records[0])


def test_wrong_length_created_body_is_malformed() -> None:
    with pytest.raises(MalformedInput):
        unwrap_created([bytes(32)], bytes(BODY_SIZE - 1))
