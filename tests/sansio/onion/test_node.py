"""OnionNode roles wired by hand: build, data both ways, teardown, timeouts, hostile input."""

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
    CellDropped,
    CircuitBuilt,
    CircuitDestroyed,
    CircuitOpened,
    CircuitRole,
    DestroyOrigin,
    DestroyReason,
    LinkNeeded,
    OnionConfig,
    OnionNode,
    RelayKind,
    RelayMessageReceived,
    UnknownCircuit,
)
from zmesh.sansio.onion.cells import CIRCUIT_ID_HIGH_BIT, CellCommand, encode_cell, parse_cell
from zmesh.sansio.wire import (
    AuthenticationFailed,
    LocalProtocolError,
    MalformedInput,
    ProtocolError,
    ReplayedInput,
)


def _line(hops: int, **config: object) -> Wiring:
    """n0 (client) - n1 - ... - n<hops> (exit), linked in a line."""
    w = Wiring(hops + 1, config=OnionConfig(**config) if config else None)  # type: ignore[arg-type]
    for i in range(hops):
        w.connect(f"n{i}", f"n{i + 1}")
    return w


def _built(hops: int, aead: str = "chacha20-poly1305", **config: object):  # type: ignore[no-untyped-def]
    w = _line(hops, **config)
    handle = w.nodes["n0"].build_circuit(
        w.route(*[f"n{i}" for i in range(1, hops + 1)]), 0.0, aead=aead
    )
    w.pump()
    (built,) = w.take("n0", CircuitBuilt)
    (opened,) = w.take(f"n{hops}", CircuitOpened)
    assert built.circuit == handle
    return w, handle, opened.circuit


def _snapshot(node: OnionNode) -> tuple[object, ...]:
    return (
        sorted(map(repr, node._table)),
        sorted(map(repr, node._ends)),
        sorted(repr((link, cid)) for link, ids in node._fast.items() for cid in ids),
        [(r.layers.forward_count, r.layers.backward_count) for r in node._relays],
        [
            (getattr(e.layers, "forward_count", None), getattr(e.layers, "backward_count", None))
            for e in node._ends.values()
        ],
        node.stats,
        len(node._waiting),
    )


@pytest.mark.parametrize("hops", [2, 3])
@pytest.mark.parametrize("aead", ["chacha20-poly1305", "aes-256-gcm"])
def test_build_and_talk_both_ways(hops: int, aead: str) -> None:
    w, client, exit_handle = _built(hops, aead)
    assert exit_handle.role is CircuitRole.EXIT
    info = w.nodes["n0"].circuit_info(client)
    assert info.hops == tuple(w.nodes[f"n{i}"].node_id for i in range(1, hops + 1))
    # One round trip: exactly one CREATE and one CREATED per link.
    assert all(count == 1 for count in w.cells.values())
    for i in range(5):
        payload = bytes([i]) * (i * 200 if i < 4 else MAX_RELAY_PAYLOAD)
        w.nodes["n0"].send_relay_message(client, RelayKind.STREAM, payload, 0.0)
        w.nodes[f"n{hops}"].send_relay_message(
            exit_handle, RelayKind.E2E_MESSAGE, payload[::-1], 0.0
        )
    w.pump()
    at_exit = w.take(f"n{hops}", RelayMessageReceived)
    at_client = w.take("n0", RelayMessageReceived)
    assert [m.payload for m in at_exit] == [
        bytes([i]) * (i * 200 if i < 4 else MAX_RELAY_PAYLOAD) for i in range(5)
    ]
    assert [m.kind for m in at_client] == [RelayKind.E2E_MESSAGE] * 5
    assert at_client[4].payload == bytes([4]) * MAX_RELAY_PAYLOAD
    assert all(e.circuit == client for e in at_client)
    relay = w.nodes["n1"].stats
    assert (relay.relayed_forward, relay.relayed_backward) == (5, 5)
    assert not any(w.errors.values())


def test_padding_messages_are_dropped_silently() -> None:
    w, client, _ = _built(2)
    w.nodes["n0"].send_relay_message(client, RelayKind.PADDING, b"", 0.0)
    w.pump()
    assert not w.take("n2", RelayMessageReceived)
    assert w.nodes["n0"].circuit_info(client).cells_sent == 1


