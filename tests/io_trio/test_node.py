"""The node runtime in one process on loopback: streams, policy, messages, failures, API."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator

import pytest
import trio

from zmesh.api import ExitUnavailable, MeshVPN, NotConnected
from zmesh.io_trio.circuit_streams import StreamClosedError
from zmesh.io_trio.demo import Demo
from zmesh.io_trio.node import Node, NodeConfig, NoPath
from zmesh.io_trio.rendezvous import PATH, RendezvousService
from zmesh.io_trio.state import NodeIdentity
from zmesh.io_trio.testsite import pattern_sha256, serve_test_site
from zmesh.io_trio.websocket_link import LinkSettings
from zmesh.sansio.exit.policy import ExitPolicy
from zmesh.sansio.onion import DestroyReason
from zmesh.sansio.streams import ResetReason, StreamOpenFailed

pytestmark = pytest.mark.trio

FAST = LinkSettings(keepalive_interval=0.2, keepalive_timeout=5)


class Mesh:
    url: str
    web: int
    relays: list[Node]


@contextlib.asynccontextmanager
async def small_mesh(n: int = 3, loopback: bool = True, **kw: int) -> AsyncIterator[Mesh]:
    mesh = Mesh()
    async with trio.open_nursery() as nursery:
        service = RendezvousService(NodeIdentity.generate())
        port = await nursery.start(service.serve)
        mesh.url = f"wss://127.0.0.1:{port}{PATH}"
        mesh.web = await nursery.start(
            lambda task_status: serve_test_site({"/": b"hi\n"}, task_status=task_status)
        )
        async with contextlib.AsyncExitStack() as stack:
            mesh.relays = [
                await stack.enter_async_context(
                    Node(
                        NodeConfig(
                            rendezvous=(mesh.url,),
                            link=FAST,
                            exit_policy=ExitPolicy(allow_loopback=loopback),
                            **kw,  # type: ignore[arg-type]
                        )
                    )
                )
                for _ in range(n)
            ]
            yield mesh
        nursery.cancel_scope.cancel()


def client_config(mesh: Mesh, **kw: object) -> NodeConfig:
    return NodeConfig(
        rendezvous=(mesh.url,), listen=False, relay=False, exit=False, link=FAST, **kw
    )  # type: ignore[arg-type]


async def http_get(stream: trio.abc.Stream, path: str) -> bytes:
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    buf = bytearray()
    while data := await stream.receive_some():
        buf += data
    await stream.aclose()
    return bytes(buf).partition(b"\r\n\r\n")[2]


async def test_stream_download_upload_and_three_hops() -> None:
    async with small_mesh(3) as mesh, Node(client_config(mesh)) as client:
        body = await http_get(await client.open_tcp_stream("127.0.0.1", mesh.web), "/bytes/300000")
        assert hashlib.sha256(body).hexdigest() == pattern_sha256(300_000)
        # upload with a half-close: the server answers after our END
        stream = await client.open_tcp_stream("localhost", mesh.web)
        data = bytes(range(256)) * 2000
        await stream.send_all(
            b"POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(data) + data
        )
        await stream.send_eof()
        reply = b""
        while chunk := await stream.receive_some():
            reply += chunk
        await stream.aclose()
        assert reply.endswith(hashlib.sha256(data).hexdigest().encode())
        info = await client.build_circuit(3)
        assert len(info.path) == 3 and len(set(info.path)) == 3
        status = client.status()
        assert status["circuits"]


async def test_exit_policy_refusals_map_to_reasons() -> None:
    async with small_mesh(2, loopback=False) as mesh, Node(client_config(mesh)) as client:
        with pytest.raises(StreamOpenFailed) as refused:
            await client.open_tcp_stream("127.0.0.1", mesh.web)
        assert refused.value.reason is ResetReason.POLICY_REFUSED
        with pytest.raises(StreamOpenFailed) as smtp:
            await client.open_tcp_stream("192.0.2.1", 25)
        assert smtp.value.reason is ResetReason.POLICY_REFUSED


async def test_relay_failure_resets_streams_and_node_recovers() -> None:
    async with small_mesh(4) as mesh, Node(client_config(mesh)) as client:
        stream = await client.open_tcp_stream("127.0.0.1", mesh.web)
        info = client._current
        assert info is not None
        await stream.send_all(b"GET /bytes/50000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        await stream.receive_some()
        victim = next(r for r in mesh.relays if r.node_id == info.path[0])
        for link in list(victim.links.values()):
            await link.aclose()  # the relay drops every link, as if it died
        with trio.fail_after(10), pytest.raises(StreamClosedError) as lost:
            while await stream.receive_some():
                pass
        assert lost.value.reason is ResetReason.CIRCUIT_FAILED
        body = await http_get(await client.open_tcp_stream("127.0.0.1", mesh.web), "/")
        assert body == b"hi\n"


async def test_end_to_end_message_and_graceful_destroy() -> None:
    async with small_mesh(3) as mesh:
        target = mesh.relays[0]
        async with Node(client_config(mesh)) as client:
            await client.send_message(target.node_id, b"hello, anonymous")
            with trio.fail_after(5):
                message = await target.message_channel.receive()
            assert message.data == b"hello, anonymous"
            assert len(target._ends) == 1
        # leaving the client's `async with` sent DESTROY along its circuits
        with trio.fail_after(5):
            while target._ends:
                await trio.sleep(0.02)


async def test_mesh_vpn_api() -> None:
    async with small_mesh(3) as mesh:
        async with MeshVPN(client_config(mesh)) as vpn:
            with pytest.raises(NotConnected):
                await vpn.open_tcp_stream("127.0.0.1", mesh.web)
            with pytest.raises(ExitUnavailable, match="Cloudflare Worker"):
                await vpn.connect(hops=2, exit="cloudflare", country="DE")
            await vpn.connect(hops=2, exit="direct")
            body = await http_get(await vpn.open_tcp_stream("127.0.0.1", mesh.web), "/")
            assert body == b"hi\n"
            await vpn.disconnect()
        got: list[bytes] = []
        async with MeshVPN(
            NodeConfig(rendezvous=(mesh.url,), relay=False, exit=False, link=FAST)
        ) as receiver:
            receiver.on("message", lambda m: got.append(m.data))
            await mesh.relays[0].refresh_peers()
            await mesh.relays[0].send_message(receiver.node.node_id, b"ping")
            with trio.fail_after(5):
                while not got:
                    await trio.sleep(0.02)
        assert got == [b"ping"]


async def test_demo_self_check() -> None:
    demo = Demo(nodes=3, hops=2)
    async with trio.open_nursery() as nursery:
        await demo.start(nursery)
        try:
            with trio.fail_after(30):
                lines = await demo.self_check(None)
            assert any("fetched the demo page" in line for line in lines)
            assert any("->" in line for line in demo.status_lines())
        finally:
            await demo.stop()
            nursery.cancel_scope.cancel()


async def test_exit_connection_bound_refuses_with_resource_limit() -> None:
    async with small_mesh(2, max_exit_connections=0) as mesh, Node(client_config(mesh)) as client:
        with pytest.raises(StreamOpenFailed) as refused:
            await client.open_tcp_stream("127.0.0.1", mesh.web)
        assert refused.value.reason is ResetReason.RESOURCE_LIMIT


async def test_peer_table_is_bounded() -> None:
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from zmesh.sansio.signaling.peer_record import Capability, SphinxKey, sign_record

    node = Node(NodeConfig(listen=False, max_peers=3))
    now = time.time()
    for i in range(5):
        record = sign_record(
            Ed25519PrivateKey.generate(),
            seq=1,
            expires=int(now + 100 + i),
            capabilities=Capability.RELAY,
            cert_sha256=bytes(32),
            sphinx_keys=[SphinxKey(1, bytes(32))],
        )
        node.add_peer(record)
    assert len(node.peers) == 3
    assert min(r.expires for r in node.peers.values()) == int(now + 102)


async def test_unreachable_next_hop_fails_the_build_at_once() -> None:
    async with small_mesh(3) as mesh, Node(client_config(mesh)) as client:
        first, second = mesh.relays[0], mesh.relays[1]
        assert second.node_id not in first.links
        await first.refresh_peers()
        await client.refresh_peers()
        # The first hop's copy of the second hop's record points at a port nobody listens on.
        record = first.peers[second.node_id]
        first.peers[second.node_id] = dataclasses.replace(
            record, addresses=("wss://127.0.0.1:9/zmesh",)
        )
        path = [client.peers[first.node_id], client.peers[second.node_id]]
        started = trio.current_time()
        with trio.fail_after(8), pytest.raises(NoPath) as failed:
            await client.build_circuit(path=path)
        # The relay's link_failed sent DESTROY(NO_ROUTE) back instead of waiting 10 s.
        assert f"destroyed ({int(DestroyReason.NO_ROUTE)})" in str(failed.value)
        assert trio.current_time() - started < 5
        assert first.onion.relayed_circuit_count == 0
