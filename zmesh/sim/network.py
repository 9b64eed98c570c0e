"""A deterministic virtual-time network simulator for sans-IO endpoints.

The simulator is the driver DESIGN.md §3 promises: it moves bytes and time between sans-IO
objects and nothing else. Each node is an :class:`Endpoint` (a thin adapter around one or more
state machines); links between nodes have latency, jitter, random or bursty loss, reordering,
a bandwidth limit with a bounded queue, and can fail. One ``seed`` fixes every random choice,
so a run is reproducible event for event, and minutes of mesh life pass in milliseconds because
nothing waits on a real clock.

Event loop: a heap of (time, sequence, action). After every input to a node (a delivered
datagram, a fired timer, :meth:`Simulator.poke`) the simulator drains the node's
``transmit(now)`` and re-reads its ``get_timer()``; stale timers are skipped by generation.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Protocol

__all__ = [
    "Endpoint",
    "GilbertElliott",
    "LinkProfile",
    "DirectionStats",
    "SimLink",
    "Simulator",
    "SimulationError",
]

#: A node whose ``transmit`` keeps producing output without end is a bug; stop it loudly.
MAX_TRANSMIT_ROUNDS = 10_000


class SimulationError(Exception):
    """The simulation itself was misused or ran away (not a protocol error)."""


class Endpoint(Protocol):
    """What the simulator drives: the sans-IO surface, addressed by local port."""

    def receive(self, port: Hashable, data: bytes, now: float) -> None: ...

    def transmit(self, now: float) -> list[tuple[Hashable, bytes]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state bursty loss (Gilbert-Elliott): a good and a bad state with their own loss."""

    p_good_to_bad: float
    p_bad_to_good: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    @property
    def mean_loss(self) -> float:
        """Stationary loss rate, for reporting."""
        total = self.p_good_to_bad + self.p_bad_to_good
        if total == 0:
            return self.loss_good
        bad = self.p_good_to_bad / total
        return bad * self.loss_bad + (1 - bad) * self.loss_good


@dataclass(frozen=True)
class LinkProfile:
    """How one direction of a link behaves. ``ordered=True`` makes a reliable FIFO pipe."""

    latency: float = 0.010
    jitter: float = 0.0
    loss: float = 0.0
    loss_model: GilbertElliott | None = None
    reorder: float = 0.0  # probability that a datagram takes an extra random delay
    bandwidth_bps: float | None = None
    ordered: bool = False
    queue_limit: int = 1 << 20  # bytes waiting for the wire before tail drop

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0:
            raise SimulationError("latency and jitter must be non-negative")
        if not 0.0 <= self.loss <= 1.0 or not 0.0 <= self.reorder <= 1.0:
            raise SimulationError("loss and reorder are probabilities")
        if self.ordered and (self.loss or self.loss_model or self.reorder):
            raise SimulationError("an ordered link is reliable: no loss or reordering")


@dataclass
class DirectionStats:
    sent: int = 0
    delivered: int = 0
    bytes_delivered: int = 0
    dropped_loss: int = 0
    dropped_queue: int = 0
    dropped_down: int = 0


@dataclass
class _Direction:
    src: str
    dst: str
    dst_port: Hashable
    profile: LinkProfile
    stats: DirectionStats = field(default_factory=DirectionStats)
    wire_free_at: float = 0.0
    last_arrival: float = 0.0
    bad_state: bool = False
    up: bool = True  # shared by both directions through SimLink.up


class SimLink:
    """A bidirectional link; each direction has its own profile, state and counters."""

    def __init__(self, forward: _Direction, backward: _Direction) -> None:
        self._forward = forward
        self._backward = backward

    @property
    def up(self) -> bool:
        return self._forward.up

    @up.setter
    def up(self, value: bool) -> None:
        self._forward.up = self._backward.up = value

    @property
    def endpoints(self) -> tuple[str, str]:
        return self._forward.src, self._forward.dst

    @property
    def forward_stats(self) -> DirectionStats:
        """Counters of the direction from the first node given to ``connect``."""
        return self._forward.stats

    @property
    def backward_stats(self) -> DirectionStats:
        return self._backward.stats

    def direction_from(self, node: str) -> DirectionStats:
        return self._forward.stats if self._forward.src == node else self._backward.stats

    def set_profile(self, profile: LinkProfile, *, reverse: LinkProfile | None = None) -> None:
        """Change the link's behaviour mid-run (e.g. loss appears)."""
        self._forward.profile = profile
        self._backward.profile = reverse if reverse is not None else profile


@dataclass
class _Node:
    name: str
    endpoint: Endpoint
    alive: bool = True
    timer_at: float | None = None
    timer_generation: int = 0
    ports: dict[Hashable, _Direction] = field(default_factory=dict)