@pytest.mark.parametrize("closer", ["n0", "n2"])
def test_destroy_travels_both_ways(closer: str) -> None:
    w, client, exit_handle = _built(2)
    handle = client if closer == "n0" else exit_handle
    w.nodes[closer].destroy_circuit(handle, DestroyReason.REQUESTED, 0.0)
    w.pump()
    other = "n2" if closer == "n0" else "n0"
    (local,) = w.take(closer, CircuitDestroyed)
    (remote,) = w.take(other, CircuitDestroyed)
    assert local.origin is DestroyOrigin.LOCAL
    assert (remote.reason, remote.origin) == (DestroyReason.REQUESTED, DestroyOrigin.REMOTE)
    assert w.nodes["n1"].relayed_circuit_count == 0
    assert not w.nodes["n1"]._table and not any(w.nodes["n1"]._fast.values())
    with pytest.raises(LocalProtocolError):
        w.nodes["n0"].send_relay_message(client, RelayKind.STREAM, b"x", 0.0)


def test_dying_relay_gives_the_client_a_clear_destroy() -> None:
    w, client, _ = _built(3)
    # n2 dies: its neighbours notice the links going down.
    w.nodes["n1"].link_down(("n1", "n2"), 0.0)
    w.nodes["n3"].link_down(("n3", "n2"), 0.0)
    w.pump()
    (event,) = w.take("n0", CircuitDestroyed)
    assert (event.circuit, event.reason, event.origin) == (
        client,
        DestroyReason.LINK_LOST,
        DestroyOrigin.REMOTE,
    )
    (at_exit,) = w.take("n3", CircuitDestroyed)
    assert at_exit.origin is DestroyOrigin.LINK


def test_tagging_relay_is_caught_and_the_circuit_torn_down() -> None:
    w, client, _ = _built(3)

    def tag(src: str, dst: str, cell: bytes) -> bytes:
        if (src, dst) == ("n1", "n2") and parse_cell(cell).command is CellCommand.RELAY:
            marked = bytearray(cell)
            marked[100] ^= 0x01  # a marker a colluding n3 would look for
            return bytes(marked)
        return cell

    w.tamper = tag
    w.nodes["n0"].send_relay_message(client, RelayKind.STREAM, b"secret", 0.0)
    w.pump()
    assert [type(e) for e in w.errors["n2"]] == [AuthenticationFailed]  # the next hop caught it
    assert not w.take("n3", RelayMessageReceived)  # the marker never reached n3
    (event,) = w.take("n0", CircuitDestroyed)
    assert event.reason is DestroyReason.PROTOCOL
    (at_exit,) = w.take("n3", CircuitDestroyed)
    assert at_exit.reason is DestroyReason.PROTOCOL
    assert w.nodes["n2"].stats.tag_failures == 1


def test_tagged_backward_cell_is_caught_by_the_client() -> None:
    w, _client, exit_handle = _built(2)

    def tag(src: str, dst: str, cell: bytes) -> bytes:
        if (src, dst) == ("n2", "n1") and parse_cell(cell).command is CellCommand.RELAY:
            return cell[:50] + bytes([cell[50] ^ 4]) + cell[51:]
        return cell

    w.tamper = tag
    w.nodes["n2"].send_relay_message(exit_handle, RelayKind.STREAM, b"reply", 0.0)
    w.pump()
    assert [type(e) for e in w.errors["n0"]] == [AuthenticationFailed]
    (event,) = w.take("n0", CircuitDestroyed)
    assert (event.reason, event.origin) == (DestroyReason.PROTOCOL, DestroyOrigin.LOCAL)
    (at_exit,) = w.take("n2", CircuitDestroyed)
    assert at_exit.origin is DestroyOrigin.REMOTE


