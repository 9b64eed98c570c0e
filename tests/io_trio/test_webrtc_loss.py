"""The whole stack over a lossy loopback: 5 % of datagrams dropped each way, STUN and DTLS
handshake included (ICE and DTLS retransmit; SCTP repairs the data)."""

from __future__ import annotations

import os
import random

import pytest
import trio

from zmesh.io_trio.udp import DatagramSink, UdpEndpoint
from zmesh.io_trio.webrtc import WebRtcLink, WebRtcPeer

pytestmark = [pytest.mark.trio, pytest.mark.integration]


class LossyEndpoint(UdpEndpoint):
    def __init__(self, loss: float, seed: int) -> None:
        super().__init__(("127.0.0.1", 0), offload=False)  # per-datagram sends: each can be lost
        self.loss = loss
        self.rng = random.Random(seed)
        self.lost = 0

    def send_nowait(self, data: bytes, destination: tuple[str, int],
                    sink: DatagramSink | None) -> bool:
        if self.rng.random() < self.loss:
            self.lost += 1
            return True  # gone, as on a lossy path
        return super().send_nowait(data, destination, sink)


@pytest.mark.slow  # SCTP's retransmission timers (RTO >= 0.4 s) dominate: several seconds
async def test_reliable_channels_survive_five_percent_loss() -> None:
    async with LossyEndpoint(0.05, 1) as e1, LossyEndpoint(0.05, 2) as e2, \
            WebRtcPeer(e1) as a, WebRtcPeer(e2) as b:
        offer = await a.create_offer()
        await a.set_remote_answer(await b.create_answer(offer))
        with trio.fail_after(30):
            await a.wait_connected()
            await b.wait_connected()
        ordered = await a.create_channel("ordered")
        unordered = await a.create_channel("unordered", ordered=False)
        messages = [os.urandom(random.Random(i).randrange(1, 20000)) for i in range(60)]
        with trio.fail_after(30):
            incoming = {}
            for _ in range(2):
                channel = await b.accept_channel()
                incoming[channel.label] = channel
            for message in messages:
                await ordered.send(message)
                await unordered.send(message)
            got_ordered = [await incoming["ordered"].receive() for _ in messages]
            got_unordered = [await incoming["unordered"].receive() for _ in messages]
        assert got_ordered == messages
        assert sorted(got_unordered) == sorted(messages)  # all there, any order
        assert e1.lost > 10 and e2.lost > 10


async def test_fec_link_under_loss_counts_what_it_could_not_repair() -> None:
    async with LossyEndpoint(0.03, 3) as e1, LossyEndpoint(0.03, 4) as e2, \
            WebRtcPeer(e1) as a, WebRtcPeer(e2) as b:
        offer = await a.create_offer()
        await a.set_remote_answer(await b.create_answer(offer))
        with trio.fail_after(30):
            await a.wait_connected()
            link_a = await WebRtcLink.open(a, b"B" * 32, fec=True)
            link_b = await WebRtcLink.accept(b, b"A" * 32)
        cells = [os.urandom(1024) for _ in range(300)]
        received: list[bytes] = []

        async def sender() -> None:
            for cell in cells:
                await link_a.send_cell(cell)
                await trio.sleep(0.001)  # paced, as cells of a circuit are

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            with trio.move_on_after(10):
                while len(received) + link_b.stats.extra.get("cells_lost", 0) < len(cells):
                    received.append(await link_b.receive_cell())
            nursery.cancel_scope.cancel()
        lost = int(link_b.stats.extra.get("cells_lost", 0))
        # In order, without duplicates; whatever is missing was reported lost.
        positions = [cells.index(cell) for cell in received]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert len(received) + lost == len(cells)
        assert len(received) >= 0.95 * len(cells)
