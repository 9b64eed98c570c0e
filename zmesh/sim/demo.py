"""``zmesh demo`` (for now): an onion mesh in the virtual-time simulator.

It wires :class:`~zmesh.sansio.onion.OnionNode` state machines into
:class:`~zmesh.sim.Simulator` nodes over reliable, ordered cell links, builds a circuit with one
Sphinx packet, sends a message across it and back, and prints what every hop saw. Nothing here
touches a socket or the wall clock: the same seed prints the same story.

:class:`OnionEndpoint` and :class:`OnionMesh` are also what ``tests/sim/test_onion_mesh.py``
drives (10 MB each way, dying relays, tagging relays).
"""

from __future__ import annotations

import argparse
import hashlib
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from zmesh.sansio.onion import (
    CellCommand,
    CircuitBuilt,
    CircuitDestroyed,
    CircuitHandle,
    CircuitOpened,
    DestroyReason,
    LinkNeeded,
    OnionConfig,
    OnionEvent,
    OnionNode,
    RelayKind,
    RelayMessageReceived,
    RouteHop,
)
from zmesh.sansio.onion.cells import parse_cell
from zmesh.sansio.onion.keyring import SphinxKeyRing
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY
from zmesh.sansio.wire import ProtocolError
from zmesh.sim.network import LinkProfile, SimLink, Simulator

__all__ = ["OnionEndpoint", "OnionMesh", "run"]

#: Reliable, ordered cell links (the runtime gets this from SCTP/WebSocket).
CELL_LINK = LinkProfile(latency=0.015, jitter=0.004, ordered=True)
#: Time a node takes to notice a dead neighbour (keepalive timeout).
FAILURE_DETECTION = 1.0
#: Time to set up a new link when a relay asks for one (ICE + DTLS in real life).
LINK_SETUP = 0.08


class OnionEndpoint:
    """Adapts one OnionNode to the simulator's Endpoint protocol; ports are link ids."""

    def __init__(
        self, name: str, node: OnionNode, on_event: Callable[[str, OnionEvent], None]
    ) -> None:
        self.name = name
        self.node = node
        self.errors: list[ProtocolError] = []
        self.before_transmit: Callable[[float], None] | None = None
        # A hook to play a hostile relay: rewrite (port, cell) on the way out.
        self.rewrite: Callable[[Hashable, bytes], bytes] | None = None
        self._on_event = on_event

    def receive(self, port: Hashable, data: bytes, now: float) -> None:
        try:
            self.node.receive_cell(port, data, now)
        except ProtocolError as exc:
            self.errors.append(exc)
        self.drain_events()

    def transmit(self, now: float) -> list[tuple[Hashable, bytes]]:
        if self.before_transmit is not None:
            self.before_transmit(now)
            self.drain_events()
        cells = self.node.cells_to_send()
        if self.rewrite is not None:
            cells = [(port, self.rewrite(port, cell)) for port, cell in cells]
        return cells

    def get_timer(self) -> float | None:
        return self.node.get_timer()

    def handle_timer(self, now: float) -> None:
        self.node.handle_timer(now)
        self.drain_events()

    def drain_events(self) -> None:
        while (event := self.node.next_event()) is not None:
            self._on_event(self.name, event)