def test_replayed_create_is_rejected() -> None:
    w = _line(2)
    captured: list[bytes] = []

    def spy(src: str, dst: str, cell: bytes) -> bytes:
        if (src, dst) == ("n0", "n1") and parse_cell(cell).command is CellCommand.CREATE:
            captured.append(cell)
        return cell

    w.tamper = spy
    w.nodes["n0"].build_circuit(w.route("n1", "n2"), 0.0)
    w.pump()
    assert w.take("n0", CircuitBuilt)
    # An observer replays the CREATE on a new circuit id of the same link.
    replay = encode_cell(
        parse_cell(captured[0]).circuit_id ^ 0x1234,
        CellCommand.CREATE,
        bytes(parse_cell(captured[0]).body),
    )
    before = _snapshot(w.nodes["n1"])
    with pytest.raises(ReplayedInput):
        w.nodes["n1"].receive_cell(("n1", "n0"), replay, 0.0)
    after = _snapshot(w.nodes["n1"])
    assert before[:5] == after[:5]
    ((_, destroy),) = w.nodes["n1"].cells_to_send()
    assert parse_cell(destroy).command is CellCommand.DESTROY


def test_wrong_circuit_id_and_wrong_link() -> None:
    w, client, _ = _built(2)
    w.nodes["n0"].send_relay_message(client, RelayKind.STREAM, b"x", 0.0)
    genuine = w.nodes["n0"].cells_to_send()[0][1]
    circuit_id = parse_cell(genuine).circuit_id
    moved = encode_cell(circuit_id ^ 1, CellCommand.RELAY, bytes(parse_cell(genuine).body))
    before = _snapshot(w.nodes["n1"])
    with pytest.raises(UnknownCircuit):
        w.nodes["n1"].receive_cell(("n1", "n0"), moved, 0.0)
    # A cell for the n0 side on the n2 link: there the id is unknown (n1's own circuit on that
    # link has another id), so it is refused rather than relayed.
    other = encode_cell(circuit_id ^ 2, CellCommand.RELAY, bytes(parse_cell(genuine).body))
    with pytest.raises(UnknownCircuit):
        w.nodes["n1"].receive_cell(("n1", "n2"), other, 0.0)
    assert _snapshot(w.nodes["n1"]) == before
    with pytest.raises(LocalProtocolError):
        w.nodes["n1"].receive_cell(("n1", "nowhere"), genuine, 0.0)
    w.nodes["n1"].receive_cell(("n1", "n0"), genuine, 0.0)  # still works afterwards


def test_circuit_ids_split_the_space_per_link() -> None:
    w = _line(2)
    lower = w.nodes["n0"].node_id < w.nodes["n1"].node_id
    w.nodes["n0"].build_circuit(w.route("n1", "n2"), 0.0)
    ((_, create),) = w.nodes["n0"].cells_to_send()
    assert bool(parse_cell(create).circuit_id & CIRCUIT_ID_HIGH_BIT) == lower
    # A CREATE from the peer with an id from our own half is refused.
    own_half = encode_cell(
        5 | (CIRCUIT_ID_HIGH_BIT if lower else 0),
        CellCommand.CREATE,
        bytes(parse_cell(create).body),
    )
    with pytest.raises(MalformedInput):
        w.nodes["n0"].receive_cell(("n0", "n1"), own_half, 0.0)


def test_relay_waits_for_a_link_then_extends() -> None:
    w = Wiring(3)
    w.connect("n0", "n1")
    w.nodes["n0"].build_circuit(w.route("n1", "n2"), 0.0)
    w.pump()
    assert w.take("n1", LinkNeeded) == [LinkNeeded(w.nodes["n2"].node_id)]
    w.connect("n1", "n2")
    w.pump()
    assert w.take("n0", CircuitBuilt)


def test_link_wait_and_build_timeouts() -> None:
    w = Wiring(3, config=OnionConfig(link_wait_timeout=2.0, build_timeout=5.0))
    w.connect("n0", "n1")
    w.nodes["n0"].build_circuit(w.route("n1", "n2"), 0.0)
    w.pump()
    assert w.nodes["n1"].get_timer() == 2.0
    w.advance(2.5)
    (event,) = w.take("n0", CircuitDestroyed)
    assert (event.reason, event.origin) == (DestroyReason.NO_ROUTE, DestroyOrigin.REMOTE)
    assert not w.nodes["n1"]._waiting and not w.nodes["n1"]._table
    # A hop that never answers: the client gives up on its own.
    w.connect("n1", "n2")
    w.nodes["n0"].build_circuit(w.route("n1", "n2"), w.now)
    _pump_dropping(w, ("n1", "n2"))  # the CREATE to n2 is lost
    w.advance(5.5)
    events = w.take("n0", CircuitDestroyed)
    assert [(e.reason, e.origin) for e in events] == [(DestroyReason.TIMEOUT, DestroyOrigin.LOCAL)]
    assert not w.nodes["n1"]._table  # the relay timed out too (or got the DESTROY)


