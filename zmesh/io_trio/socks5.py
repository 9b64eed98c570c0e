"""SOCKS5 server (RFC 1928, RFC 1929 auth) on trio: the local applications' door into the mesh.

The protocol lives in :class:`~zmesh.sansio.exit.socks5.Socks5ServerConnection`; this driver
reads and writes the socket, calls ``open_stream(host, port)`` (through a circuit, or straight
to :func:`~zmesh.io_trio.exit_direct.open_exit_connection`), answers with the reply code the
failure's :class:`~zmesh.sansio.streams.ResetReason` maps to, and then splices bytes both ways,
passing each direction's EOF on (half-close) until both directions are done.

Every client gets a bounded handshake time; at most ``max_clients`` are served at once and the
rest are closed at once (a SOCKS client retries or fails fast instead of queueing unseen).
A malformed request gets an error reply and a close; nothing a client sends stops the server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial

import trio

from zmesh.io_trio.direct_socket import DirectSocketStream
from zmesh.sansio.exit.socks5 import (
    ConnectRequested,
    HandshakeFailed,
    Reply,
    Socks5Error,
    Socks5ServerConnection,
    reply_for_reset,
)
from zmesh.sansio.streams import StreamOpenFailed
from zmesh.sansio.wire import ProtocolError

__all__ = ["OpenStream", "serve_socks5", "handle_socks5_client", "StreamOpenFailed"]

log = logging.getLogger(__name__)

#: ``open_stream(host, port)``: a byte stream to the destination, or ``StreamOpenFailed``.
OpenStream = Callable[[str, int], Awaitable[trio.abc.Stream]]

DEFAULT_MAX_CLIENTS = 512
HANDSHAKE_TIMEOUT = 30.0  # seconds from accept to a complete CONNECT request
CONNECT_TIMEOUT = 120.0  # seconds open_stream may take (a circuit may have to be built first)
_RECEIVE_SIZE = 65_536


async def serve_socks5(
    open_stream: OpenStream,
    *,
    host: str = "127.0.0.1",
    port: int = 1080,
    auth: Mapping[str, str] | None = None,
    max_clients: int = DEFAULT_MAX_CLIENTS,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve SOCKS5 on ``host``:``port`` until cancelled.

    ``auth`` (username → password) makes RFC 1929 authentication mandatory. ``task_status``
    receives the listeners (``port=0`` picks a free port: read it from
    ``listeners[0].socket.getsockname()``).
    """
    limiter = trio.CapacityLimiter(max_clients)
    handler = partial(
        _guarded_handler,
        open_stream=open_stream,
        auth=auth,
        limiter=limiter,
        handshake_timeout=handshake_timeout,
        connect_timeout=connect_timeout,
    )
    await trio.serve_tcp(handler, port, host=host, task_status=task_status)


async def _guarded_handler(
    client: trio.SocketStream,
    *,
    open_stream: OpenStream,
    auth: Mapping[str, str] | None,
    limiter: trio.CapacityLimiter,
    handshake_timeout: float,
    connect_timeout: float,
) -> None:
    try:
        limiter.acquire_nowait()
    except trio.WouldBlock:
        log.warning("SOCKS5: %d clients already, refusing one", limiter.total_tokens)
        await client.aclose()
        return
    try:
        # Direct socket calls: no scheduler pass after each successful read or write of the
        # application's bytes (zmesh/io_trio/direct_socket.py).
        async with DirectSocketStream(client) as stream:
            await handle_socks5_client(
                stream,
                open_stream,
                auth=auth,
                handshake_timeout=handshake_timeout,
                connect_timeout=connect_timeout,
            )
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away; nothing to tell anyone
    except Exception:
        # serve_tcp would let one client's bug cancel the whole server; log it instead.
        log.exception("SOCKS5: unexpected error serving a client")
    finally:
        limiter.release()


async def handle_socks5_client(
    client: trio.abc.HalfCloseableStream,
    open_stream: OpenStream,
    *,
    auth: Mapping[str, str] | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Serve one SOCKS5 client on an accepted stream (the caller closes ``client``)."""
    conn = Socks5ServerConnection(auth)
    request: ConnectRequested | None = None
    with trio.move_on_after(handshake_timeout):
        while request is None:
            data = await client.receive_some(_RECEIVE_SIZE)
            if not data:
                return
            try:
                conn.receive_data(data)
            except ProtocolError as exc:
                log.debug("SOCKS5: malformed input: %s", exc)
                reply = exc.reply if isinstance(exc, Socks5Error) else Reply.GENERAL_FAILURE
                conn.fail(reply)
                await _flush(client, conn)
                return
            await _flush(client, conn)
            while (event := conn.next_event()) is not None:
                if isinstance(event, HandshakeFailed):
                    log.debug("SOCKS5: handshake failed: %s", event.reason)
                    return
                request = event
    if request is None:
        log.debug("SOCKS5: handshake timed out")
        return

    try:
        with trio.fail_after(connect_timeout):
            remote = await open_stream(request.host, request.port)
    except StreamOpenFailed as exc:
        conn.send_reply(reply_for_reset(exc.reason))
        await _flush(client, conn)
        return
    except trio.TooSlowError:
        conn.send_reply(Reply.TTL_EXPIRED)
        await _flush(client, conn)
        return
    except Exception:
        log.exception("SOCKS5: open_stream failed unexpectedly")
        conn.send_reply(Reply.GENERAL_FAILURE)
        await _flush(client, conn)
        return

    async with remote:
        conn.send_reply(Reply.SUCCEEDED)
        await _flush(client, conn)
        early = conn.early_data()
        if early:
            await remote.send_all(early)
        await splice(client, remote)


async def _flush(client: trio.abc.Stream, conn: Socks5ServerConnection) -> None:
    out = conn.data_to_send()
    if out:
        await client.send_all(out)


async def splice(a: trio.abc.Stream, b: trio.abc.Stream) -> None:
    """Copy bytes both ways until both directions have ended.

    An EOF in one direction is passed on with ``send_eof`` (half-close) when the receiving side
    supports it; otherwise, and on any error, both directions stop.
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pump, a, b, nursery.cancel_scope)
        nursery.start_soon(_pump, b, a, nursery.cancel_scope)


async def _pump(src: trio.abc.Stream, dst: trio.abc.Stream, scope: trio.CancelScope) -> None:
    try:
        while data := await src.receive_some(_RECEIVE_SIZE):
            await dst.send_all(data)
        if isinstance(dst, trio.abc.HalfCloseableStream):
            await dst.send_eof()
        else:
            scope.cancel()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        scope.cancel()
