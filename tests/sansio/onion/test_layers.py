"""Layered data-cell crypto (layers.py): round trips, constant size, tagging, unlinkability."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.onion.cells import (
    CELL_HEADER_SIZE,
    CELL_SIZE,
    MAX_RELAY_PAYLOAD,
    RelayKind,
    encode_relay_message,
    parse_relay_message,
)
from zmesh.sansio.onion.commands import CellAead
from zmesh.sansio.onion.layers import ClientLayers, ExitLayers, RelayLayers
from zmesh.sansio.onion.session import HopKeys
from zmesh.sansio.wire import AuthenticationFailed, LocalProtocolError

HEADER = b"\x00\x00\x00\x07\x03"


def _keys(n: int, aead: CellAead = CellAead.CHACHA20_POLY1305, seed: int = 1) -> list[HopKeys]:
    rng = random.Random(seed)
    return [HopKeys(*(rng.randbytes(32) for _ in range(5)), aead=aead) for _ in range(n)]


def _circuit(n: int, aead: CellAead = CellAead.CHACHA20_POLY1305):  # type: ignore[no-untyped-def]
    keys = _keys(n, aead)
    client = ClientLayers(keys, random.Random(2).randbytes)
    return client, [RelayLayers(k) for k in keys[:-1]], ExitLayers(keys[-1])


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("aead", list(CellAead))
def test_round_trip_both_ways(hops: int, aead: CellAead) -> None:
    client, relays, exit_ = _circuit(hops, aead)
    for i in range(20):
        message = encode_relay_message(RelayKind.STREAM, bytes([i]) * (i * 40))
        cell = client.seal_forward(message, HEADER)
        for relay in relays:
            assert len(cell) == CELL_SIZE
            cell = relay.forward(cell, HEADER)
        assert exit_.open_forward(cell) == message
        cell = exit_.seal_backward(message, HEADER)
        for relay in reversed(relays):
            assert len(cell) == CELL_SIZE
            cell = relay.backward(cell, HEADER)
        assert client.open_backward(cell) == message


def test_pipe_matches_the_methods() -> None:
    keys = _keys(2)
    client = ClientLayers(keys, random.Random(3).randbytes)
    by_method, by_pipe = RelayLayers(keys[0]), RelayLayers(keys[0])
    out: list[tuple[object, bytes]] = []
    fwd = by_pipe.pipe(True, HEADER, "next", out.append, lambda: None)[0]
    for _ in range(5):
        cell = client.seal_forward(encode_relay_message(RelayKind.STREAM, b"x"), HEADER)
        fwd(cell)
        assert out.pop() == ("next", by_method.forward(cell, HEADER))
    bwd = by_pipe.pipe(False, HEADER, "prev", out.append, lambda: None)[0]
    cell = HEADER + random.Random(4).randbytes(CELL_SIZE - CELL_HEADER_SIZE)
    bwd(cell)
    assert out.pop() == ("prev", by_method.backward(cell, HEADER))
    assert by_pipe.forward_count == by_method.forward_count == 5


@given(position=st.integers(CELL_HEADER_SIZE, CELL_SIZE - 1), bit=st.integers(0, 7))
@settings(max_examples=80)
def test_any_modified_forward_byte_is_caught_by_the_next_hop(position: int, bit: int) -> None:
    """Tagging: whatever byte hop 1 flips (data, its successors' tags, its own pad), hop 2
    (or the exit) rejects the cell."""
    client, relays, exit_ = _circuit(3)
    cell = relays[0].forward(
        client.seal_forward(encode_relay_message(RelayKind.STREAM, b"hi"), HEADER), HEADER
    )
    tampered = bytearray(cell)
    tampered[position] ^= 1 << bit
    with pytest.raises(AuthenticationFailed):
        relays[1].forward(bytes(tampered), HEADER)
    # State unchanged: the genuine cell still goes through.
    assert (
        exit_.open_forward(relays[1].forward(cell, HEADER))[:5]
        == encode_relay_message(RelayKind.STREAM, b"hi")[:5]
    )


@given(position=st.integers(CELL_HEADER_SIZE + 16, CELL_SIZE - 1), bit=st.integers(0, 7))
@settings(max_examples=60)
def test_modified_backward_cell_is_caught_by_the_client(position: int, bit: int) -> None:
    client, relays, exit_ = _circuit(3)
    cell = bytearray(exit_.seal_backward(encode_relay_message(RelayKind.STREAM, b"yo"), HEADER))
    cell[position] ^= 1 << bit  # the exit marks its cell; two hops wrap it
    out = bytes(cell)
    for relay in reversed(relays):
        out = relay.backward(out, HEADER)
    with pytest.raises(AuthenticationFailed):
        client.open_backward(out)


@given(position=st.integers(CELL_HEADER_SIZE, CELL_HEADER_SIZE + 15))
@settings(max_examples=20)
def test_marks_in_the_dropped_prefix_never_reach_the_client(position: int) -> None:
    """The next hop drops the first 16 body bytes of a backward cell (the client recomputes
    them): a mark there is lost, and the message arrives intact."""
    client, relays, exit_ = _circuit(3)
    message = encode_relay_message(RelayKind.STREAM, b"intact")
    cell = bytearray(exit_.seal_backward(message, HEADER))
    cell[position] ^= 0x55
    out = bytes(cell)
    for relay in reversed(relays):
        out = relay.backward(out, HEADER)
    assert client.open_backward(out) == message


def test_no_16_byte_window_repeats_across_links() -> None:
    """A link observer cannot match a cell on one link to the same cell on the next."""
    for hops in (2, 3):
        client, relays, exit_ = _circuit(hops)
        cells = [client.seal_forward(encode_relay_message(RelayKind.STREAM, b""), HEADER)]
        for relay in relays:
            cells.append(relay.forward(cells[-1], HEADER))
        back = [exit_.seal_backward(encode_relay_message(RelayKind.STREAM, b""), HEADER)]
        for relay in reversed(relays):
            back.append(relay.backward(back[-1], HEADER))
        for chain in (cells, back):
            for a, b in itertools.pairwise(chain):
                windows = {a[i : i + 16] for i in range(CELL_HEADER_SIZE, CELL_SIZE - 15)}
                assert not any(
                    b[i : i + 16] in windows for i in range(CELL_HEADER_SIZE, CELL_SIZE - 15)
                )


def test_two_and_three_hop_cells_are_the_same_size_everywhere() -> None:
    sizes = set()
    for hops in (2, 3):
        client, relays, _ = _circuit(hops)
        cell = client.seal_forward(
            encode_relay_message(RelayKind.STREAM, bytes(MAX_RELAY_PAYLOAD)), HEADER
        )
        sizes.add(len(cell))
        for relay in relays:
            cell = relay.forward(cell, HEADER)
            sizes.add(len(cell))
    assert sizes == {CELL_SIZE}


def test_exit_rejects_replayed_cell() -> None:
    """Implicit counters: the same cell twice fails the second time (no replay inside a circuit)."""
    client, _relays, exit_ = _circuit(1)
    cell = client.seal_forward(encode_relay_message(RelayKind.E2E_MESSAGE, b"once"), HEADER)
    assert parse_relay_message(exit_.open_forward(cell)) == (RelayKind.E2E_MESSAGE, b"once")
    with pytest.raises(AuthenticationFailed):
        exit_.open_forward(cell)


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_whole_plaintext_variants_match(hops: int) -> None:
    # seal_backward_plain / open_*_plain (the node's per-cell path) against the plain methods.
    a_client, a_relays, a_exit = _circuit(hops)
    b_client, b_relays, b_exit = _circuit(hops)
    for i in range(5):
        message = encode_relay_message(RelayKind.STREAM, bytes([i]) * (i * 150))
        via_plain = b_exit.seal_backward_plain(bytes(32) + message, HEADER)
        cell = a_exit.seal_backward(message, HEADER)
        assert via_plain == cell
        for a, b in zip(reversed(a_relays), reversed(b_relays), strict=True):
            cell, via_plain = a.backward(cell, HEADER), b.backward(via_plain, HEADER)
        assert b_client.open_backward_plain(via_plain) == bytes(32) + message
        assert a_client.open_backward(cell) == message
        forward = a_client.seal_forward(message, HEADER)
        for relay in a_relays:
            forward = relay.forward(forward, HEADER)
        plain = b_exit.open_forward_plain(forward)
        assert plain[32:] == message and len(plain) == 1003
    with pytest.raises(LocalProtocolError):
        b_exit.seal_backward_plain(b"\x01" + bytes(1002), HEADER)  # prefix must be zeros
    with pytest.raises(LocalProtocolError):
        b_exit.seal_backward_plain(bytes(1002), HEADER)