def _pump_dropping(w: Wiring, dropped: tuple[str, str]) -> None:
    for _ in range(100):
        moved = False
        for name, node in w.nodes.items():
            for (src, dst), cell in node.cells_to_send():
                moved = True
                if (src, dst) != dropped:
                    w.nodes[dst].receive_cell((dst, src), cell, w.now)
            while (event := node.next_event()) is not None:
                w.events[name].append(event)
        if not moved:
            return


def test_late_cells_after_destroy_are_counted_not_errors() -> None:
    w, client, exit_handle = _built(2)
    w.nodes["n2"].send_relay_message(exit_handle, RelayKind.STREAM, b"late", 0.0)
    late = w.nodes["n2"].cells_to_send()
    w.nodes["n0"].destroy_circuit(client, DestroyReason.REQUESTED, 0.0)
    w.pump()
    w.take("n0", CircuitDestroyed)
    # The exit's cell crossed the DESTROY on the wire; n1 has already forgotten the circuit.
    ((_, cell),) = late
    w.nodes["n1"].receive_cell(("n1", "n2"), cell, 0.0)
    w.pump()
    assert any(isinstance(e, CellDropped) for e in w.events["n1"])


def test_bounds_are_enforced() -> None:
    w = _line(2, max_circuits=2, max_queued_cells=8)
    handles = [w.nodes["n0"].build_circuit(w.route("n1", "n2"), 0.0) for _ in range(2)]
    with pytest.raises(LocalProtocolError):
        w.nodes["n0"].build_circuit(w.route("n1", "n2"), 0.0)
    w.pump()
    # n1 relays 2 circuits; n2 may end 2. The client's own table is full.
    assert len(w.take("n0", CircuitBuilt)) == 2
    assert w.nodes["n0"].circuit_send_capacity(handles[0]) == 8
    for _ in range(8):
        w.nodes["n0"].send_relay_message(handles[0], RelayKind.STREAM, b"", 0.0)
    assert w.nodes["n0"].circuit_send_capacity(handles[0]) == 0
    with pytest.raises(LocalProtocolError):
        w.nodes["n0"].send_relay_message(handles[0], RelayKind.STREAM, b"", 0.0)
    w.pump()
    assert len(w.take("n2", RelayMessageReceived)) == 8
    # A third CREATE at a relay whose table is full is refused with a DESTROY.
    w2 = Wiring(4, config=OnionConfig(max_circuits=1))
    w2.connect("n0", "n1")
    w2.connect("n3", "n1")
    w2.connect("n1", "n2")
    w2.nodes["n0"].build_circuit(w2.route("n1", "n2"), 0.0)
    w2.pump()
    w2.nodes["n3"].build_circuit(w2.route("n1", "n2"), 0.0)
    w2.pump()
    (refused,) = w2.take("n3", CircuitDestroyed)
    assert refused.reason is DestroyReason.RESOURCE_LIMIT


def test_bad_paths_are_local_errors() -> None:
    w = _line(2)
    node = w.nodes["n0"]
    with pytest.raises(LocalProtocolError):
        node.build_circuit(w.route("n1"), 0.0)  # too short
    with pytest.raises(LocalProtocolError):
        node.build_circuit(w.route("n2", "n1"), 0.0)  # no link to n2
    with pytest.raises(LocalProtocolError):
        node.build_circuit(w.route("n1", "n1"), 0.0)
    with pytest.raises(LocalProtocolError):
        node.build_circuit(w.route("n1", "n2"), 0.0, aead="rot13")


_CELL_COMMANDS = st.sampled_from([c for c in CellCommand if c is not CellCommand.PADDING])


