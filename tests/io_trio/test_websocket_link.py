"""WebSocket link on loopback: authentication, cell transport, keepalive RTT, hostile input."""

from __future__ import annotations

import ssl

import pytest
import trio

from zmesh.io_trio.link import Link, LinkClosed
from zmesh.io_trio.state import NodeIdentity
from zmesh.io_trio.websocket_link import (
    CELL_SIZE,
    LinkSettings,
    WebSocketLink,
    connect_websocket_link,
    serve_websocket_links,
)

pytestmark = pytest.mark.trio

SERVER = NodeIdentity.generate()
CLIENT = NodeIdentity.generate()
FAST = LinkSettings(keepalive_interval=0.05, keepalive_timeout=2.0, handshake_timeout=2.0)


async def start_server(
    nursery: trio.Nursery, accepted: list[WebSocketLink], echo: bool = True
) -> int:
    async def on_link(link: WebSocketLink) -> None:
        accepted.append(link)
        async with trio.open_nursery() as n:
            n.start_soon(link.run)
            try:
                while echo:
                    cell = await link.receive_cell()
                    await link.send_cell(cell)
                await trio.sleep_forever()
            except LinkClosed:
                n.cancel_scope.cancel()

    port: int = await nursery.start(
        lambda task_status: serve_websocket_links(
            SERVER, on_link, port=0, settings=FAST, task_status=task_status
        )
    )
    return port


async def test_authenticated_echo_and_rtt() -> None:
    accepted: list[WebSocketLink] = []
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, accepted)
        link = await connect_websocket_link(
            "127.0.0.1",
            port,
            CLIENT,
            expected_peer_id=SERVER.node_id,
            expected_cert_sha256=SERVER.cert_sha256,
            settings=FAST,
        )
        assert isinstance(link, Link)
        assert link.peer_id == SERVER.node_id
        nursery.start_soon(link.run)
        cells = [bytes([i % 256]) * CELL_SIZE for i in range(300)]
        for cell in cells:
            await link.send_cell(cell)
        got = [await link.receive_cell() for _ in cells]
        assert got == cells
        assert accepted[0].peer_id == CLIENT.node_id
        with trio.fail_after(2):
            while link.stats.rtt is None:
                await trio.sleep(0.02)
        assert 0 < link.stats.rtt < 1
        assert link.stats.cells_sent == 300 and link.stats.cells_received == 300
        await link.aclose()
        with pytest.raises(LinkClosed):
            await link.send_cell(cells[0])
        nursery.cancel_scope.cancel()


async def test_wrong_pin_and_wrong_peer_are_refused() -> None:
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, [])
        with pytest.raises(LinkClosed, match="pin"):
            await connect_websocket_link(
                "127.0.0.1", port, CLIENT, expected_cert_sha256=b"\x00" * 32, settings=FAST
            )
        with pytest.raises(LinkClosed, match="not the node"):
            await connect_websocket_link(
                "127.0.0.1", port, CLIENT, expected_peer_id=b"\x01" * 32, settings=FAST
            )
        nursery.cancel_scope.cancel()


async def test_garbage_leaves_listener_serving() -> None:
    accepted: list[WebSocketLink] = []
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, accepted)
        # raw garbage instead of TLS
        s = await trio.open_tcp_stream("127.0.0.1", port)
        await s.send_all(b"\x16\x03\x01garbage" * 100)
        await s.aclose()
        # TLS, then a non-websocket HTTP request
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        t = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=ctx)
        await t.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.move_on_after(2):
            try:
                reply = await t.receive_some(100)
                assert not reply or reply.startswith(b"HTTP/1.1 4")
            except trio.BrokenResourceError:
                pass  # the server dropped the connection: equally fine
        await trio.aclose_forcefully(t)
        link = await connect_websocket_link("127.0.0.1", port, CLIENT, settings=FAST)
        nursery.start_soon(link.run)
        await link.send_cell(b"z" * CELL_SIZE)
        assert await link.receive_cell() == b"z" * CELL_SIZE
        await link.aclose()
        nursery.cancel_scope.cancel()


