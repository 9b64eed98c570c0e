"""UdpEndpoint batching: GSO sends and GRO reads keep datagram boundaries and order, and sinks
hear end_of_batch once per wake-up (real loopback sockets)."""

from __future__ import annotations

import pytest
import trio

from zmesh.io_trio.udp import MAX_ROUTES, MAX_ROUTES_PER_SINK, UdpEndpoint
from zmesh.sansio.webrtc import stun

pytestmark = [pytest.mark.trio, pytest.mark.integration]

Address = tuple[str, int]


class Recorder:
    local_ufrag = "none"

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.batches = 0
        self.arrived = trio.Event()
        self.expected = 0

    def deliver(self, data: bytes, source: Address) -> None:
        self.datagrams.append(data)

    def end_of_batch(self) -> None:
        self.batches += 1
        if len(self.datagrams) >= self.expected:
            self.arrived.set()


@pytest.mark.parametrize("offload", [True, False])
async def test_send_many_keeps_boundaries_and_order(offload: bool) -> None:
    async with UdpEndpoint(("127.0.0.1", 0), offload=offload) as sender, \
            UdpEndpoint(("127.0.0.1", 0), offload=offload) as receiver:
        sink = Recorder()
        receiver.attach(sink)
        # Datagrams from the sender's address are routed to the sink.
        receiver._remember(sender.local_address, sink)
        datagrams = [bytes([30, i]) * 600 for i in range(60)]  # 60 equal sizes: two GSO runs
        datagrams += [bytes([31]) * 500, bytes([32]) * 1200, bytes([33]) * 7]
        sink.expected = len(datagrams)
        destination = receiver.local_address
        sent = sender.send_many([(d, destination) for d in datagrams], None)
        assert sent == len(datagrams)
        with trio.fail_after(5):
            await sink.arrived.wait()
        assert sink.datagrams == datagrams
        assert 1 <= sink.batches <= len(datagrams)
        assert sender.stats.sent == len(datagrams)
        assert receiver.stats.received == len(datagrams)


class _Named(Recorder):
    def __init__(self, ufrag: str) -> None:
        super().__init__()
        self.local_ufrag = ufrag


async def test_one_peer_cannot_fill_the_shared_route_table() -> None:
    """Review finding: a STUN request naming a connection's ufrag adds a route for its source
    before ICE checks its MESSAGE-INTEGRITY, into one table shared by every connection on the
    port. A peer (it knows our ufrag) sending checks from MAX_ROUTES source ports left no room,
    and every later connection's DTLS/SCTP datagrams were dropped as "no-route"."""
    endpoint = UdpEndpoint(("127.0.0.1", 0))
    victim, hostile = _Named("vict"), _Named("evil")
    endpoint.attach(hostile)
    endpoint.attach(victim)
    forged = stun.binding_request(bytes(12), username="evil:x", key=b"wrong", priority=1,
                                  controlling=True, tie_breaker=1)
    for port in range(1, MAX_ROUTES + 100):
        endpoint._dispatch(forged, ("192.0.2.1", port))
    check = stun.binding_request(bytes(12), username="vict:y", key=b"k", priority=1,
                                 controlling=True, tie_breaker=1)
    assert endpoint._dispatch(check, ("198.51.100.7", 5000)) is victim
    assert endpoint._dispatch(b"\x16dtls", ("198.51.100.7", 5000)) is victim
    assert victim.datagrams[-1] == b"\x16dtls"
    assert sum(1 for s in endpoint._routes.values() if s is hostile) <= MAX_ROUTES_PER_SINK