@given(
    data=st.one_of(
        st.binary(max_size=CELL_SIZE + 4),
        st.builds(encode_cell, st.integers(1, 2**32 - 1), _CELL_COMMANDS, st.binary(max_size=1019)),
        st.tuples(st.integers(0, 2), st.integers(0, CELL_SIZE - 1), st.integers(1, 255)),
    ),
    from_client=st.booleans(),
)
@settings(max_examples=120, deadline=None)
def test_hostile_cells_raise_protocol_errors_and_change_nothing(
    data: bytes | tuple[int, int, int], from_client: bool
) -> None:
    w, client, _ = _built(2)
    cells = []
    for i in range(3):
        w.nodes["n0"].send_relay_message(client, RelayKind.STREAM, bytes([i]), 0.0)
        cells.extend(c for _, c in w.nodes["n0"].cells_to_send())
    node = w.nodes["n1"]
    if isinstance(data, tuple):  # a genuine cell (the first due) with one byte changed
        _, position, flip = data
        cell = bytearray(cells[0])
        cell[position] ^= flip
        data = bytes(cell)
        from_client = True
    before = _snapshot(node)
    link = ("n1", "n0") if from_client else ("n1", "n2")
    try:
        node.receive_cell(link, data, 0.0)
    except AuthenticationFailed:
        if node.stats.tag_failures:
            # A modified data cell on the live circuit is tagging: the circuit is torn down.
            assert not node._table
            return
        assert _snapshot(node)[:5] == before[:5]  # a bad CREATE: nothing was set up
    except ProtocolError:
        assert _snapshot(node)[:5] == before[:5]
        # The genuine cells still go through: no counter moved.
        for cell in cells:
            node.receive_cell(("n1", "n0"), cell, 0.0)
        return


def test_status_counters() -> None:
    w, client, exit_handle = _built(3)
    for _ in range(3):
        w.nodes["n0"].send_relay_message(client, RelayKind.STREAM, b"up", 0.0)
    w.nodes["n3"].send_relay_message(exit_handle, RelayKind.STREAM, b"down", 0.0)
    w.pump()
    (relayed,) = w.nodes["n2"].relayed_circuits()
    assert (relayed.previous_peer, relayed.next_peer) == (
        w.nodes["n1"].node_id,
        w.nodes["n3"].node_id,
    )
    assert (relayed.cells_forward, relayed.cells_backward) == (3, 1)
    assert w.nodes["n0"].circuit_info(client).cells_sent == 3
    assert w.nodes["n0"].circuit_info(client).cells_received == 1
    assert w.nodes["n3"].circuit_info(exit_handle).cells_received == 3


def test_link_padding_is_counted_and_dropped() -> None:
    w = _line(2)
    w.nodes["n0"].send_link_padding(("n0", "n1"))
    ((_, cell),) = w.nodes["n0"].cells_to_send()
    assert len(cell) == CELL_SIZE and parse_cell(cell).command is CellCommand.PADDING
    w.nodes["n1"].receive_cell(("n1", "n0"), cell, 0.0)
    assert w.nodes["n1"].stats.link_padding_received == 1
    assert w.nodes["n1"].next_event() is None and not w.nodes["n1"].cells_to_send()
    with pytest.raises(LocalProtocolError):
        w.nodes["n0"].send_link_padding(("n0", "n9"))


def test_malformed_message_under_a_valid_tag_destroys_the_circuit() -> None:
    w, client, _ = _built(2)
    end = w.nodes["n0"]._ends[client]
    bad = b"\x09" + bytes(970)  # unknown relay kind, sealed with the genuine keys
    cell = end.layers.seal_forward(bad, end.out_header)  # type: ignore[union-attr]
    w.nodes["n0"]._queue(end.link, cell)
    w.pump()
    assert [type(e) for e in w.errors["n2"]] == [MalformedInput]
    (at_exit,) = w.take("n2", CircuitDestroyed)
    assert at_exit.reason is DestroyReason.PROTOCOL
    (at_client,) = w.take("n0", CircuitDestroyed)
    assert at_client.origin is DestroyOrigin.REMOTE
