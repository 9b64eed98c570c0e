"""TLS over a trio socket for the cell links, tuned for batching (RFC 8446 via Python's ``ssl``).

``trio.SSLStream`` returns at most one TLS record (16 KiB) per ``receive_some`` and yields to
the scheduler on every call, so a link reader woke the node runtime for every ~10 cells. This
stream instead reads up to 256 KiB from the socket and decrypts **every complete record in it**
before returning, so one wake-up of the runtime carries up to ~250 cells. Writes encrypt the
whole buffer and hand the socket one ``send_all``.

It is an ordinary ``trio.abc.Stream`` (``send_all`` / ``receive_some`` / ``aclose``) with the
single-reader, single-writer use of the link: one task reads, one task writes. Records that
reading produces for the peer (TLS 1.3 KeyUpdate answers, tickets) wait in the outgoing BIO and
leave with the next write; ``needs_flush`` tells the writer to send them.

Socket calls go through :class:`~zmesh.io_trio.direct_socket.DirectSocketStream`: straight to
the non-blocking socket, parking only on EAGAIN (``trio.SocketStream`` yields to the scheduler
after every call, which was most of a relay hop's latency).
"""

from __future__ import annotations

import contextlib
import ssl

import trio

from zmesh.io_trio.direct_socket import DirectSocketStream

__all__ = ["TlsStream", "READ_SIZE"]

READ_SIZE = 256 * 1024  # socket read per wake-up; ~16 TLS records


class TlsStream(trio.abc.Stream):
    """TLS on a connected ``trio.SocketStream``; call :meth:`do_handshake` first."""

    def __init__(
        self, transport: trio.SocketStream, context: ssl.SSLContext, *, server_side: bool
    ) -> None:
        self.transport = transport
        self._sock = DirectSocketStream(transport)  # also sets TCP_NODELAY
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side)
        self._eof = False
        self._unsent: memoryview | None = None  # TLS bytes send_nowait could not write

    def getpeercert(self, binary_form: bool = True) -> bytes | None:
        der = self._obj.getpeercert(binary_form=True)
        return der if binary_form else None

    @property
    def needs_flush(self) -> bool:
        return self._out.pending > 0

    @property
    def has_unsent(self) -> bool:
        """:meth:`send_nowait` left bytes that :meth:`send_pending` must write first."""
        return self._unsent is not None

    async def _read_socket(self) -> bool:
        data = await self._sock.receive_some(READ_SIZE)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    async def _send_raw(self, data: bytes | bytearray | memoryview) -> None:
        await self._sock.send_all(data)

    async def do_handshake(self) -> None:
        while True:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._read_socket():
                    raise trio.BrokenResourceError("EOF during the TLS handshake") from None
                continue
            except ssl.SSLError as exc:
                await self._flush_quietly()
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
            await self._flush()
            return

    async def _flush(self) -> None:
        if self._unsent is not None:
            unsent, self._unsent = self._unsent, None
            await self._send_raw(unsent)
        if self._out.pending:
            await self._send_raw(self._out.read())

    def send_nowait(self, data: bytes) -> bool:
        """Encrypt ``data`` and write what the socket takes now, without waiting; True when
        all of it went. Otherwise the rest is kept (``has_unsent``) and the single writer
        must call :meth:`send_pending` before anything else it sends."""
        if self._unsent is not None:
            raise trio.BusyResourceError("unsent bytes wait for send_pending()")
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError(f"TLS error: {exc}") from exc
        self._unsent = self._sock.send_nowait(self._out.read())
        return self._unsent is None

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self._flush()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Everything decryptable from one socket read (``max_bytes`` is advisory)."""
        if self._eof:
            await trio.lowlevel.checkpoint()
            return b""
        parts: list[bytes] = []
        while True:
            try:
                chunk = self._obj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                if parts:
                    return b"".join(parts)
                if not await self._read_socket():
                    self._eof = True
                    return b""
                continue
            except ssl.SSLZeroReturnError:
                self._eof = True
                return b"".join(parts)
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS error: {exc}") from exc
            if not chunk:
                self._eof = True
                return b"".join(parts)
            parts.append(chunk)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._unsent is not None:
            await self._flush()  # keeps the byte order of an earlier send_nowait
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError(f"TLS error: {exc}") from exc
        await self._send_raw(self._out.read())

    async def send_pending(self) -> None:
        """Send records that reading produced (post-handshake messages)."""
        await self._flush()

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        # No close_notify: the WebSocket Close frame already ended the session, and waiting
        # for the peer's close_notify would let it hold our shutdown.
        await self._sock.aclose()
