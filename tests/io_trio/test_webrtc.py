"""The trio driver on real loopback sockets: two zmesh peers, the STUN server role, the link."""

from __future__ import annotations

import os

import pytest
import trio

from zmesh.io_trio.link import Link, LinkClosed
from zmesh.io_trio.udp import UdpEndpoint
from zmesh.io_trio.webrtc import (
    CHANNEL_BUDGET,
    RECEIVE_BUDGET,
    ChannelClosedError,
    WebRtcLink,
    WebRtcPeer,
)
from zmesh.sansio.webrtc import stun

pytestmark = [pytest.mark.trio, pytest.mark.integration]


async def connect(a: WebRtcPeer, b: WebRtcPeer) -> None:
    offer = await a.create_offer()
    answer = await b.create_answer(offer)
    await a.set_remote_answer(answer)
    with trio.fail_after(15):
        await a.wait_connected()
        await b.wait_connected()


async def test_two_peers_exchange_messages_and_close() -> None:
    async with UdpEndpoint(("127.0.0.1", 0)) as e1, UdpEndpoint(("127.0.0.1", 0)) as e2:
        async with WebRtcPeer(e1) as a, WebRtcPeer(e2) as b:
            await connect(a, b)
            channel = await a.create_channel("data", ordered=False)
            with trio.fail_after(10):
                incoming = await b.accept_channel()
            assert incoming.label == "data"
            for size in (0, 1, 1200, 262144):
                payload = os.urandom(size)
                await channel.send(payload)
                with trio.fail_after(10):
                    assert await incoming.receive() == payload
            await incoming.send("back")
            with trio.fail_after(10):
                assert await channel.receive() == "back"
            await incoming.aclose()
            with trio.fail_after(10), pytest.raises(ChannelClosedError):
                await channel.receive()


async def test_many_peers_share_one_endpoint() -> None:
    async with UdpEndpoint(("127.0.0.1", 0)) as server, UdpEndpoint(("127.0.0.1", 0)) as client:
        async with WebRtcPeer(server) as s1, WebRtcPeer(server) as s2, \
                WebRtcPeer(client) as c1, UdpEndpoint(("127.0.0.1", 0)) as client2, \
                WebRtcPeer(client2) as c2:
            await connect(c1, s1)
            await connect(c2, s2)
            for c, s, text in ((c1, s1, "one"), (c2, s2, "two")):
                channel = await c.create_channel(text)
                await channel.send(text)
                with trio.fail_after(10):
                    assert await (await s.accept_channel()).receive() == text


async def test_endpoint_answers_plain_binding_requests() -> None:
    async with UdpEndpoint(("127.0.0.1", 0)) as endpoint:
        sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        request = stun.encode_stun(stun.StunMethod.BINDING, stun.StunClass.REQUEST, b"x" * 12, [])
        await sock.sendto(request, endpoint.local_address)
        with trio.fail_after(5):
            reply, _ = await sock.recvfrom(2048)
        message = stun.parse_stun(reply)
        assert message.attributes["XOR-MAPPED-ADDRESS"] == sock.getsockname()
        sock.close()


async def test_srflx_gathering_against_our_own_stun_server() -> None:
    async with UdpEndpoint(("127.0.0.1", 0)) as helper, UdpEndpoint(("127.0.0.1", 0)) as e:
        async with WebRtcPeer(e, stun_servers=[helper.local_address]) as peer:
            await peer.create_offer()
            # Loopback has no NAT: the mapped address equals the host one and is dropped as
            # redundant (RFC 8445 §5.1.3), but the server answered and gathering completed.
            assert peer.pc.gathering_complete
            assert helper.stats.stun_answered == 1


@pytest.mark.parametrize("fec", [False, True])
async def test_webrtc_link_carries_cells_and_closes(fec: bool) -> None:
    async with UdpEndpoint(("127.0.0.1", 0)) as e1, UdpEndpoint(("127.0.0.1", 0)) as e2:
        async with WebRtcPeer(e1) as a, WebRtcPeer(e2) as b:
            await connect(a, b)
            link_a = await WebRtcLink.open(a, b"B" * 32, fec=fec)
            with trio.fail_after(10):
                link_b = await WebRtcLink.accept(b, b"A" * 32)
            assert isinstance(link_a, Link) and link_a.kind == "webrtc"
            cells = [os.urandom(514) for _ in range(200)]
            async with trio.open_nursery() as nursery:
                async def sender() -> None:
                    for cell in cells:
                        await link_a.send_cell(cell)
                nursery.start_soon(sender)
                with trio.fail_after(10):
                    got = [await link_b.receive_cell() for _ in cells]
            assert got == cells
            assert link_a.stats.cells_sent == 200 and link_b.stats.cells_received == 200
            if fec:
                assert link_b.stats.extra["cells_lost"] == 0
                assert link_a.stats.fec_repair_ratio is not None
                # Tetrys's cumulative counters are public: every cell went out as a source packet.
                assert link_a.stats.extra["cells_sent"] == 200
                assert link_a.stats.extra["coded_sent"] >= 0
            await link_a.aclose()
            with trio.fail_after(10), pytest.raises(LinkClosed):
                await link_b.receive_cell()
            with pytest.raises(LinkClosed):
                await link_a.send_cell(b"x")


