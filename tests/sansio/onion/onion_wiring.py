"""Hand-wired OnionNodes for unit tests: reliable in-order links, no simulator, no clock."""

from __future__ import annotations

import random as random_module
from collections.abc import Callable
from dataclasses import dataclass, field

from zmesh.sansio.onion import OnionConfig, OnionEvent, OnionNode, RouteHop
from zmesh.sansio.onion.keyring import SphinxKeyRing
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY
from zmesh.sansio.wire import ProtocolError

Tamper = Callable[[str, str, bytes], bytes]


@dataclass
class Wiring:
    """Nodes named ``n0``..; link ids are ``(me, peer)`` tuples; ``pump`` moves every cell."""

    count: int
    seed: int = 1
    now: float = 0.0
    config: OnionConfig | None = None
    nodes: dict[str, OnionNode] = field(default_factory=dict)
    events: dict[str, list[OnionEvent]] = field(default_factory=dict)
    errors: dict[str, list[ProtocolError]] = field(default_factory=dict)
    tamper: Tamper | None = None  # (from, to, cell) -> cell, to play a hostile link or relay
    cells: dict[tuple[str, str], int] = field(default_factory=dict)
    # True: move cells as the runtime does, in runs (blocks_to_send -> receive_block).
    blocks: bool = False

    def __post_init__(self) -> None:
        rng = random_module.Random(self.seed)
        for i in range(self.count):
            name = f"n{i}"
            node_random = random_module.Random(rng.getrandbits(64)).randbytes
            ring = SphinxKeyRing(ZMESH_GEOMETRY, self.now, random=node_random)
            node_id = bytes([i + 1]) * 32
            self.nodes[name] = OnionNode(node_id, ring, random=node_random, config=self.config)
            self.events[name] = []
            self.errors[name] = []

    def name_of(self, node_id: bytes) -> str:
        return next(n for n, node in self.nodes.items() if node.node_id == node_id)

    def connect(self, a: str, b: str) -> None:
        self.nodes[a].link_up((a, b), self.nodes[b].node_id, self.now)
        self.nodes[b].link_up((b, a), self.nodes[a].node_id, self.now)

    def disconnect(self, a: str, b: str) -> None:
        self.nodes[a].link_down((a, b), self.now)
        self.nodes[b].link_down((b, a), self.now)

    def route(self, *names: str) -> list[RouteHop]:
        hops = []
        for name in names:
            node = self.nodes[name]
            epoch = node.keyring.epoch_at(self.now)
            hops.append(RouteHop(node.node_id, node.keyring.public_keys(self.now)[epoch], epoch))
        return hops

    def pump(self, max_rounds: int = 100_000) -> None:
        for _ in range(max_rounds):
            moved = False
            for name, node in self.nodes.items():
                while (event := node.next_event()) is not None:
                    self.events[name].append(event)
                if self.blocks:
                    moved = self._pump_blocks(name, node) or moved
                    continue
                for (src, dst), cell in node.cells_to_send():
                    moved = True
                    assert src == name
                    self.cells[(src, dst)] = self.cells.get((src, dst), 0) + 1
                    if self.tamper is not None:
                        cell = self.tamper(src, dst, cell)
                    try:
                        self.nodes[dst].receive_cell((dst, src), cell, self.now)
                    except ProtocolError as exc:
                        self.errors[dst].append(exc)
            if not moved:
                for name, node in self.nodes.items():
                    while (event := node.next_event()) is not None:
                        self.events[name].append(event)
                return
        raise AssertionError("wiring never went quiet")

    def _pump_blocks(self, name: str, node: OnionNode) -> bool:
        """One node's queued output, consecutive entries for one peer joined into a block."""
        grouped: list[tuple[str, list[bytes]]] = []
        for (src, dst), data in node.blocks_to_send():
            assert src == name and len(data) % 1024 == 0
            cells = [data[i : i + 1024] for i in range(0, len(data), 1024)]
            self.cells[(src, dst)] = self.cells.get((src, dst), 0) + len(cells)
            if self.tamper is not None:
                cells = [self.tamper(src, dst, c) for c in cells]
            if grouped and grouped[-1][0] == dst:
                grouped[-1][1].extend(cells)
            else:
                grouped.append((dst, cells))
        for dst, cells in grouped:
            self.errors[dst].extend(
                self.nodes[dst].receive_block((dst, name), b"".join(cells), self.now)
            )
        return bool(grouped)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for node in self.nodes.values():
            deadline = node.get_timer()
            if deadline is not None and deadline <= self.now:
                node.handle_timer(self.now)
        self.pump()

    def take(self, name: str, kind: type) -> list:  # type: ignore[type-arg]
        found = [e for e in self.events[name] if isinstance(e, kind)]
        self.events[name] = [e for e in self.events[name] if not isinstance(e, kind)]
        return found
