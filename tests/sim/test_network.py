"""The simulator itself: timing, loss models, ordering, bandwidth, failure, determinism."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from zmesh.sim import GilbertElliott, LinkProfile, SimulationError, Simulator


class Recorder:
    """Sends scripted datagrams, records arrivals with their times, echoes if asked."""

    def __init__(self, echo: bool = False) -> None:
        self.outbox: list[tuple[Hashable, bytes]] = []
        self.received: list[tuple[float, Hashable, bytes]] = []
        self.echo = echo
        self.timer: float | None = None
        self.timer_fired: list[float] = []

    def receive(self, port: Hashable, data: bytes, now: float) -> None:
        self.received.append((now, port, data))
        if self.echo:
            self.outbox.append((port, data))

    def transmit(self, now: float) -> list[tuple[Hashable, bytes]]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        self.timer_fired.append(now)
        self.timer = None


def pair(profile: LinkProfile, seed: int = 1) -> tuple[Simulator, Recorder, Recorder]:
    sim = Simulator(seed)
    a, b = Recorder(), Recorder()
    sim.add_node("a", a)
    sim.add_node("b", b)
    sim.connect("a", "p", "b", "q", profile)
    return sim, a, b


def test_latency_and_echo_round_trip() -> None:
    sim = Simulator(1)
    a, b = Recorder(), Recorder(echo=True)
    sim.add_node("a", a)
    sim.add_node("b", b)
    sim.connect("a", 0, "b", 0, LinkProfile(latency=0.05))
    a.outbox.append((0, b"ping"))
    sim.poke("a")
    sim.run()
    assert b.received == [(pytest.approx(0.05), 0, b"ping")]
    assert a.received == [(pytest.approx(0.10), 0, b"ping")]


def test_timers_fire_at_their_deadline() -> None:
    sim = Simulator(1)
    a = Recorder()
    a.timer = 3.5
    sim.add_node("a", a)
    sim.run(until=10)
    assert a.timer_fired == [3.5]
    assert sim.now == 10


def test_bernoulli_loss_rate_is_close_to_profile() -> None:
    sim, a, b = pair(LinkProfile(latency=0.001, loss=0.2))
    a.outbox.extend(("p", bytes([i % 256])) for i in range(20_000))
    sim.poke("a")
    sim.run()
    lost = 20_000 - len(b.received)
    assert 0.18 < lost / 20_000 < 0.22


def test_gilbert_elliott_loss_is_bursty() -> None:
    model = GilbertElliott(p_good_to_bad=0.01, p_bad_to_good=0.2, loss_good=0.0, loss_bad=1.0)
    sim, a, b = pair(LinkProfile(latency=0.001, loss_model=model))
    n = 50_000
    a.outbox.extend(("p", i.to_bytes(4, "big")) for i in range(n))
    sim.poke("a")
    sim.run()
    got = {int.from_bytes(d, "big") for _, _, d in b.received}
    lost = [i for i in range(n) if i not in got]
    rate = len(lost) / n
    assert abs(rate - model.mean_loss) < 0.02
    runs = sum(1 for i, x in enumerate(lost) if i == 0 or lost[i - 1] != x - 1)
    assert len(lost) / runs > 3  # mean burst length ~ 1/p_bad_to_good = 5


def test_ordered_link_never_reorders_and_never_loses() -> None:
    sim, a, b = pair(LinkProfile(latency=0.01, jitter=0.009, ordered=True))
    a.outbox.extend(("p", i.to_bytes(4, "big")) for i in range(1000))
    sim.poke("a")
    sim.run()
    assert [int.from_bytes(d, "big") for _, _, d in b.received] == list(range(1000))


def test_reordering_happens_on_unordered_links() -> None:
    sim, a, b = pair(LinkProfile(latency=0.01, reorder=0.3))
    a.outbox.extend(("p", i.to_bytes(4, "big")) for i in range(1000))
    sim.poke("a")
    sim.run()
    order = [int.from_bytes(d, "big") for _, _, d in b.received]
    assert sorted(order) == list(range(1000))
    assert order != list(range(1000))


def test_bandwidth_serialises_and_queue_limit_drops() -> None:
    sim, a, b = pair(LinkProfile(latency=0.0, bandwidth_bps=8_000, queue_limit=10_000))
    a.outbox.extend(("p", bytes(1000)) for _ in range(20))
    sim.poke("a")
    sim.run()
    assert len(b.received) == 10
    assert b.received[-1][0] == pytest.approx(10.0)  # 10 kB at 1 kB/s


def test_failed_node_and_down_link_drop() -> None:
    sim, a, b = pair(LinkProfile(latency=0.01))
    link = sim.connect("a", "p2", "b", "q2", LinkProfile(latency=0.01))
    sim.set_link_up(link, False)
    a.outbox.extend([("p2", b"x"), ("p", b"y")])
    sim.poke("a")
    sim.fail_node("b")
    sim.run()
    assert b.received == []
    assert link.forward_stats.dropped_down == 1


def test_same_seed_same_run() -> None:
    def run(seed: int) -> list[tuple[float, Hashable, bytes]]:
        sim, a, b = pair(LinkProfile(latency=0.01, jitter=0.005, loss=0.1, reorder=0.1), seed)
        a.outbox.extend(("p", bytes([i])) for i in range(200))
        sim.poke("a")
        sim.run()
        return b.received

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_run_until_condition_and_timeout() -> None:
    sim, a, b = pair(LinkProfile(latency=1.0))
    a.outbox.append(("p", b"x"))
    sim.poke("a")
    assert not sim.run_until(lambda: bool(b.received), timeout=0.5)
    assert sim.run_until(lambda: bool(b.received), timeout=5)


def test_misuse_is_reported() -> None:
    sim, a, _ = pair(LinkProfile())
    with pytest.raises(SimulationError):
        sim.add_node("a", Recorder())
    with pytest.raises(SimulationError):
        LinkProfile(ordered=True, loss=0.1)
    a.outbox.append(("nowhere", b"x"))
    with pytest.raises(SimulationError):
        sim.poke("a")