@dataclass
class OnionMesh:
    """Named onion nodes in one simulator, linked on demand (LinkNeeded) and at random."""

    sim: Simulator
    names: list[str]
    config: OnionConfig | None = None
    profile: LinkProfile = CELL_LINK
    endpoints: dict[str, OnionEndpoint] = field(default_factory=dict)
    events: dict[str, list[OnionEvent]] = field(default_factory=dict)
    links: dict[frozenset[str], SimLink] = field(default_factory=dict)
    on_event: Callable[[str, OnionEvent], None] | None = None
    keep_messages: bool = True  # False: RelayMessageReceived only goes to on_event (bulk runs)

    def __post_init__(self) -> None:
        rng = random.Random(self.sim.rng.getrandbits(64))
        for name in self.names:
            node_random = random.Random(rng.getrandbits(64)).randbytes
            ring = SphinxKeyRing(ZMESH_GEOMETRY, self.sim.now, random=node_random)
            node_id = hashlib.sha256(b"zmesh-sim-node:" + name.encode()).digest()
            node = OnionNode(node_id, ring, random=node_random, config=self.config)
            endpoint = OnionEndpoint(name, node, self._event)
            self.endpoints[name] = endpoint
            self.events[name] = []
            self.sim.add_node(name, endpoint)
        self._by_id = {self.endpoints[n].node.node_id: n for n in self.names}

    def node(self, name: str) -> OnionNode:
        return self.endpoints[name].node

    def name_of(self, node_id: bytes) -> str:
        return self._by_id[node_id]

    def connect(self, a: str, b: str) -> None:
        key = frozenset((a, b))
        if key in self.links or a == b:
            return
        # Port names are the peer's name: each node's link ids are its neighbours' names.
        self.links[key] = self.sim.connect(a, b, b, a, self.profile)
        now = self.sim.now
        self.node(a).link_up(b, self.node(b).node_id, now)
        self.node(b).link_up(a, self.node(a).node_id, now)
        for name in (a, b):
            self.endpoints[name].drain_events()
            self.sim.poke(name)

    def connect_randomly(self, degree: int) -> None:
        """A ring (so the mesh is connected) plus random chords up to about ``degree``."""
        rng = self.sim.rng
        for a, b in zip(self.names, self.names[1:] + self.names[:1], strict=True):
            self.connect(a, b)
        for a in self.names:
            while sum(1 for k in self.links if a in k) < degree:
                self.connect(a, rng.choice(self.names))

    def neighbours(self, name: str) -> list[str]:
        return sorted(next(iter(k - {name})) for k in self.links if name in k)

    def fail(self, name: str) -> None:
        """``name`` dies; its neighbours notice after FAILURE_DETECTION."""
        self.sim.fail_node(name)
        for peer in self.neighbours(name):

            def notice(peer: str = peer) -> None:
                self.node(peer).link_down(name, self.sim.now)
                self.endpoints[peer].drain_events()
                self.sim.poke(peer)

            self.sim.schedule(self.sim.now + FAILURE_DETECTION, notice)

    def route(self, names: list[str]) -> list[RouteHop]:
        hops = []
        for name in names:
            ring = self.node(name).keyring
            epoch = ring.epoch_at(self.sim.now)
            hops.append(
                RouteHop(self.node(name).node_id, ring.public_keys(self.sim.now)[epoch], epoch)
            )
        return hops

    def build(self, client: str, path: list[str], aead: str = "chacha20-poly1305") -> CircuitHandle:
        handle = self.node(client).build_circuit(self.route(path), self.sim.now, aead=aead)
        self.sim.poke(client)
        return handle

    def take(self, name: str, kind: type) -> list[OnionEvent]:
        found = [e for e in self.events[name] if isinstance(e, kind)]
        self.events[name] = [e for e in self.events[name] if not isinstance(e, kind)]
        return found

    def _event(self, name: str, event: OnionEvent) -> None:
        if isinstance(event, LinkNeeded):
            peer = self.name_of(event.peer_id)
            self.sim.schedule(self.sim.now + LINK_SETUP, lambda: self.connect(name, peer))
        if self.on_event is not None:
            self.on_event(name, event)
        if self.keep_messages or not isinstance(event, RelayMessageReceived):
            self.events[name].append(event)


# -- the demo --------------------------------------------------------------------------------


def _short(node_id: bytes) -> str:
    return node_id[:4].hex()


