"""A tiny HTTP/1.1 server (RFC 9112 subset) for ``zmesh demo``, the integration tests and the
benchmark: the destination a circuit's exit connects to, on loopback, with no dependencies.

``GET /<name>`` returns a registered body (``Content-Length``, then close); ``GET /bytes/<n>``
returns ``n`` deterministic pseudo-random bytes generated on the fly (so 50 MB never sit in
memory); ``POST /sha256`` reads a ``Content-Length`` body and answers with its SHA-256 hex.
One request per connection. Malformed requests get ``400`` and a close.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping

import trio

__all__ = ["serve_test_site", "pattern_bytes", "pattern_sha256", "MAX_GENERATED"]

MAX_HEAD = 16 * 1024
MAX_UPLOAD = 1 << 30
MAX_GENERATED = 1 << 31
_BLOCK = 64 * 1024


def _block(index: int) -> bytes:
    # SHA-256 in counter mode: deterministic, incompressible, cheap to check from both ends.
    seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
    return hashlib.shake_256(seed).digest(_BLOCK)


def pattern_bytes(n: int) -> bytes:
    """The first ``n`` bytes that ``GET /bytes/<n>`` serves (for small checks)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += _block(i)
        i += 1
    return bytes(out[:n])


def pattern_sha256(n: int) -> str:
    h = hashlib.sha256()
    i = 0
    left = n
    while left > 0:
        block = _block(i)[: min(_BLOCK, left)]
        h.update(block)
        left -= len(block)
        i += 1
    return h.hexdigest()


async def _read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes]:
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise ValueError("head too large")
        data = await stream.receive_some(4096)
        if not data:
            raise ValueError("closed before the head ended")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    return head, rest


async def _respond(
    stream: trio.abc.Stream, status: str, body: bytes, ctype: str = "text/plain"
) -> None:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head + body)


async def _handle(stream: trio.abc.Stream, pages: Mapping[str, bytes]) -> None:
    try:
        head, rest = await _read_head(stream)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    except (ValueError, UnicodeDecodeError):
        await _respond(stream, "400 Bad Request", b"bad request\n")
        return
    if method == "GET" and target in pages:
        ctype = "text/html; charset=utf-8" if target.endswith(("/", ".html")) else "text/plain"
        await _respond(stream, "200 OK", pages[target], ctype)
    elif method == "GET" and target.startswith("/bytes/") and target[7:].isdigit():
        n = int(target[7:])
        if n > MAX_GENERATED:
            await _respond(stream, "413 Content Too Large", b"too large\n")
            return
        await stream.send_all(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}"
            "\r\nConnection: close\r\n\r\n".encode()
        )
        i = 0
        left = n
        while left > 0:
            block = _block(i)
            if left < len(block):
                block = block[:left]
            await stream.send_all(block)
            left -= len(block)
            i += 1
    elif method == "POST" and target == "/sha256":
        try:
            length = int(headers.get("content-length", ""))
        except ValueError:
            await _respond(stream, "411 Length Required", b"length required\n")
            return
        if not 0 <= length <= MAX_UPLOAD:
            await _respond(stream, "413 Content Too Large", b"too large\n")
            return
        h = hashlib.sha256(rest[:length])
        got = min(len(rest), length)
        while got < length:
            data = await stream.receive_some(_BLOCK)
            if not data:
                return
            data = data[: length - got]
            h.update(data)
            got += len(data)
        await _respond(stream, "200 OK", h.hexdigest().encode())
    else:
        await _respond(stream, "404 Not Found", b"not found\n")


async def serve_test_site(
    pages: Mapping[str, bytes],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status`` gets the bound port."""

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _handle(stream, pages)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


def main(argv: list[str] | None = None) -> int:
    """``python -m zmesh.io_trio.testsite [--host H] [--port P]``: serve until killed; prints
    ``{"ready": true, "port": P}`` once listening."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m zmesh.io_trio.testsite")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: serve_test_site(
                    {"/": b"zmesh test site\n"},
                    host=args.host,
                    port=args.port,
                    task_status=task_status,
                )
            )
            print(json.dumps({"ready": True, "port": port}), flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