class Simulator:
    """Virtual clock, nodes, links and the event loop. See the module docstring."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.events_processed = 0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._nodes: dict[str, _Node] = {}
        self._links: list[SimLink] = []

    # -- topology ------------------------------------------------------------------------

    def add_node(self, name: str, endpoint: Endpoint) -> None:
        if name in self._nodes:
            raise SimulationError(f"node {name!r} exists")
        self._nodes[name] = _Node(name, endpoint)
        self._schedule_timer(self._nodes[name])

    def endpoint(self, name: str) -> Endpoint:
        return self._node(name).endpoint

    @property
    def node_names(self) -> list[str]:
        return list(self._nodes)

    def connect(
        self,
        a: str,
        port_a: Hashable,
        b: str,
        port_b: Hashable,
        profile: LinkProfile | None = None,
        *,
        reverse: LinkProfile | None = None,
    ) -> SimLink:
        """Join ``a``'s ``port_a`` to ``b``'s ``port_b``; ``reverse`` is b→a if it differs."""
        node_a, node_b = self._node(a), self._node(b)
        if port_a in node_a.ports or port_b in node_b.ports:
            raise SimulationError("port already connected")
        forward_profile = profile or LinkProfile()
        forward = _Direction(a, b, port_b, forward_profile)
        backward = _Direction(b, a, port_a, reverse or forward_profile)
        node_a.ports[port_a] = forward
        node_b.ports[port_b] = backward
        link = SimLink(forward, backward)
        self._links.append(link)
        return link

    def set_link_up(self, link: SimLink, up: bool) -> None:
        link.up = up

    def fail_node(self, name: str) -> None:
        """The node dies: it stops receiving, sending and firing timers."""
        node = self._node(name)
        node.alive = False
        node.timer_generation += 1

    # -- driving -------------------------------------------------------------------------

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` at virtual time ``at`` (tests use it to script commands)."""
        heapq.heappush(self._queue, (max(at, self.now), next(self._sequence), action))

    def poke(self, name: str) -> None:
        """Drain a node after a command was called on it from outside the event loop."""
        node = self._node(name)
        if node.alive:
            self._drain(node)

    def run(self, until: float | None = None, *, max_events: int | None = None) -> None:
        """Process events up to virtual time ``until`` (or until the queue is empty)."""
        budget = max_events
        while self._queue:
            at = self._queue[0][0]
            if until is not None and at > until:
                break
            if budget is not None:
                if budget <= 0:
                    raise SimulationError(f"more than {max_events} events")
                budget -= 1
            self._step()
        if until is not None and until > self.now:
            self.now = until

    def run_until(
        self, condition: Callable[[], bool], timeout: float, *, max_events: int = 50_000_000
    ) -> bool:
        """Run until ``condition()`` holds (checked after every event) or ``timeout`` passes."""
        deadline = self.now + timeout
        for _ in range(max_events):
            if condition():
                return True
            if not self._queue or self._queue[0][0] > deadline:
                self.now = max(self.now, deadline)
                return condition()
            self._step()
        raise SimulationError(f"more than {max_events} events")

    def _step(self) -> None:
        at, _, action = heapq.heappop(self._queue)
        self.now = at
        self.events_processed += 1
        action()

    # -- internals -----------------------------------------------------------------------

    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise SimulationError(f"no node {name!r}") from None

    def _drain(self, node: _Node) -> None:
        for _ in range(MAX_TRANSMIT_ROUNDS):
            out = node.endpoint.transmit(self.now)
            if not out:
                break
            for port, data in out:
                direction = node.ports.get(port)
                if direction is None:
                    raise SimulationError(f"{node.name} sent on unconnected port {port!r}")
                self._send(direction, bytes(data))
        else:
            raise SimulationError(f"{node.name} never stopped transmitting")
        self._schedule_timer(node)

    def _schedule_timer(self, node: _Node) -> None:
        deadline = node.endpoint.get_timer()
        if deadline == node.timer_at:
            return
        node.timer_at = deadline
        node.timer_generation += 1
        if deadline is None:
            return
        generation = node.timer_generation

        def fire() -> None:
            if not node.alive or generation != node.timer_generation:
                return
            node.timer_at = None
            node.endpoint.handle_timer(self.now)
            self._drain(node)

        self.schedule(deadline, fire)

    def _lost(self, direction: _Direction) -> bool:
        profile = direction.profile
        model = profile.loss_model
        if model is not None:
            if direction.bad_state:
                if self.rng.random() < model.p_bad_to_good:
                    direction.bad_state = False
            elif self.rng.random() < model.p_good_to_bad:
                direction.bad_state = True
            rate = model.loss_bad if direction.bad_state else model.loss_good
            return self.rng.random() < rate
        return profile.loss > 0 and self.rng.random() < profile.loss

    def _send(self, direction: _Direction, data: bytes) -> None:
        stats = direction.stats
        stats.sent += 1
        profile = direction.profile
        if not direction.up or not self._nodes[direction.src].alive:
            stats.dropped_down += 1
            return
        departure = self.now
        if profile.bandwidth_bps:
            backlog_bytes = max(0.0, direction.wire_free_at - self.now) * profile.bandwidth_bps / 8
            if backlog_bytes + len(data) > profile.queue_limit:
                stats.dropped_queue += 1
                return
            serialisation = len(data) * 8 / profile.bandwidth_bps
            departure = max(self.now, direction.wire_free_at) + serialisation
            direction.wire_free_at = departure
        if self._lost(direction):
            stats.dropped_loss += 1
            return
        delay = profile.latency
        if profile.jitter:
            delay += self.rng.uniform(-profile.jitter, profile.jitter)
        if profile.reorder and self.rng.random() < profile.reorder:
            delay += self.rng.uniform(0.0, 2.0 * profile.latency + profile.jitter)
        arrival = departure + max(0.0, delay)
        if profile.ordered:
            arrival = max(arrival, direction.last_arrival)
        direction.last_arrival = max(direction.last_arrival, arrival)
        self.schedule(arrival, lambda: self._deliver(direction, data))

    def _deliver(self, direction: _Direction, data: bytes) -> None:
        node = self._nodes[direction.dst]
        if not node.alive or not direction.up:
            direction.stats.dropped_down += 1
            return
        direction.stats.delivered += 1
        direction.stats.bytes_delivered += len(data)
        node.endpoint.receive(direction.dst_port, data, self.now)
        self._drain(node)


def lossless(profile: LinkProfile) -> LinkProfile:
    """The same profile with loss and reordering removed (handy for feedback paths)."""
    return replace(profile, loss=0.0, loss_model=None, reorder=0.0)
