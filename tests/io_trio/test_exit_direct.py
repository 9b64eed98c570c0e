"""Direct exit on real loopback sockets: policy after resolution, errors mapped to reasons."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio

from zmesh.io_trio.exit_direct import Resolver, open_exit_connection, resolve_system
from zmesh.sansio.exit.policy import ExitPolicy, IPAddress
from zmesh.sansio.streams import ResetReason, StreamOpenFailed

pytestmark = [pytest.mark.trio, pytest.mark.integration]

LOOPBACK_OK = ExitPolicy(allow_loopback=True)


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)


@pytest.fixture
async def echo_port(nursery: trio.Nursery) -> AsyncIterator[int]:
    listeners = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
    yield listeners[0].socket.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fixed(*addrs: str) -> Resolver:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in addrs]

    return resolve


async def expect(
    reason: ResetReason, host: str, port: int, policy: ExitPolicy, **kw: object
) -> None:
    with pytest.raises(StreamOpenFailed) as info:
        await open_exit_connection(host, port, policy, **kw)  # type: ignore[arg-type]
    assert info.value.reason is reason, info.value


async def test_connects_by_name_when_loopback_is_allowed(echo_port: int) -> None:
    stream = await open_exit_connection("localhost", echo_port, LOOPBACK_OK, timeout=5)
    async with stream:
        await stream.send_all(b"ping")
        assert await stream.receive_some(10) == b"ping"


async def test_default_policy_refuses_loopback_after_resolution(echo_port: int) -> None:
    # The name looks harmless; only its resolved address reveals the loopback target.
    await expect(ResetReason.POLICY_REFUSED, "localhost", echo_port, ExitPolicy(), timeout=5)
    await expect(ResetReason.POLICY_REFUSED, "127.0.0.1", echo_port, ExitPolicy())
    await expect(ResetReason.POLICY_REFUSED, "::ffff:127.0.0.1", echo_port, ExitPolicy())
    await expect(
        ResetReason.POLICY_REFUSED,
        "innocent.example",
        echo_port,
        ExitPolicy(),
        resolve=fixed("10.0.0.7", "169.254.169.254"),
    )


async def test_only_allowed_addresses_are_tried(echo_port: int) -> None:
    # A name with a private and a loopback address, where only loopback is allowed: the exit
    # must connect to the allowed one and never touch the other.
    stream = await open_exit_connection(
        "mixed.example", echo_port, LOOPBACK_OK, resolve=fixed("10.0.0.7", "127.0.0.1")
    )
    async with stream:
        assert stream.socket.getpeername()[0] == "127.0.0.1"


async def test_connection_refused() -> None:
    await expect(ResetReason.CONNECTION_REFUSED, "127.0.0.1", closed_port(), LOOPBACK_OK)


async def test_name_that_does_not_resolve() -> None:
    async def nxdomain(host: str, port: int) -> list[IPAddress]:
        raise StreamOpenFailed(ResetReason.HOST_UNREACHABLE, "NXDOMAIN")

    await expect(ResetReason.HOST_UNREACHABLE, "nx.example", 80, LOOPBACK_OK, resolve=nxdomain)
    await expect(ResetReason.HOST_UNREACHABLE, "bad name!", 80, LOOPBACK_OK)


async def test_timeout_covers_resolution() -> None:
    async def hangs(host: str, port: int) -> list[IPAddress]:
        await trio.sleep_forever()
        raise AssertionError

    await expect(
        ResetReason.TTL_EXPIRED, "slow.example", 80, LOOPBACK_OK, timeout=0.2, resolve=hangs
    )


async def test_port_zero_and_smtp_are_refused(echo_port: int) -> None:
    await expect(ResetReason.POLICY_REFUSED, "127.0.0.1", 0, LOOPBACK_OK)
    await expect(ResetReason.POLICY_REFUSED, "127.0.0.1", 25, LOOPBACK_OK)


async def test_system_resolver() -> None:
    assert ipaddress.ip_address("127.0.0.1") in await resolve_system("localhost", 80)


async def test_happy_eyeballs_skips_a_refusing_address(echo_port: int) -> None:
    stream = await open_exit_connection(
        "two.example", echo_port, LOOPBACK_OK, resolve=fixed("127.0.0.2", "127.0.0.1")
    )
    async with stream:
        assert stream.socket.getpeername()[0] == "127.0.0.1"


async def test_happy_eyeballs_does_not_wait_for_a_black_hole(nursery: trio.Nursery) -> None:
    # A listener with a full accept queue drops further SYNs: connecting to it hangs, like a
    # black-holed address. The second address must be tried after the attempt delay.
    with socket.socket() as hole:
        hole.bind(("127.0.0.2", 0))
        hole.listen(0)
        port = hole.getsockname()[1]
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.2", port))
            fillers.append(filler)
        await trio.sleep(0.1)
        await nursery.start(partial(trio.serve_tcp, _echo, port, host="127.0.0.1"))
        start = trio.current_time()
        stream = await open_exit_connection(
            "hole.example", port, LOOPBACK_OK, timeout=10, resolve=fixed("127.0.0.2", "127.0.0.1")
        )
        async with stream:
            assert stream.socket.getpeername()[0] == "127.0.0.1"
        assert trio.current_time() - start < 2
        for filler in fillers:
            filler.close()