def run(args: argparse.Namespace) -> int:
    seed = int(getattr(args, "seed", 1))
    count = max(4, int(getattr(args, "nodes", None) or 8))
    hops = int(getattr(args, "hops", 2))
    if hops not in (2, 3):
        print("hops must be 2 or 3")
        return 2
    sim = Simulator(seed=seed)
    names = ["you"] + [f"relay{i:02d}" for i in range(1, count + 1)]
    lines: list[str] = []

    def narrate(name: str, event: OnionEvent) -> None:
        t = f"t={sim.now * 1000:7.1f} ms"
        if isinstance(event, LinkNeeded):
            lines.append(f"  {t}  {name} has no link to {mesh.name_of(event.peer_id)}: connecting")
        elif isinstance(event, CircuitOpened):
            lines.append(f"  {t}  {name} accepts the circuit as its last hop and answers CREATED")
        elif isinstance(event, CircuitBuilt):
            lines.append(
                f"  {t}  {name}: circuit built, every hop's key confirmed "
                f"(one round trip, {event.rtt * 1000:.1f} ms)"
            )
        elif isinstance(event, RelayMessageReceived):
            text = event.payload.decode(errors="replace")
            lines.append(f"  {t}  {name} receives {event.kind.name}: {text!r}")
        elif isinstance(event, CircuitDestroyed):
            lines.append(
                f"  {t}  {name}: circuit closed ({event.reason.name}, {event.origin.value})"
            )

    mesh = OnionMesh(sim, names, on_event=narrate)
    mesh.connect_randomly(degree=3)
    for name, endpoint in mesh.endpoints.items():
        endpoint.rewrite = _tracer(name, sim, lines)
    rng = random.Random(seed)
    relays = names[1:]
    first = rng.choice(mesh.neighbours("you"))
    rest = rng.sample([r for r in relays if r != first], hops - 1)
    path = [first, *rest]

    print(f"zmesh demo: {count} relays and you, simulated in virtual time (seed {seed})")
    print()
    print("nodes")
    for name in names:
        node = mesh.node(name)
        keys = node.keyring.public_keys(sim.now)
        epoch = node.keyring.epoch_at(sim.now)
        links = ", ".join(mesh.neighbours(name))
        print(
            f"  {name:<8} id {_short(node.node_id)}…  sphinx key {keys[epoch][:4].hex()}… "
            f"(epoch {epoch})  links: {links}"
        )
    print()
    print(f"path  you → {' → '.join(path)}   ({hops} hops, ChaCha20-Poly1305 cells)")
    print()
    print("building the circuit with one Sphinx packet")
    handle = mesh.build("you", path)
    sim.run_until(lambda: any(isinstance(e, CircuitBuilt) for e in mesh.events["you"]), 10.0)
    _flush(lines)
    if not mesh.take("you", CircuitBuilt):
        print("  the circuit did not come up")
        return 1
    exit_name = path[-1]
    opened = mesh.take(exit_name, CircuitOpened)[0]
    assert isinstance(opened, CircuitOpened)
    exit_handle = opened.circuit

    print()
    print("a message across every hop and a reply back")
    mesh.node("you").send_relay_message(
        handle, RelayKind.E2E_MESSAGE, b"hello from the edge", sim.now
    )
    sim.poke("you")
    sim.run_until(lambda: bool(mesh.events[exit_name]), 5.0)
    mesh.node(exit_name).send_relay_message(
        exit_handle, RelayKind.E2E_MESSAGE, b"hello back, whoever you are", sim.now
    )
    sim.poke(exit_name)
    sim.run_until(lambda: bool(mesh.events["you"]), 5.0)
    _flush(lines)

    print()
    print("cells per node (every cell is 1024 bytes on every link)")
    print(f"  {'node':<8} {'role':<10} {'sent':>5} {'recv':>5} {'fwd':>5} {'back':>5}")
    roles = {"you": "client", exit_name: "exit"} | {
        p: f"hop {i + 1}" for i, p in enumerate(path[:-1])
    }
    for name in ["you", *path]:
        stats = mesh.node(name).stats
        print(
            f"  {name:<8} {roles[name]:<10} {stats.cells_sent:>5} {stats.cells_received:>5} "
            f"{stats.relayed_forward:>5} {stats.relayed_backward:>5}"
        )
    print()
    print("closing the circuit")
    mesh.node("you").destroy_circuit(handle, DestroyReason.REQUESTED, sim.now)
    mesh.endpoints["you"].drain_events()
    sim.poke("you")
    sim.run(until=sim.now + 1.0)
    _flush(lines)
    errors = sum(len(e.errors) for e in mesh.endpoints.values())
    print()
    print(f"done: {sim.events_processed} simulated events, {errors} protocol errors")
    return 0 if errors == 0 else 1


_WHAT = {
    CellCommand.CREATE: "CREATE   (Sphinx header: peel one layer, forward the rest)",
    CellCommand.CREATED: "CREATED  (key shares + confirmations, one layer per hop)",
    CellCommand.RELAY: "RELAY",
    CellCommand.DESTROY: "DESTROY",
}


def _tracer(name: str, sim: Simulator, lines: list[str]) -> Callable[[Hashable, bytes], bytes]:
    """A rewrite hook that rewrites nothing: it narrates each cell a node sends."""

    def trace(port: Hashable, cell: bytes) -> bytes:
        parsed = parse_cell(cell)
        what = _WHAT.get(parsed.command, parsed.command.name)
        lines.append(
            f"  t={sim.now * 1000:7.1f} ms  {name} → {port}: {what}"
            f"  [circuit id {parsed.circuit_id:#010x}]"
        )
        return cell

    return trace


def _flush(lines: list[str]) -> None:
    for line in lines:
        print(line)
    lines.clear()
