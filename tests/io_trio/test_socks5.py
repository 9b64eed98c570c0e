"""SOCKS5 server on real loopback sockets, driven by curl, httpx and a raw client.

``open_stream`` goes straight through the direct exit connector with loopback allowed, so
the whole path is: client → SOCKS5 server → exit policy → TCP → local test server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable
from functools import partial

import httpx
import pytest
import trio

from zmesh.io_trio.exit_direct import open_exit_connection
from zmesh.io_trio.socks5 import serve_socks5
from zmesh.sansio.exit.policy import ExitPolicy, IPAddress
from zmesh.sansio.exit.socks5 import Reply
from zmesh.sansio.streams import ResetReason, StreamOpenFailed

pytestmark = [pytest.mark.trio, pytest.mark.integration]

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
# Neither curl nor httpx may pick up a proxy (or a no-proxy list) from the environment.
CLEAN_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


async def _http(stream: trio.SocketStream) -> None:
    """A tiny HTTP/1.x server: answers with the request line it saw."""
    async with stream:
        request = b""
        while b"\r\n\r\n" not in request:
            data = await stream.receive_some(4096)
            if not data:
                return
            request += data
        body = b"you asked for " + request.split(b"\r\n", 1)[0]
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        await stream.send_all(head + body)


async def _reverser(stream: trio.SocketStream) -> None:
    """Reads until EOF, then answers with the bytes reversed: needs half-close to work."""
    async with stream:
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
        await stream.send_all(data[::-1])


async def serve(
    nursery: trio.Nursery,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    host: str = "127.0.0.1",
) -> int:
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=host))
    return int(listeners[0].socket.getsockname()[1])


class Recorder:
    """An open_stream that connects through the direct exit and remembers what it was asked."""

    def __init__(self, policy: ExitPolicy | None = None, **kw: object) -> None:
        self.policy = policy if policy is not None else ExitPolicy(allow_loopback=True)
        self.kw = kw
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> trio.abc.Stream:
        self.asked.append((host, port))
        return await open_exit_connection(host, port, self.policy, timeout=5, **self.kw)  # type: ignore[arg-type]


async def start_socks(
    nursery: trio.Nursery,
    open_stream: Callable[[str, int], Awaitable[trio.abc.Stream]],
    **kw: object,
) -> int:
    listeners = await nursery.start(partial(serve_socks5, open_stream, port=0, **kw))  # type: ignore[arg-type]
    return int(listeners[0].socket.getsockname()[1])


async def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return await trio.run_process(
        [CURL, "-sS", "--max-time", "10", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=CLEAN_ENV,
    )


async def raw_request(socks_port: int, request: bytes, greeting: bytes = b"\x05\x01\x00") -> bytes:
    """Greeting + request; returns every byte the server sent until it closed (or 2 s)."""
    stream = await trio.open_tcp_stream("127.0.0.1", socks_port)
    got = b""
    async with stream:
        await stream.send_all(greeting + request)
        with trio.move_on_after(2):
            while data := await stream.receive_some(1024):
                got += data
    return got


def connect_v4(port: int, addr: bytes = b"\x7f\x00\x00\x01") -> bytes:
    return b"\x05\x01\x00\x01" + addr + port.to_bytes(2, "big")


def connect_name(name: bytes, port: int) -> bytes:
    return b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big")


def reply_code(answer: bytes) -> int:
    assert answer[:2] == b"\x05\x00", answer  # method selection: no auth
    assert answer[2] == 0x05 and len(answer) == 12, answer  # one IPv4-form reply
    return answer[3]


@needs_curl
async def test_curl_socks5_hostname_sends_the_name_unresolved(nursery: trio.Nursery) -> None:
    http_port = await serve(nursery, _http)
    opener = Recorder()
    socks_port = await start_socks(nursery, opener)
    done = await curl(
        "--socks5-hostname", f"127.0.0.1:{socks_port}", f"http://localhost:{http_port}/hello"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"you asked for GET /hello HTTP/1.1"
    assert opener.asked == [("localhost", http_port)]  # the exit resolved it, not curl


@needs_curl
async def test_curl_ipv4_and_ipv6_requests(nursery: trio.Nursery) -> None:
    v4 = await serve(nursery, _http)
    v6 = await serve(nursery, _http, host="::1")
    opener = Recorder()
    socks_port = await start_socks(nursery, opener)
    done = await curl("--socks5", f"127.0.0.1:{socks_port}", f"http://127.0.0.1:{v4}/four")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(b"GET /four HTTP/1.1")
    done = await curl("--socks5-hostname", f"127.0.0.1:{socks_port}", f"http://[::1]:{v6}/six")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(b"GET /six HTTP/1.1")
    assert opener.asked == [("127.0.0.1", v4), ("::1", v6)]


@needs_curl
async def test_curl_with_username_password(nursery: trio.Nursery) -> None:
    http_port = await serve(nursery, _http)
    socks_port = await start_socks(nursery, Recorder(), auth={"alice": "s3cret"})
    url = f"http://localhost:{http_port}/auth"
    ok = await curl("-x", f"socks5h://alice:s3cret@127.0.0.1:{socks_port}", url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.endswith(b"GET /auth HTTP/1.1")
    bad = await curl("-x", f"socks5h://alice:wrong@127.0.0.1:{socks_port}", url)
    assert bad.returncode != 0
    none = await curl("--socks5-hostname", f"127.0.0.1:{socks_port}", url)
    assert none.returncode != 0


@needs_curl
async def test_curl_sees_policy_refusal(nursery: trio.Nursery) -> None:
    http_port = await serve(nursery, _http)
    socks_port = await start_socks(nursery, Recorder(ExitPolicy()))
    done = await curl(
        "--socks5-hostname", f"127.0.0.1:{socks_port}", f"http://localhost:{http_port}/"
    )
    assert done.returncode == 97  # CURLE_PROXY: the SOCKS reply was a failure
    assert b"(2)" in done.stderr, done.stderr  # curl prints the REP code it got


async def test_httpx_through_socks(nursery: trio.Nursery) -> None:
    http_port = await serve(nursery, _http)
    opener = Recorder()
    socks_port = await start_socks(nursery, opener)

    def fetch() -> httpx.Response:
        with httpx.Client(proxy=f"socks5://127.0.0.1:{socks_port}", trust_env=False) as client:
            return client.get(f"http://localhost:{http_port}/via-httpx", timeout=10)

    response = await trio.to_thread.run_sync(fetch)
    assert response.status_code == 200
    assert response.text == "you asked for GET /via-httpx HTTP/1.1"
    assert opener.asked == [("localhost", http_port)]


async def test_half_close_and_bulk_data(nursery: trio.Nursery) -> None:
    port = await serve(nursery, _reverser)
    socks_port = await start_socks(nursery, Recorder())
    stream = await trio.open_tcp_stream("127.0.0.1", socks_port)
    payload = os.urandom(3_000_000)
    async with stream:
        await stream.send_all(b"\x05\x01\x00" + connect_v4(port))
        answer = b""
        while len(answer) < 12:
            answer += await stream.receive_some(12 - len(answer))
        assert reply_code(answer) == Reply.SUCCEEDED
        await stream.send_all(payload)
        await stream.send_eof()  # the reverser answers only after our EOF reaches it
        got = bytearray()
        while chunk := await stream.receive_some(65536):
            got += chunk
    assert bytes(got) == payload[::-1]


@pytest.mark.parametrize(
    ("make_opener", "request_for", "reply"),
    [
        # Exit policy refusal (loopback not allowed) → 0x02.
        (lambda: Recorder(ExitPolicy()), lambda port: connect_v4(port), Reply.NOT_ALLOWED),
        # Nothing listens → 0x05.
        (lambda: Recorder(), lambda port: connect_v4(_closed_port()), Reply.CONNECTION_REFUSED),
        # The name does not resolve → 0x04.
        (
            lambda: Recorder(resolve=_nxdomain),
            lambda port: connect_name(b"nx.example", port),
            Reply.HOST_UNREACHABLE,
        ),
        # A bad hostname → 0x04, before any stream is opened.
        (lambda: Recorder(), lambda port: connect_name(b"bad name", port), Reply.HOST_UNREACHABLE),
        # BIND, UDP ASSOCIATE, an unknown ATYP → 0x07, 0x07, 0x08.
        (
            lambda: Recorder(),
            lambda port: b"\x05\x02" + connect_v4(port)[2:],
            Reply.COMMAND_NOT_SUPPORTED,
        ),
        (
            lambda: Recorder(),
            lambda port: b"\x05\x03" + connect_v4(port)[2:],
            Reply.COMMAND_NOT_SUPPORTED,
        ),
        (
            lambda: Recorder(),
            lambda port: b"\x05\x01\x00\x07" + bytes(6),
            Reply.ADDRESS_TYPE_NOT_SUPPORTED,
        ),
        # A malformed request (bad version) → 0x01.
        (lambda: Recorder(), lambda port: b"\x04" + connect_v4(port)[1:], Reply.GENERAL_FAILURE),
    ],
)
async def test_failures_map_to_reply_codes(
    nursery: trio.Nursery,
    make_opener: Callable[[], Recorder],
    request_for: Callable[[int], bytes],
    reply: Reply,
) -> None:
    http_port = await serve(nursery, _http)
    socks_port = await start_socks(nursery, make_opener())
    assert reply_code(await raw_request(socks_port, request_for(http_port))) == reply


async def test_ttl_expired_and_general_failure(nursery: trio.Nursery) -> None:
    async def hangs(host: str, port: int) -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError

    async def crashes(host: str, port: int) -> trio.abc.Stream:
        raise RuntimeError("a bug in the opener")

    async def times_out(host: str, port: int) -> trio.abc.Stream:
        raise StreamOpenFailed(ResetReason.TTL_EXPIRED, "exit timed out")

    slow = await start_socks(nursery, hangs, connect_timeout=0.2)
    assert reply_code(await raw_request(slow, connect_v4(80))) == Reply.TTL_EXPIRED
    exit_timeout = await start_socks(nursery, times_out)
    assert reply_code(await raw_request(exit_timeout, connect_v4(80))) == Reply.TTL_EXPIRED
    buggy = await start_socks(nursery, crashes)
    assert reply_code(await raw_request(buggy, connect_v4(80))) == Reply.GENERAL_FAILURE
    # The bug did not take the server down.
    assert reply_code(await raw_request(buggy, connect_v4(80))) == Reply.GENERAL_FAILURE


async def test_garbage_leaves_the_server_running(nursery: trio.Nursery) -> None:
    http_port = await serve(nursery, _http)
    socks_port = await start_socks(nursery, Recorder(), handshake_timeout=0.5)
    garbage = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x05\x00",  # no methods
        b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50",  # empty hostname
        b"\x05\xff" + os.urandom(4000),
        os.urandom(70_000),
        b"",  # connect and close at once
        b"\x05",  # then stall until the handshake timeout
    ]

    async def poke(data: bytes) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", socks_port)
        async with stream:
            try:
                if data:
                    await stream.send_all(data)
                with trio.move_on_after(3):
                    while await stream.receive_some(1024):
                        pass
            except trio.BrokenResourceError:
                pass  # the server closed on us mid-write: fine

    async with trio.open_nursery() as pokes:
        for data in garbage * 3:
            pokes.start_soon(poke, data)
    answer = await raw_request(socks_port, connect_v4(http_port) + b"GET / HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"\x05\x00\x05\x00")
    assert answer.endswith(b"you asked for GET / HTTP/1.0")


async def test_client_limit(nursery: trio.Nursery) -> None:
    http_port = await serve(nursery, _http)
    socks_port = await start_socks(nursery, Recorder(), max_clients=1)
    first = await trio.open_tcp_stream("127.0.0.1", socks_port)
    await first.send_all(b"\x05\x01\x00")
    assert await first.receive_some(2) == b"\x05\x00"  # the one slot is taken
    second = await trio.open_tcp_stream("127.0.0.1", socks_port)
    async with second:
        with trio.fail_after(2):
            with contextlib.suppress(trio.BrokenResourceError):
                assert await second.receive_some(10) == b""  # closed at once
    await first.aclose()
    await trio.sleep(0.05)  # let the server notice and free the slot
    answer = await raw_request(socks_port, connect_v4(http_port) + b"GET / HTTP/1.0\r\n\r\n")
    assert answer.endswith(b"GET / HTTP/1.0")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _nxdomain(host: str, port: int) -> list[IPAddress]:
    raise StreamOpenFailed(ResetReason.HOST_UNREACHABLE, "NXDOMAIN")
