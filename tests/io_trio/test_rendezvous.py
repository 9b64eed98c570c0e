"""Rendezvous service and client on loopback."""

from __future__ import annotations

import time

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zmesh.io_trio.rendezvous import (
    PATH,
    RendezvousError,
    RendezvousService,
    fetch_records,
    publish_record,
)
from zmesh.io_trio.state import NodeIdentity
from zmesh.sansio.signaling.peer_record import Capability, SphinxKey, sign_record

pytestmark = pytest.mark.trio


def record(seq: int = 1, expires: float | None = None, key: Ed25519PrivateKey | None = None):  # type: ignore[no-untyped-def]
    return sign_record(
        key or Ed25519PrivateKey.generate(),
        seq=seq,
        expires=int(expires or time.time() + 600),
        capabilities=Capability.RELAY,
        cert_sha256=bytes(32),
        sphinx_keys=[SphinxKey(1, bytes(32))],
        addresses=["wss://127.0.0.1:1/zmesh/link"],
    )


async def test_publish_fetch_and_refusals() -> None:
    service = RendezvousService(NodeIdentity.generate(), capacity=8)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(service.serve)
        url = f"wss://127.0.0.1:{port}{PATH}"
        key = Ed25519PrivateKey.generate()
        await publish_record(url, record(1, key=key))
        await publish_record(url, record(2, key=key))
        with pytest.raises(RendezvousError, match="StaleRecord"):
            await publish_record(url, record(2, key=key))
        await publish_record(url, record())
        got = await fetch_records(url)
        assert len(got) == 2
        assert {r.seq for r in got} == {2, 1}
        # garbage at the port, then the service still answers
        s = await trio.open_tcp_stream("127.0.0.1", port)
        await s.send_all(b"\x00\xff" * 500)
        await s.aclose()
        with pytest.raises(RendezvousError):
            await fetch_records(f"wss://127.0.0.1:{port}/elsewhere")
        assert len(await fetch_records(url)) == 2
        assert service.stats.refused == 1
        nursery.cancel_scope.cancel()


async def test_handle_refuses_malformed_and_expired() -> None:
    service = RendezvousService(NodeIdentity.generate())
    from zmesh.sansio.signaling.rendezvous import Publish, Result, decode_message, encode_message

    assert decode_message(service.handle(b"\x09")) == Result(
        False, "malformed: unknown rendezvous message type 9"
    )
    reply = decode_message(service.handle(encode_message(Publish(record(expires=1).encode()))))
    assert isinstance(reply, Result) and not reply.ok and "Expired" in reply.reason


async def test_a_connection_cannot_hold_a_slot_for_ever() -> None:
    """Review finding: the idle timeout restarted with every request, so a client sending one
    FETCH just under ``idle_timeout`` apart kept its slot for max_requests x idle_timeout
    (1000 x 60 s); 256 such clients shut the service out for 16 hours."""
    from trio_websocket import ConnectionClosed, open_websocket_url

    from zmesh.io_trio.state import client_ssl_context
    from zmesh.sansio.signaling.rendezvous import Fetch, encode_message

    service = RendezvousService(
        NodeIdentity.generate(), max_connections=1, idle_timeout=5.0, max_connection_time=0.5
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(service.serve)
        url = f"wss://127.0.0.1:{port}{PATH}"
        with trio.fail_after(5):
            async with open_websocket_url(url, client_ssl_context()) as ws:
                with pytest.raises(ConnectionClosed):
                    while True:
                        await ws.send_message(encode_message(Fetch(1)))
                        await ws.get_message()
                        await trio.sleep(0.1)
            assert await fetch_records(url) == []  # the slot is free again
        nursery.cancel_scope.cancel()