def strip_candidates(sdp: str) -> str:
    return "".join(line for line in sdp.splitlines(keepends=True)
                   if not line.startswith(("a=candidate:", "a=end-of-candidates")))


async def test_trickle_ice_between_two_peers() -> None:
    async with UdpEndpoint(("127.0.0.1", 0)) as e1, UdpEndpoint(("127.0.0.1", 0)) as e2, \
            WebRtcPeer(e1) as a, WebRtcPeer(e2) as b:
        offer = strip_candidates(await a.create_offer(trickle=True))
        answer = strip_candidates(await b.create_answer(offer, trickle=True))
        await a.set_remote_answer(answer)

        async def forward(src: WebRtcPeer, dst: WebRtcPeer) -> None:
            async for candidate in src.local_candidates():
                await dst.add_remote_candidate(candidate)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward, a, b)
            nursery.start_soon(forward, b, a)
            with trio.fail_after(15):
                await a.wait_connected()
                await b.wait_connected()
        assert b.pc.ice is not None and b.pc.ice.remote_end_of_candidates
        channel = await a.create_channel("after-trickle")
        await channel.send(b"ok")
        with trio.fail_after(10):
            assert await (await b.accept_channel()).receive() == b"ok"


async def test_closing_one_peer_closes_the_other_promptly() -> None:
    async with UdpEndpoint(("127.0.0.1", 0)) as e1, UdpEndpoint(("127.0.0.1", 0)) as e2, \
            WebRtcPeer(e2) as b:
        async with WebRtcPeer(e1) as a:
            await connect(a, b)
            channel = await a.create_channel("x")
            with trio.fail_after(10):
                incoming = await b.accept_channel()
        # a is closed (SCTP ABORT, then DTLS close_notify): b notices without any timeout.
        with trio.fail_after(3), pytest.raises(ChannelClosedError):
            await incoming.receive()
        assert b.state.value == "closed"
        del channel


async def test_link_control_junk_is_discarded_and_cells_still_flow() -> None:
    """Review finding: a peer writing on a link's ``zmesh-control`` (which nothing reads) must
    not park memory or stall the cells. The link discards control messages on arrival."""
    size, count = 65_536, 160  # 10 MiB, more than the 8 MiB channel budget
    async with UdpEndpoint(("127.0.0.1", 0)) as e1, UdpEndpoint(("127.0.0.1", 0)) as e2:
        async with WebRtcPeer(e1) as a, WebRtcPeer(e2) as b:
            await connect(a, b)
            link_a = await WebRtcLink.open(a, b"B" * 32)
            with trio.fail_after(10):
                link_b = await WebRtcLink.accept(b, b"A" * 32)
            control = link_a._channels.control
            for _ in range(count):
                await control.send(bytes(size))
            with trio.fail_after(20):
                while b.receive_overflow < count:
                    await trio.sleep(0.01)
            assert b.queued_bytes == 0
            await link_a.send_cell(b"c" * 514)
            with trio.fail_after(10):
                assert await link_b.receive_cell() == b"c" * 514


async def test_unread_channel_pushes_back_instead_of_losing_messages() -> None:
    """A channel nobody reads holds at most CHANNEL_BUDGET bytes; beyond that SCTP keeps the
    messages and its window stops the sender. Once the reader reads, every message arrives,
    in order, none lost."""
    size, count = 65_536, 400  # 25 MiB: more than the budget, the SCTP window and send buffer
    async with UdpEndpoint(("127.0.0.1", 0)) as e1, UdpEndpoint(("127.0.0.1", 0)) as e2:
        async with WebRtcPeer(e1) as a, WebRtcPeer(e2) as b:
            await connect(a, b)
            sender = await a.create_channel("bulk")
            with trio.fail_after(10):
                receiver = await b.accept_channel()
            sent = 0

            async def send_all() -> None:
                nonlocal sent
                for i in range(count):
                    await sender.send(i.to_bytes(4, "big") + bytes(size - 4))
                    sent += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                await trio.sleep(3)
                # Nobody read: the queue stays within its budget and the sender is held back.
                assert receiver.queued_bytes <= CHANNEL_BUDGET
                assert b.queued_bytes <= RECEIVE_BUDGET
                assert b.receive_stalls > 0 and sent < count
                with trio.fail_after(30):
                    for i in range(count):
                        message = await receiver.receive()
                        assert isinstance(message, bytes) and len(message) == size
                        assert int.from_bytes(message[:4], "big") == i
            assert b.receive_overflow == 0
