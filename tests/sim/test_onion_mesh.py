"""Onion circuits over a 20-node simulated mesh: bulk transfer, dying relays, tagging relays."""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from zmesh.sansio.onion import (
    MAX_RELAY_PAYLOAD,
    CircuitBuilt,
    CircuitDestroyed,
    CircuitHandle,
    CircuitOpened,
    DestroyOrigin,
    DestroyReason,
    OnionEvent,
    RelayKind,
    RelayMessageReceived,
)
from zmesh.sansio.onion.cells import CellCommand, parse_cell
from zmesh.sansio.wire import AuthenticationFailed
from zmesh.sim import Simulator
from zmesh.sim.demo import FAILURE_DETECTION, OnionMesh

NODES = 20
TEN_MB = 10 * 1024 * 1024


def _mesh(seed: int, **kwargs: object) -> OnionMesh:
    sim = Simulator(seed=seed)
    mesh = OnionMesh(sim, [f"n{i:02d}" for i in range(NODES)], **kwargs)  # type: ignore[arg-type]
    mesh.connect_randomly(degree=3)
    return mesh


def _path(mesh: OnionMesh, client: str, hops: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    first = rng.choice(mesh.neighbours(client))
    others = [n for n in mesh.names if n not in (client, first)]
    return [first, *rng.sample(others, hops - 1)]


def _build(mesh: OnionMesh, client: str, path: list[str], aead: str = "chacha20-poly1305"):  # type: ignore[no-untyped-def]
    handle = mesh.build(client, path, aead)
    assert mesh.sim.run_until(lambda: bool(mesh.take(client, CircuitBuilt)), timeout=5.0)
    opened = mesh.take(path[-1], CircuitOpened)
    assert len(opened) == 1 and isinstance(opened[0], CircuitOpened)
    return handle, opened[0].circuit


class _Sender:
    """Pushes a byte string through a circuit as fast as the node's bounded queue allows."""

    def __init__(self, mesh: OnionMesh, name: str, circuit: CircuitHandle, data: bytes) -> None:
        self.node = mesh.node(name)
        self.circuit = circuit
        self.data = memoryview(data)
        self.offset = 0
        mesh.endpoints[name].before_transmit = self.top_up

    def top_up(self, now: float) -> None:
        capacity = self.node.circuit_send_capacity(self.circuit)
        while capacity > 0 and self.offset < len(self.data):
            chunk = self.data[self.offset : self.offset + MAX_RELAY_PAYLOAD]
            self.node.send_relay_message(self.circuit, RelayKind.STREAM, chunk, now)
            self.offset += len(chunk)
            capacity -= 1


@pytest.mark.parametrize(("hops", "aead"), [(2, "chacha20-poly1305"), (3, "aes-256-gcm")])
def test_ten_megabytes_each_way_byte_exact(hops: int, aead: str) -> None:
    received: dict[str, bytearray] = {}

    def collect(name: str, event: OnionEvent) -> None:
        if isinstance(event, RelayMessageReceived):
            received.setdefault(name, bytearray()).extend(event.payload)

    mesh = _mesh(seed=hops, on_event=collect, keep_messages=False)
    client = "n00"
    path = _path(mesh, client, hops, seed=hops)
    handle, exit_handle = _build(mesh, client, path, aead)
    up = random.Random(1).randbytes(TEN_MB)
    down = random.Random(2).randbytes(TEN_MB)
    _Sender(mesh, client, handle, up)
    _Sender(mesh, path[-1], exit_handle, down)
    started = time.perf_counter()
    mesh.sim.poke(client)
    mesh.sim.poke(path[-1])
    done = mesh.sim.run_until(
        lambda: (
            len(received.get(path[-1], b"")) >= TEN_MB and len(received.get(client, b"")) >= TEN_MB
        ),
        timeout=120.0,
    )
    elapsed = time.perf_counter() - started
    assert done, f"only {len(received.get(path[-1], b''))} / {len(received.get(client, b''))} bytes"
    assert hashlib.sha256(received[path[-1]]).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(received[client]).digest() == hashlib.sha256(down).digest()
    cells = -(-TEN_MB // MAX_RELAY_PAYLOAD)
    for hop in path[:-1]:
        stats = mesh.node(hop).stats
        assert (stats.relayed_forward, stats.relayed_backward) == (cells, cells)
    assert not any(e.errors for e in mesh.endpoints.values())
    # Real time, for the record (the suite budget): printed with -s.
    print(f"{hops} hops: 2 x 10 MB in {elapsed:.1f} s wall, {mesh.sim.now:.2f} s virtual")


@pytest.mark.parametrize("hops", [2, 3])
def test_dying_relay_gives_the_client_a_clear_destroy(hops: int) -> None:
    mesh = _mesh(seed=10 + hops)
    client = "n00"
    path = _path(mesh, client, hops, seed=7)
    handle, _ = _build(mesh, client, path)
    victim = path[-2] if hops == 3 else path[-1]  # a middle relay, or the exit
    mesh.fail(victim)
    start = mesh.sim.now
    assert mesh.sim.run_until(lambda: bool(mesh.events[client]), timeout=10.0)
    (event,) = mesh.take(client, CircuitDestroyed)
    assert isinstance(event, CircuitDestroyed)
    assert (event.circuit, event.reason, event.origin) == (
        handle,
        DestroyReason.LINK_LOST,
        DestroyOrigin.REMOTE,
    )
    assert FAILURE_DETECTION <= mesh.sim.now - start < FAILURE_DETECTION + 1.0
    for hop in path[:-1]:
        if hop != victim:
            assert mesh.node(hop).relayed_circuit_count == 0


def test_tagging_relay_is_caught_by_the_next_hop() -> None:
    mesh = _mesh(seed=21)
    client = "n00"
    path = _path(mesh, client, 3, seed=3)
    handle, _ = _build(mesh, client, path)
    tagger, next_hop = path[0], path[1]

    def tag(port: object, cell: bytes) -> bytes:
        if port == next_hop and parse_cell(cell).command is CellCommand.RELAY:
            return cell[:200] + bytes([cell[200] ^ 0x20]) + cell[201:]
        return cell

    mesh.endpoints[tagger].rewrite = tag
    mesh.node(client).send_relay_message(handle, RelayKind.E2E_MESSAGE, b"who am I?", mesh.sim.now)
    mesh.sim.poke(client)
    assert mesh.sim.run_until(lambda: bool(mesh.events[client]), timeout=5.0)
    (event,) = mesh.take(client, CircuitDestroyed)
    assert isinstance(event, CircuitDestroyed) and event.reason is DestroyReason.PROTOCOL
    assert [type(e) for e in mesh.endpoints[next_hop].errors] == [AuthenticationFailed]
    mesh.sim.run(until=mesh.sim.now + 1.0)
    assert not mesh.take(path[-1], RelayMessageReceived)
    assert [type(e) for e in mesh.take(path[-1], CircuitDestroyed)] == [CircuitDestroyed]


@pytest.mark.parametrize("hops", [2, 3])
def test_demo_tells_the_whole_story(hops: int, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from zmesh.sim.demo import run

    assert run(argparse.Namespace(seed=4, nodes=10, hops=hops)) == 0
    out = capsys.readouterr().out
    assert "circuit built" in out
    assert "receives E2E_MESSAGE: 'hello from the edge'" in out
    assert "receives E2E_MESSAGE: 'hello back, whoever you are'" in out
    assert f"({hops} hops" in out
    assert "0 protocol errors" in out