async def test_peer_close_ends_receivers() -> None:
    accepted: list[WebSocketLink] = []
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, accepted, echo=False)
        link = await connect_websocket_link("127.0.0.1", port, CLIENT, settings=FAST)
        nursery.start_soon(link.run)
        with trio.fail_after(2):
            while not accepted:
                await trio.sleep(0.01)
        await accepted[0].aclose()
        with trio.fail_after(2), pytest.raises(LinkClosed):
            await link.receive_cell()
        nursery.cancel_scope.cancel()


async def test_send_queue_is_bounded() -> None:
    small = LinkSettings(send_queue=4, receive_queue=4, keepalive_interval=10)
    accepted: list[WebSocketLink] = []
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, accepted, echo=False)
        link = await connect_websocket_link("127.0.0.1", port, CLIENT, settings=small)
        # writer not running yet: the queue fills and send_cell blocks
        assert link.send_cells_nowait([b"a" * CELL_SIZE] * 10) == 4
        with trio.move_on_after(0.2) as scope:
            await link.send_cell(b"a" * CELL_SIZE)
        assert scope.cancelled_caught
        await link.aclose()
        nursery.cancel_scope.cancel()


async def test_ping_flood_from_a_peer_that_never_reads_is_bounded() -> None:
    from wsproto.events import Ping

    accepted: list[WebSocketLink] = []
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, accepted, echo=False)
        link = await connect_websocket_link("127.0.0.1", port, CLIENT, settings=FAST)
        # link.run never starts: this client never reads, so the server's writer blocks once
        # the socket buffers fill while its reader keeps answering pings.
        ping = link._t.ws.send(Ping(payload=b"p" * 125))
        for _ in range(200):
            await link._t.stream.send_all(ping * 1000)
        await trio.sleep(0.5)
        assert len(accepted[0]._control) <= 2
        nursery.cancel_scope.cancel()


async def test_pending_handshakes_are_bounded() -> None:
    settings = LinkSettings(handshake_timeout=5.0, max_pending_handshakes=4)
    accepted: list[WebSocketLink] = []

    async def on_link(link: WebSocketLink) -> None:
        accepted.append(link)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_websocket_links(
                SERVER, on_link, port=0, settings=settings, task_status=task_status
            )
        )
        # Four silent clients occupy every handshake slot; a fifth is closed at once.
        silent = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(4)]
        await trio.sleep(0.2)
        extra = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(2):
            assert await extra.receive_some(1) == b""
        for s in silent:
            await s.aclose()
        await trio.sleep(0.2)
        # Slots free again: an honest client gets its link.
        link = await connect_websocket_link("127.0.0.1", port, CLIENT, settings=FAST)
        await link.aclose()
        await extra.aclose()
        nursery.cancel_scope.cancel()


async def _linked_pair(
    nursery: trio.Nursery, settings: LinkSettings = FAST
) -> tuple[WebSocketLink, WebSocketLink]:
    """A running client link and the server's end of it (neither echoes)."""
    accepted: list[WebSocketLink] = []

    async def on_link(link: WebSocketLink) -> None:
        accepted.append(link)
        await link.run()

    port: int = await nursery.start(
        lambda task_status: serve_websocket_links(
            SERVER, on_link, port=0, settings=settings, task_status=task_status
        )
    )
    client = await connect_websocket_link("127.0.0.1", port, CLIENT, settings=settings)
    nursery.start_soon(client.run)
    with trio.fail_after(2):
        while not accepted:
            await trio.sleep(0.01)
    return client, accepted[0]


