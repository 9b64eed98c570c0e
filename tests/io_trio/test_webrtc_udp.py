"""UdpEndpoint batching: GSO sends and GRO reads keep datagram boundaries and order, and sinks
hear end_of_batch once per wake-up (real loopback sockets)."""

from __future__ import annotations

import pytest
import trio

from zmesh.io_trio.udp import UdpEndpoint

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
