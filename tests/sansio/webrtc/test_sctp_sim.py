"""Data channels through the virtual-time network simulator (zmesh.sim): loss, jitter,
reordering, bandwidth limits, bursty loss and a dead peer."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Hashable

import pytest

from zmesh.sansio.webrtc.datachannel import (
    AssociationClosed,
    BufferedAmountLow,
    ChannelOpened,
    ChannelState,
    DataChannelEndpoint,
    DataChannelEvent,
    MessageReceived,
)
from zmesh.sansio.webrtc.sctp import SctpAssociation, SendBufferFull
from zmesh.sansio.wire import ProtocolError

sim_mod = pytest.importorskip("zmesh.sim")
GilbertElliott = sim_mod.GilbertElliott
LinkProfile = sim_mod.LinkProfile
Simulator = sim_mod.Simulator

PORT = "dtls"


class Node:
    """Adapts a DataChannelEndpoint to the simulator's Endpoint protocol, with an app-side
    outbox that respects back-pressure (refill on BufferedAmountLow)."""

    def __init__(self, endpoint: DataChannelEndpoint) -> None:
        self.dc = endpoint
        self.events: list[DataChannelEvent] = []
        self.outbox: deque[tuple[int, bytes]] = deque()
        self.rejected = 0

    def _drain_events(self, now: float) -> None:
        while (event := self.dc.next_event()) is not None:
            self.events.append(event)
        self._push(now)

    def _push(self, now: float) -> None:
        while self.outbox:
            channel_id, data = self.outbox[0]
            if self.dc.state(channel_id) is not ChannelState.OPEN:
                return
            try:
                self.dc.send(channel_id, data, now)
            except SendBufferFull:
                return
            self.outbox.popleft()

    def receive(self, port: Hashable, data: bytes, now: float) -> None:
        try:
            self.dc.receive_data(data, now)
        except ProtocolError:
            self.rejected += 1
        self._drain_events(now)

    def transmit(self, now: float) -> list[tuple[Hashable, bytes]]:
        self._drain_events(now)
        return [(PORT, p) for p in self.dc.data_to_send(now)]

    def get_timer(self) -> float | None:
        return self.dc.get_timer()

    def handle_timer(self, now: float) -> None:
        self.dc.handle_timer(now)
        self._drain_events(now)

    def messages(self) -> list[MessageReceived]:
        return [e for e in self.events if isinstance(e, MessageReceived)]


def build(
    seed: int,
    forward: LinkProfile,
    backward: LinkProfile | None = None,
) -> tuple[Simulator, Node, Node]:
    rng = random.Random(seed)
    a = Node(
        DataChannelEndpoint(
            SctpAssociation(is_client=True, random=rng.randbytes), is_dtls_client=True
        )
    )
    b = Node(
        DataChannelEndpoint(
            SctpAssociation(is_client=False, random=rng.randbytes), is_dtls_client=False
        )
    )
    sim = Simulator(seed=seed)
    sim.add_node("a", a)
    sim.add_node("b", b)
    sim.connect("a", PORT, "b", PORT, forward, reverse=backward)
    a.dc.connect(0.0)
    b.dc.connect(0.0)
    sim.poke("a")
    sim.poke("b")
    return sim, a, b


def test_reliable_ordered_transfer_over_lossy_reordering_link() -> None:
    profile = LinkProfile(
        latency=0.02, jitter=0.004, loss=0.05, reorder=0.1, bandwidth_bps=20e6, queue_limit=200_000
    )
    sim, a, b = build(11, profile)
    chan = a.dc.create_channel("bulk", now=sim.now)
    sim.poke("a")
    msgs = [random.Random(i).randbytes(16_384) for i in range(128)]  # 2 MiB
    a.outbox.extend((chan.id, m) for m in msgs)
    sim.poke("a")
    assert sim.run_until(lambda: len(b.messages()) == len(msgs), timeout=120)
    assert [m.data for m in b.messages()] == msgs
    stats = a.dc.association.stats
    assert stats.retransmissions > 0
    assert sim.now < 30  # 2 MiB at 20 Mbit/s is ~0.9 s; loss recovery must not stall


def test_bursty_loss_partially_reliable_channel_keeps_flowing() -> None:
    bursty = LinkProfile(latency=0.03, loss_model=GilbertElliott(0.02, 0.3, 0.0, 0.8))
    sim, a, b = build(5, bursty, LinkProfile(latency=0.03))
    chan = a.dc.create_channel("game", ordered=False, max_packet_lifetime=100, now=sim.now)
    sim.poke("a")
    assert sim.run_until(lambda: any(isinstance(e, ChannelOpened) for e in b.events), timeout=30)
    start = sim.now
    for i in range(300):
        sim.schedule(
            start + i * 0.01,
            lambda i=i: (a.dc.send(chan.id, b"%04d" % i + bytes(200), sim.now), sim.poke("a")),
        )
    sim.run(until=start + 10)
    got = b.messages()
    assert 150 <= len(got) < 300
    assert a.dc.association.stats.abandoned_messages > 0
    assert a.dc.association.stats.flight_size == 0


def test_bidirectional_with_back_pressure() -> None:
    profile = LinkProfile(latency=0.005, loss=0.01, bandwidth_bps=50e6, queue_limit=300_000)
    sim, a, b = build(7, profile)
    ca = a.dc.create_channel("ab", now=sim.now)
    a.dc.set_buffered_amount_low_threshold(ca.id, 64_000)
    sim.poke("a")
    assert sim.run_until(lambda: any(isinstance(e, ChannelOpened) for e in b.events), timeout=10)
    a.outbox.extend((ca.id, bytes([i % 256]) * 60_000) for i in range(80))  # 4.8 MB
    b.outbox.extend((ca.id, bytes([i % 256]) * 1000) for i in range(500))
    sim.poke("a")
    sim.poke("b")
    assert sim.run_until(lambda: len(b.messages()) == 80 and len(a.messages()) == 500, timeout=120)
    assert [m.data[0] for m in b.messages()] == [i % 256 for i in range(80)]
    assert any(isinstance(e, BufferedAmountLow) for e in a.events)


def test_dead_peer_is_detected() -> None:
    sim, a, _b = build(3, LinkProfile(latency=0.01))
    assert sim.run_until(lambda: a.dc.association.is_established, timeout=10)
    sim.fail_node("b")
    chan = a.dc.create_channel("x", now=sim.now)
    a.dc.send(chan.id, b"into the void", sim.now)
    sim.poke("a")
    assert sim.run_until(
        lambda: any(isinstance(e, AssociationClosed) for e in a.events), timeout=3600
    )
