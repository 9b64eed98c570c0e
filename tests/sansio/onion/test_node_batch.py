"""OnionNode's batch API (receive_cells, send_relay_messages), the circuit-end fast path and
link_failed: same results as the per-cell API, bounds kept, errors reported per cell."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))  # pytest 9 imports tests without their dir
from onion_wiring import Wiring

from zmesh.sansio.onion import (
    CELL_SIZE,
    MAX_RELAY_PAYLOAD,
    CircuitBuilt,
    CircuitDestroyed,
    CircuitOpened,
    DestroyOrigin,
    DestroyReason,
    LinkNeeded,
    OnionConfig,
    RelayKind,
    RelayMessageReceived,
    UnknownCircuit,
)
from zmesh.sansio.onion.cells import CellCommand, encode_cell
from zmesh.sansio.wire import AuthenticationFailed, LocalProtocolError, ProtocolError


def _built(hops: int = 2, **config: object):  # type: ignore[no-untyped-def]
    w = Wiring(hops + 1, config=OnionConfig(**config) if config else None)  # type: ignore[arg-type]
    for i in range(hops):
        w.connect(f"n{i}", f"n{i + 1}")
    client = w.nodes["n0"].build_circuit(w.route(*[f"n{i}" for i in range(1, hops + 1)]), 0.0)
    w.pump()
    assert w.take("n0", CircuitBuilt)
    (opened,) = w.take(f"n{hops}", CircuitOpened)
    return w, client, opened.circuit


def _backward_cells(w: Wiring, exit_handle: object, payloads: list[bytes], hops: int = 2):  # type: ignore[no-untyped-def]
    """The exit sends ``payloads``; the relays layer them; return what reaches the client."""
    exit_node = w.nodes[f"n{hops}"]
    assert exit_node.send_relay_messages(exit_handle, RelayKind.STREAM, payloads, 0.0) == len(  # type: ignore[arg-type]
        payloads
    )
    cells = [cell for _, cell in exit_node.cells_to_send()]
    for i in range(hops - 1, 0, -1):
        relay = w.nodes[f"n{i}"]
        assert not relay.receive_cells((f"n{i}", f"n{i + 1}"), cells, 0.0)
        cells = [cell for _, cell in relay.cells_to_send()]
    return cells


@pytest.mark.parametrize("hops", [2, 3])
def test_batches_deliver_what_single_cells_deliver(hops: int) -> None:
    payloads = [bytes([i]) * (i * 97 % (MAX_RELAY_PAYLOAD + 1)) for i in range(40)]
    payloads[5] = bytes(MAX_RELAY_PAYLOAD)  # a full cell: no zero fill to check
    results = []
    for batch in (True, False):
        w, _client, exit_handle = _built(hops)
        cells = _backward_cells(w, exit_handle, payloads, hops)
        client = w.nodes["n0"]
        if batch:
            assert client.receive_cells(("n0", "n1"), cells, 0.0) == []
        else:
            for cell in cells:
                client.receive_cell(("n0", "n1"), cell, 0.0)
        w.pump()
        got = w.take("n0", RelayMessageReceived)
        results.append([(m.kind, m.payload) for m in got])
        assert client.stats.cells_received == len(payloads) + 1  # + the CREATED
    assert results[0] == results[1] == [(RelayKind.STREAM, p) for p in payloads]


def test_a_bad_cell_does_not_stop_the_batch() -> None:
    w, _client, exit_handle = _built()
    cells = _backward_cells(w, exit_handle, [b"a", b"b", b"c"])
    stray = encode_cell(77, CellCommand.RELAY, b"")
    errors = w.nodes["n0"].receive_cells(("n0", "n1"), [cells[0], stray, cells[1], cells[2]], 0.0)
    assert [type(e) for e in errors] == [UnknownCircuit]
    w.pump()
    assert [m.payload for m in w.take("n0", RelayMessageReceived)] == [b"a", b"b", b"c"]


def test_a_tagged_cell_in_a_batch_destroys_the_circuit() -> None:
    w, client, exit_handle = _built()
    cells = _backward_cells(w, exit_handle, [b"a", b"b"])
    tagged = cells[1][:600] + bytes([cells[1][600] ^ 1]) + cells[1][601:]
    errors = w.nodes["n0"].receive_cells(("n0", "n1"), [cells[0], tagged], 0.0)
    assert [type(e) for e in errors] == [AuthenticationFailed]
    w.pump()
    assert [m.payload for m in w.take("n0", RelayMessageReceived)] == [b"a"]
    (destroyed,) = w.take("n0", CircuitDestroyed)
    assert (destroyed.circuit, destroyed.reason) == (client, DestroyReason.PROTOCOL)
    assert not w.nodes["n0"]._fast[("n0", "n1")]  # the fast entry went with the circuit


def test_the_fast_path_keeps_the_event_bound() -> None:
    w, client, exit_handle = _built(max_events=3)
    cells = _backward_cells(w, exit_handle, [b"1", b"2", b"3", b"4", b"5"])
    node = w.nodes["n0"]
    errors = node.receive_cells(("n0", "n1"), cells[:4], 0.0)
    assert [type(e) for e in errors] == [LocalProtocolError]  # the 4th: events not drained
    assert len(node._events) == 3
    assert node.circuit_info(client).cells_received == 3  # the refused cell changed nothing


def test_send_relay_messages_takes_what_the_queue_allows() -> None:
    w, client, _ = _built(max_queued_cells=5)
    node = w.nodes["n0"]
    assert node.send_relay_messages(client, RelayKind.STREAM, [b"x"] * 8, 0.0) == 5
    assert node.send_relay_messages(client, RelayKind.STREAM, [b"y"], 0.0) == 0
    assert node.circuit_info(client).cells_sent == 5
    assert len(node.cells_to_send()) == 5
    with pytest.raises(LocalProtocolError):  # one payload too long: nothing is sent
        node.send_relay_messages(client, RelayKind.STREAM, [b"ok", bytes(969)], 0.0)
    assert not node.cells_to_send() and node.circuit_info(client).cells_sent == 5
    node.destroy_circuit(client, DestroyReason.REQUESTED, 0.0)
    with pytest.raises(LocalProtocolError):
        node.send_relay_messages(client, RelayKind.STREAM, [b"z"], 0.0)


def test_send_relay_messages_matches_send_relay_message() -> None:
    # Two identically seeded wirings: the batch and the per-message API give the same bytes.
    outputs = []
    for batch in (True, False):
        w, client, _ = _built()
        node = w.nodes["n0"]
        payloads = [b"", b"p" * 10, bytes(MAX_RELAY_PAYLOAD)]
        if batch:
            node.send_relay_messages(client, RelayKind.E2E_MESSAGE, payloads, 0.0)
        else:
            for p in payloads:
                node.send_relay_message(client, RelayKind.E2E_MESSAGE, p, 0.0)
        outputs.append(node.cells_to_send())
    assert outputs[0] == outputs[1] and len(outputs[0]) == 3


def test_link_failed_fails_parked_creates_at_once() -> None:
    w = Wiring(4, config=OnionConfig(link_wait_timeout=10.0))
    w.connect("n0", "n1")
    w.nodes["n0"].build_circuit(w.route("n1", "n2"), 0.0)
    w.nodes["n0"].build_circuit(w.route("n1", "n3"), 0.0)
    w.pump()
    needed = w.take("n1", LinkNeeded)
    assert {e.peer_id for e in needed} == {w.nodes["n2"].node_id, w.nodes["n3"].node_id}
    relay = w.nodes["n1"]
    relay.link_failed(w.nodes["n0"].node_id, 0.1)  # nothing waits for n0: a no-op
    assert len(relay._waiting) == 2
    relay.link_failed(w.nodes["n2"].node_id, 0.1)
    w.pump()
    (event,) = w.take("n0", CircuitDestroyed)  # well before the 10 s link-wait timeout
    assert (event.reason, event.origin) == (DestroyReason.NO_ROUTE, DestroyOrigin.REMOTE)
    assert len(relay._waiting) == 1 and relay.relayed_circuit_count == 1
    assert relay.get_timer() == 10.0  # the circuit waiting for n3 still waits
    # The other one still extends when its link comes up.
    w.connect("n1", "n3")
    w.pump()
    assert w.take("n0", CircuitBuilt)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=CELL_SIZE + 4), max_size=6), st.data())
def test_hostile_batches_raise_only_protocol_errors(
    cells: list[bytes], data: st.DataObject
) -> None:
    w, _client, exit_handle = _built()
    (genuine,) = _backward_cells(w, exit_handle, [b"g"])
    # Random cells, some given the circuit's real header and size so they reach the fast path.
    header = genuine[:5]
    mixed = [
        (header + c)[:CELL_SIZE].ljust(CELL_SIZE, b"\0") if data.draw(st.booleans()) else c
        for c in cells
    ]
    errors = w.nodes["n0"].receive_cells(("n0", "n1"), [*mixed, genuine], 0.0)
    assert all(isinstance(e, ProtocolError) for e in errors)
    w.pump()
    delivered = [m.payload for m in w.take("n0", RelayMessageReceived)]
    if any(isinstance(e, AuthenticationFailed) for e in errors):
        assert w.take("n0", CircuitDestroyed) and delivered == []
    else:
        assert delivered == [b"g"]