def _runs(total_cells: int, seed: int) -> list[bytes]:
    """Runs of 1..150 whole cells with distinct, position-dependent contents."""
    import random

    rng = random.Random(seed)
    runs, n = [], 0
    while n < total_cells:
        k = min(rng.randint(1, 150), total_cells - n)
        runs.append(b"".join(n.to_bytes(4, "big") * (CELL_SIZE // 4) for n in range(n, n + k)))
        n += k
    return runs


async def _send_runs(link: WebSocketLink, pending: list[bytes]) -> None:
    """Queue every run, waiting for space; ``pending`` shrinks as runs are taken (so a
    cancelled call leaves the rest in it)."""
    while pending:
        taken = link.send_blocks_nowait(pending)
        del pending[:taken]
        if pending:
            await link.wait_send_space()


@pytest.mark.parametrize("direction", ["client-to-server", "server-to-client"])
async def test_runs_arrive_in_order_through_direct_and_queued_writes(direction: str) -> None:
    # Direct writes (writer idle), partial socket writes finished by the writer, and runs
    # longer than one message must all keep the byte order: the receiver reads slowly so
    # the socket fills and every path is taken.
    async with trio.open_nursery() as nursery:
        client, server = await _linked_pair(nursery)
        sender, receiver = (client, server) if direction == "client-to-server" else (server, client)
        runs = _runs(6000, 7)
        expected = b"".join(runs)
        got = bytearray()

        async def slow_reader() -> None:
            while len(got) < len(expected):
                for block in await receiver.receive_blocks():
                    got.extend(block)
                if len(got) < len(expected) // 2:
                    await trio.sleep(0.001)

        nursery.start_soon(slow_reader)
        with trio.fail_after(30):
            await _send_runs(sender, runs)
            while len(got) < len(expected):
                await trio.sleep(0.01)
        assert bytes(got) == expected
        assert sender.stats.cells_sent == receiver.stats.cells_received == 6000
        nursery.cancel_scope.cancel()


async def test_deliver_gets_whole_messages_and_holds_the_reader() -> None:
    async with trio.open_nursery() as nursery:
        small = LinkSettings(send_queue=64, keepalive_interval=10, handshake_timeout=2.0)
        client, server = await _linked_pair(nursery, small)
        delivered: list[bytes] = []
        gate = trio.Event()

        async def deliver(blocks: list[bytes]) -> None:
            delivered.extend(blocks)
            await gate.wait()  # a stalled next hop: the reader must not read on

        server.set_deliver(deliver)
        runs = _runs(20000, 3)  # more than the socket buffers hold
        pending = list(runs)
        with trio.move_on_after(1.0):
            await _send_runs(client, pending)
        # Held back: the reader stopped inside deliver, so the client's queue filled up.
        assert pending
        assert sum(len(b) for b in delivered) < sum(len(r) for r in runs)
        gate.set()
        with trio.fail_after(10):
            await _send_runs(client, pending)
            while sum(len(b) for b in delivered) < sum(len(r) for r in runs):
                await trio.sleep(0.01)
        assert b"".join(delivered) == b"".join(runs)
        assert all(len(b) % CELL_SIZE == 0 and 0 < len(b) <= 64 * CELL_SIZE for b in delivered)
        nursery.cancel_scope.cancel()


async def test_wait_closed_returns_when_the_peer_goes() -> None:
    async with trio.open_nursery() as nursery:
        client, server = await _linked_pair(nursery)
        server.set_deliver(lambda blocks: trio.lowlevel.checkpoint())
        await client.aclose()
        with trio.fail_after(2):
            await server.wait_closed()
        assert server.closed and server.close_reason
        nursery.cancel_scope.cancel()


async def test_a_message_followed_by_a_ping_in_one_read_is_delivered_at_once() -> None:
    from wsproto.events import Message, Ping

    async with trio.open_nursery() as nursery:
        accepted: list[WebSocketLink] = []
        got: list[bytes] = []
        arrived = trio.Event()

        async def deliver(blocks: list[bytes]) -> None:
            got.extend(blocks)
            arrived.set()

        async def on_link(link: WebSocketLink) -> None:
            link.set_deliver(deliver)
            accepted.append(link)
            await link.run()

        port: int = await nursery.start(
            lambda task_status: serve_websocket_links(
                SERVER, on_link, port=0, settings=FAST, task_status=task_status
            )
        )
        client = await connect_websocket_link("127.0.0.1", port, CLIENT, settings=FAST)
        # client.run is not started: this test writes the frames itself, in one TLS write.
        cell = b"\x07" * CELL_SIZE
        ws = client._t.ws
        await client._t.stream.send_all(ws.send(Message(data=cell)) + ws.send(Ping(b"p")))
        with trio.fail_after(2):
            await arrived.wait()
        assert got == [cell]
        nursery.cancel_scope.cancel()
