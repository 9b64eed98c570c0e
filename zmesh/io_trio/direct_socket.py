"""A trio stream over a connected TCP socket that calls the kernel directly.

``trio.SocketStream`` yields to the scheduler after every call, also after a ``recv`` or
``send`` that succeeded at once. On zmesh's data path (a cell forwarded, a SOCKS reply, an
exit's first response bytes) those extra scheduler passes were most of the latency of each
hop. :class:`DirectSocketStream` calls ``read(2)`` / ``write(2)`` on trio's non-blocking socket
and parks in ``trio.lowlevel.wait_readable`` / ``wait_writable`` only when the kernel says
EAGAIN.

Fairness: a read that returned at least ``YIELD_AFTER`` bytes is followed by a checkpoint, so a
bulk sender cannot keep one task running forever; a small read is normally followed by a read
that would block, which parks anyway. Cancellation is delivered at those parking points and
checkpoints, which every loop over this stream reaches.

The socket stays trio's: the stream never closes the fd itself, only ``aclose`` through trio
(which also wakes any task parked on it with ``ClosedResourceError``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

import trio

__all__ = ["DirectSocketStream", "YIELD_AFTER"]

YIELD_AFTER = 16 * 1024
_DEFAULT_READ = 64 * 1024


class DirectSocketStream(trio.abc.HalfCloseableStream):
    """``trio.SocketStream``'s interface without a scheduler pass per successful call.
    One task may receive and one task may send at a time, as with any trio stream."""

    def __init__(self, transport: trio.SocketStream) -> None:
        self.transport = transport
        self.socket = transport.socket
        self._fd = transport.socket.fileno()
        self._closed = False
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check_open()
        size = _DEFAULT_READ if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be at least 1")
        while True:
            try:
                data = os.read(self._fd, size)
                break
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd)
                self._check_open()
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket error: {exc}") from exc
        if len(data) >= YIELD_AFTER:
            await trio.lowlevel.checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        rest = self.send_nowait(data)
        while rest is not None:
            await trio.lowlevel.wait_writable(self._fd)
            rest = self.send_nowait(rest)

    def send_nowait(self, data: bytes | bytearray | memoryview) -> memoryview | None:
        """Write what the socket takes now; returns the rest (``None`` when all went)."""
        self._check_open()
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self._fd, view)
            except BlockingIOError:
                return view
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket error: {exc}") from exc
            view = view[sent:]
        return None

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await trio.lowlevel.wait_writable(self._fd)

    async def send_eof(self) -> None:
        self._check_open()
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise trio.BrokenResourceError(f"socket error: {exc}") from exc
        await trio.lowlevel.checkpoint()

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self.socket.setsockopt(level, option, value)

    async def aclose(self) -> None:
        self._closed = True
        await self.transport.aclose()
