"""Tetrys links in the virtual-time simulator: random and bursty loss, reordering, lost feedback.

Every cell must arrive byte-exact and in order; recovery delays are measured (the time from a
cell's sending to its delivery, minus the one-way latency) and bounded loosely: Tetrys
recovers without waiting for a retransmission round trip in most cases.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable
from dataclasses import dataclass, field

import pytest

from zmesh.sansio.tetrys import CellReceived, CellsLost, TetrysLink
from zmesh.sim import GilbertElliott, LinkProfile, Simulator

PORT = "tetrys"
CELL = 1024


@dataclass
class LinkNode:
    """Simulator endpoint around one TetrysLink; records what it delivers and when."""

    link: TetrysLink
    received: list[tuple[float, bytes, bool]] = field(default_factory=list)
    lost: int = 0

    def receive(self, port: Hashable, data: bytes, now: float) -> None:
        self.link.receive_datagram(data, now)
        self._collect(now)

    def transmit(self, now: float) -> list[tuple[Hashable, bytes]]:
        return [(PORT, d) for d in self.link.datagrams_to_send(now)]

    def get_timer(self) -> float | None:
        return self.link.get_timer()

    def handle_timer(self, now: float) -> None:
        self.link.handle_timer(now)
        self._collect(now)

    def _collect(self, now: float) -> None:
        while (e := self.link.next_event()) is not None:
            if isinstance(e, CellReceived):
                self.received.append((now, e.cell, e.recovered))
            elif isinstance(e, CellsLost):
                self.lost += e.count


def make_cell(i: int) -> bytes:
    head = i.to_bytes(4, "big")
    return head + bytes((i * 7 + k) & 0xFF for k in range(CELL - 4))


@dataclass
class Run:
    a: LinkNode
    b: LinkNode
    sent_at: list[float]
    latency: float

    def recovery_delays(self) -> list[float]:
        return [
            t - self.sent_at[int.from_bytes(cell[:4], "big")] - self.latency
            for t, cell, recovered in self.b.received
            if recovered
        ]


def run_link(
    profile: LinkProfile,
    *,
    reverse: LinkProfile | None = None,
    cells: int = 1500,
    interval: float = 0.001,
    seed: int = 1,
    schedule_profile: list[tuple[float, LinkProfile]] | None = None,
) -> tuple[Simulator, Run]:
    sim = Simulator(seed=seed)
    a = LinkNode(TetrysLink(random=sim.rng.randbytes))
    b = LinkNode(TetrysLink(random=sim.rng.randbytes))
    sim.add_node("a", a)
    sim.add_node("b", b)
    link = sim.connect("a", PORT, "b", PORT, profile, reverse=reverse or profile)
    sent_at: list[float] = []

    def send(i: int) -> None:
        sent_at.append(sim.now)
        a.link.send_cell(make_cell(i), sim.now)
        sim.poke("a")

    for i in range(cells):
        sim.schedule(i * interval, lambda i=i: send(i))
    for at, new_profile in schedule_profile or []:
        sim.schedule(at, lambda p=new_profile: link.set_profile(p, reverse=reverse or p))
    sim.run_until(lambda: len(b.received) + b.lost >= cells, timeout=cells * interval + 30.0)
    return sim, Run(a, b, sent_at, profile.latency)


def assert_all_delivered(run: Run, cells: int) -> None:
    assert run.b.lost == 0
    got = [cell for _, cell, _ in run.b.received]
    assert len(got) == cells
    assert got == [make_cell(i) for i in range(cells)]  # byte-exact and in order


@pytest.mark.parametrize("loss", [0.01, 0.05, 0.15, 0.30])
def test_random_loss_with_reordering(loss: float) -> None:
    profile = LinkProfile(latency=0.02, jitter=0.002, loss=loss, reorder=0.02)
    _, run = run_link(profile)
    assert_all_delivered(run, 1500)
    delays = run.recovery_delays()
    assert delays, "losses must have been recovered from coded packets"
    # most recoveries happen before a retransmission could have arrived (one RTT = 40 ms)
    assert statistics.median(delays) < 0.04
    assert run.a.link.stats.repair_ratio > 0


def test_bursty_gilbert_elliott_loss() -> None:
    model = GilbertElliott(p_good_to_bad=0.01, p_bad_to_good=0.25, loss_good=0.005, loss_bad=0.7)
    profile = LinkProfile(latency=0.015, jitter=0.001, loss_model=model)
    _, run = run_link(profile, cells=2000)
    assert_all_delivered(run, 2000)
    assert run.b.link.stats.recovered > 20


def test_feedback_loss_is_tolerated() -> None:
    forward = LinkProfile(latency=0.02, loss=0.05)
    backward = LinkProfile(latency=0.02, loss=0.5)  # half the window updates are lost
    _, run = run_link(forward, reverse=backward)
    assert_all_delivered(run, 1500)


def test_repair_rate_follows_changing_loss() -> None:
    clean = LinkProfile(latency=0.01)
    lossy = LinkProfile(latency=0.01, loss=0.1)
    sim = Simulator(seed=3)
    a = LinkNode(TetrysLink(random=sim.rng.randbytes))
    b = LinkNode(TetrysLink(random=sim.rng.randbytes))
    sim.add_node("a", a)
    sim.add_node("b", b)
    link = sim.connect("a", PORT, "b", PORT, clean)
    ratios: list[tuple[float, float, bool]] = []

    def send(i: int) -> None:
        a.link.send_cell(make_cell(i), sim.now)
        sim.poke("a")
        if i % 100 == 0:
            s = a.link.stats
            ratios.append((sim.now, s.repair_ratio, s.idle))

    for i in range(3000):
        sim.schedule(i * 0.001, lambda i=i: send(i))
    sim.schedule(1.0, lambda: link.set_profile(lossy))
    sim.schedule(2.0, lambda: link.set_profile(clean))
    sim.run(until=4.0)
    before = [r for t, r, _ in ratios if t < 1.0]
    during = [r for t, r, _ in ratios if 1.2 <= t < 2.0]
    after = ratios[-1]
    assert max(before) == 0.0  # idle on a clean link: no coded packets at all
    assert min(during) > 0.05  # reacted within 200 packets (about a dozen window updates)
    assert after[2] and after[1] == 0.0  # back to idle
    assert [c for _, c, _ in b.received] == [make_cell(i) for i in range(3000)]
