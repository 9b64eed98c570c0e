"""receive_block / blocks_to_send (the runtime's run path) against the per-cell path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from onion_wiring import Wiring

from zmesh.sansio.onion import (
    MAX_RELAY_PAYLOAD,
    CellDropped,
    CircuitBuilt,
    CircuitDestroyed,
    CircuitOpened,
    DestroyReason,
    OnionConfig,
    RelayKind,
    RelayMessageReceived,
    RelayMessagesReceived,
)
from zmesh.sansio.onion.cells import encode_relay_message
from zmesh.sansio.wire import AuthenticationFailed, LocalProtocolError, MalformedInput


def _built(hops: int, aead: str, *, blocks: bool, **config: object):  # type: ignore[no-untyped-def]
    config.setdefault("min_hops", 1)
    w = Wiring(hops + 1, config=OnionConfig(**config), blocks=blocks)  # type: ignore[arg-type]
    for i in range(hops):
        w.connect(f"n{i}", f"n{i + 1}")
    handle = w.nodes["n0"].build_circuit(
        w.route(*[f"n{i}" for i in range(1, hops + 1)]), 0.0, aead=aead
    )
    w.pump()
    (built,) = w.take("n0", CircuitBuilt)
    (opened,) = w.take(f"n{hops}", CircuitOpened)
    return w, handle, opened.circuit


def _payloads(n: int) -> list[bytes]:
    return [bytes([i % 256]) * ((i * 131) % (MAX_RELAY_PAYLOAD + 1)) for i in range(n)]


def _exchange(hops: int, aead: str, blocks: bool) -> tuple[list[object], list[object], object]:
    w, client, exit_end = _built(hops, aead, blocks=blocks)
    up, down = _payloads(40), _payloads(150)
    for p in up:
        w.nodes["n0"].send_relay_message(client, RelayKind.STREAM, p, 0.0)
    w.nodes[f"n{hops}"].send_relay_messages(exit_end, RelayKind.STREAM, down[:70], 0.0)
    w.nodes[f"n{hops}"].send_relay_message(exit_end, RelayKind.PADDING, b"", 0.0)
    w.nodes[f"n{hops}"].send_relay_messages(exit_end, RelayKind.E2E_MESSAGE, down[70:], 0.0)
    w.pump()
    at_exit = [(e.kind, e.payload) for e in w.take(f"n{hops}", RelayMessageReceived)]
    at_client = [(e.kind, e.payload) for e in w.take("n0", RelayMessageReceived)]
    assert at_exit == [(RelayKind.STREAM, p) for p in up]
    assert at_client == [(RelayKind.STREAM, p) for p in down[:70]] + [
        (RelayKind.E2E_MESSAGE, p) for p in down[70:]
    ]
    assert not any(w.errors.values())
    stats = [w.nodes[f"n{i}"].stats for i in range(hops + 1)]
    return at_exit, at_client, stats


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("aead", ["chacha20-poly1305", "aes-256-gcm"])
def test_runs_carry_the_same_messages_and_counts_as_cells(hops: int, aead: str) -> None:
    assert _exchange(hops, aead, True) == _exchange(hops, aead, False)


def test_per_cell_and_run_paths_share_counters_on_one_circuit() -> None:
    # Alternate the two paths on the same circuit: nonces and pad streams must stay in step.
    w, client, exit_end = _built(3, "chacha20-poly1305", blocks=False)
    for round_ in range(4):
        w.blocks = bool(round_ % 2)
        for p in _payloads(67 + round_):
            w.nodes["n0"].send_relay_message(client, RelayKind.STREAM, p, 0.0)
        w.nodes["n3"].send_relay_messages(exit_end, RelayKind.STREAM, _payloads(33), 0.0)
        w.pump()
        assert len(w.take("n3", RelayMessageReceived)) == 67 + round_
        assert len(w.take("n0", RelayMessageReceived)) == 33
    assert not any(w.errors.values())


def test_batch_events_group_a_run_by_kind() -> None:
    w, client, exit_end = _built(2, "aes-256-gcm", blocks=True, batch_events=True)
    down = _payloads(10)
    w.nodes["n2"].send_relay_messages(exit_end, RelayKind.STREAM, down[:6], 0.0)
    w.nodes["n2"].send_relay_messages(exit_end, RelayKind.E2E_MESSAGE, down[6:], 0.0)
    w.pump()
    events = w.take("n0", RelayMessagesReceived)
    assert [(e.kind, e.payloads) for e in events] == [
        (RelayKind.STREAM, tuple(down[:6])),
        (RelayKind.E2E_MESSAGE, tuple(down[6:])),
    ]


@pytest.mark.parametrize("blocks", [False, True])
def test_a_tagged_cell_mid_run_delivers_the_cells_before_it_then_tears_down(blocks: bool) -> None:
    w, client, exit_end = _built(2, "chacha20-poly1305", blocks=blocks)
    seen = {"n": 0}

    def tamper(src: str, dst: str, cell: bytes) -> bytes:
        if (src, dst) == ("n1", "n0"):
            seen["n"] += 1
            if seen["n"] == 30:  # the 30th data cell toward the client
                return cell[:600] + bytes([cell[600] ^ 1]) + cell[601:]
        return cell

    w.tamper = tamper
    w.nodes["n2"].send_relay_messages(exit_end, RelayKind.STREAM, _payloads(50), 0.0)
    w.pump()
    assert len(w.take("n0", RelayMessageReceived)) == 29
    assert [type(e) for e in w.errors["n0"]][0] is AuthenticationFailed
    (destroyed,) = w.take("n0", CircuitDestroyed)
    assert destroyed.reason is DestroyReason.PROTOCOL
    assert w.nodes["n0"].stats.tag_failures == 1
    # The rest of the run arrived on a closed circuit: dropped and counted, not errors.
    assert len(w.take("n0", CellDropped)) == 20
    assert len(w.errors["n0"]) == 1


@pytest.mark.parametrize("blocks", [False, True])
def test_a_malformed_message_under_a_valid_tag_tears_down(blocks: bool) -> None:
    w, client, exit_end = _built(2, "chacha20-poly1305", blocks=blocks)
    layers = w.nodes["n2"]._ends[exit_end].layers  # the exit seals a bad plaintext itself
    good = _payloads(5)
    w.nodes["n2"].send_relay_messages(exit_end, RelayKind.STREAM, good[:3], 0.0)
    bad = bytearray(bytes(32) + encode_relay_message(RelayKind.STREAM, b"x"))
    bad[-1] = 7  # non-zero fill
    header = w.nodes["n2"]._ends[exit_end].out_header
    w.nodes["n2"]._queue(exit_end_link(w), layers.seal_backward_plain(bytes(bad), header))
    w.nodes["n2"].send_relay_messages(exit_end, RelayKind.STREAM, good[3:], 0.0)
    w.pump()
    assert [e.payload for e in w.take("n0", RelayMessageReceived)] == good[:3]
    assert isinstance(w.errors["n0"][0], MalformedInput)
    assert w.take("n0", CircuitDestroyed)


def exit_end_link(w: Wiring) -> object:
    return ("n2", "n1")


def test_queue_bound_counts_cells_in_runs() -> None:
    w, client, exit_end = _built(2, "chacha20-poly1305", blocks=True, max_queued_cells=100)
    exit_node = w.nodes["n2"]
    assert exit_node.send_relay_messages(exit_end, RelayKind.STREAM, _payloads(150), 0.0) == 100
    assert exit_node.queued_cells == 100
    assert exit_node.circuit_send_capacity(exit_end) == 0
    with pytest.raises(LocalProtocolError):
        exit_node.send_relay_message(exit_end, RelayKind.STREAM, b"x", 0.0)
    assert len(exit_node.cells_to_send()) == 100
    assert exit_node.queued_cells == 0


def test_receive_block_refuses_partial_cells() -> None:
    w, _, _ = _built(1, "chacha20-poly1305", blocks=True)
    with pytest.raises(LocalProtocolError):
        w.nodes["n1"].receive_block(("n1", "n0"), bytes(1500), 0.0)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_CELL_KINDS = st.lists(
    st.tuples(st.integers(0, 3), st.binary(min_size=1019, max_size=1019)), min_size=1, max_size=12
)


def _hostile_cells(w: Wiring, exit_end: object, spec: list[tuple[int, bytes]]) -> list[bytes]:
    """Cells for the middle relay n1 from n2's side: real ones (a valid run), ones with the
    circuit's header and a random body (tagging), random headers, and a valid cell's replay."""
    w.nodes["n2"].send_relay_messages(exit_end, RelayKind.STREAM, _payloads(4), 0.0)  # type: ignore[arg-type]
    real = [c for _, c in w.nodes["n2"].cells_to_send()]
    header = real[0][:5]
    cells: list[bytes] = []
    for kind, body in spec:
        if kind == 0 and real:
            cells.append(real.pop(0))
        elif kind == 1:
            cells.append(header + body)
        elif kind == 2:
            cells.append(body[:5] + body)
        else:
            cells.append(cells[-1] if cells else header + body)
    return cells


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_CELL_KINDS)
def test_hostile_blocks_match_the_per_cell_path(spec: list[tuple[int, bytes]]) -> None:
    results = []
    for blocks in (False, True):
        w, _, exit_end = _built(2, "chacha20-poly1305", blocks=False)
        cells = _hostile_cells(w, exit_end, spec)
        relay = w.nodes["n1"]
        if blocks:
            errors = relay.receive_block(("n1", "n2"), b"".join(cells), 0.0)
        else:
            errors = relay.receive_cells(("n1", "n2"), cells, 0.0)
        out = relay.cells_to_send()
        events = []
        while (e := relay.next_event()) is not None:
            events.append(e)
        results.append(([type(e).__name__ for e in errors], out, events, relay.stats))
    assert results[0] == results[1]
