"""DirectSocketStream: trio's stream interface over direct non-blocking socket calls."""

from __future__ import annotations

import os
from functools import partial

import pytest
import trio
import trio.testing

from zmesh.io_trio.direct_socket import DirectSocketStream

pytestmark = pytest.mark.trio


async def _pair(nursery: trio.Nursery) -> tuple[DirectSocketStream, trio.SocketStream]:
    accepted: list[trio.SocketStream] = []
    ready = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        ready.set()
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    client = DirectSocketStream(await trio.open_tcp_stream("127.0.0.1", port))
    await ready.wait()
    return client, accepted[0]


async def test_bytes_both_ways_in_order_with_a_slow_peer() -> None:
    async with trio.open_nursery() as nursery:
        ours, theirs = await _pair(nursery)
        payload = os.urandom(8 << 20)  # more than the socket buffers: send_all must park
        got = bytearray()

        async def slow_drain() -> None:
            while len(got) < len(payload):
                got.extend(await theirs.receive_some(1 << 16))
                await trio.sleep(0)

        nursery.start_soon(slow_drain)
        with trio.fail_after(20):
            await ours.send_all(payload)
            while len(got) < len(payload):
                await trio.sleep(0.01)
        assert bytes(got) == payload
        await theirs.send_all(b"back")
        assert await ours.receive_some(100) == b"back"
        nursery.cancel_scope.cancel()


async def test_send_nowait_returns_what_the_socket_did_not_take() -> None:
    async with trio.open_nursery() as nursery:
        ours, theirs = await _pair(nursery)
        rest = ours.send_nowait(bytes(32 << 20))  # nobody reads: the kernel takes only part
        assert rest is not None and 0 < len(rest) < 32 << 20
        assert ours.send_nowait(b"") is None
        nursery.cancel_scope.cancel()


async def test_eof_and_close() -> None:
    async with trio.open_nursery() as nursery:
        ours, theirs = await _pair(nursery)
        await ours.send_eof()
        assert await theirs.receive_some(10) == b""
        await theirs.aclose()
        assert await ours.receive_some(10) == b""
        await ours.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await ours.receive_some(10)
        with pytest.raises(trio.ClosedResourceError):
            await ours.send_all(b"x")
        nursery.cancel_scope.cancel()


async def test_closing_wakes_a_parked_reader() -> None:
    async with trio.open_nursery() as nursery:
        ours, _ = await _pair(nursery)
        failures: list[BaseException] = []

        async def reader() -> None:
            try:
                await ours.receive_some(10)
            except trio.ClosedResourceError as exc:
                failures.append(exc)

        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await ours.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert failures
        nursery.cancel_scope.cancel()


async def test_a_reset_peer_is_a_broken_resource() -> None:
    import socket
    import struct

    async with trio.open_nursery() as nursery:
        ours, theirs = await _pair(nursery)
        # SO_LINGER 0: close sends RST instead of FIN
        theirs.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await theirs.aclose()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):
                await ours.send_all(b"x" * 65536)
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
