"""The rendezvous service and client: WebSocket over HTTPS (trio-websocket), self-hostable.

Nodes publish their signed peer records and fetch the current set. The service keeps a bounded
:class:`~zmesh.sansio.signaling.rendezvous.RecordStore` (records verified, newest per node,
expired ones dropped) and answers one request per binary message, in order. It is a mailbox,
not a trust anchor: clients verify every record they fetch, so a hostile service can only
withhold or replay stale records, and a record's expiry bounds the replay.

Abuse bounds: at most ``max_connections`` concurrent connections, at most ``max_requests``
requests per connection, a per-message size cap, an idle timeout, and a cap on how long one
connection may last (``max_connection_time``: otherwise a client sending a request just
inside the idle timeout would keep its slot for ``max_requests`` x ``idle_timeout``).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

from zmesh.io_trio.state import NodeIdentity, client_ssl_context
from zmesh.sansio.signaling.peer_record import PeerRecord
from zmesh.sansio.signaling.rendezvous import (
    MAX_FETCH,
    MAX_MESSAGE_SIZE,
    Fetch,
    Publish,
    Records,
    RecordStore,
    Result,
    decode_message,
    encode_message,
)
from zmesh.sansio.wire import ProtocolError

__all__ = ["RendezvousService", "RendezvousError", "publish_record", "fetch_records", "PATH"]

log = logging.getLogger(__name__)

PATH = "/zmesh/rendezvous"


class RendezvousError(Exception):
    """The service refused a request or could not be reached."""


@dataclass
class RendezvousStats:
    connections: int = 0
    published: int = 0
    refused: int = 0
    fetches: int = 0


class RendezvousService:
    """The service state plus its trio server loop (``serve``)."""

    def __init__(
        self,
        identity: NodeIdentity,
        *,
        capacity: int = 4096,
        max_connections: int = 256,
        max_requests: int = 1000,
        idle_timeout: float = 60.0,
        max_connection_time: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.store = RecordStore(capacity)
        self.stats = RendezvousStats()
        self._slots = trio.Semaphore(max_connections)
        self._max_requests = max_requests
        self._idle = idle_timeout
        self._lifetime = max_connection_time
        self._clock = clock  # wall clock: record expiry is absolute unix time

    def handle(self, data: bytes) -> bytes:
        """Answer one request message (sans-IO core of the handler)."""
        try:
            message = decode_message(data)
        except ProtocolError as exc:
            self.stats.refused += 1
            return encode_message(Result(False, f"malformed: {exc}"))
        now = self._clock()
        if isinstance(message, Publish):
            try:
                self.store.publish(message.record, now)
            except ProtocolError as exc:
                self.stats.refused += 1
                return encode_message(Result(False, f"{type(exc).__name__}: {exc}"))
            self.stats.published += 1
            return encode_message(Result(True))
        if isinstance(message, Fetch):
            self.stats.fetches += 1
            return encode_message(Records(tuple(self.store.snapshot(now, message.limit))))
        self.stats.refused += 1
        return encode_message(Result(False, "clients send PUBLISH or FETCH only"))

    async def _handler(self, request: WebSocketRequest) -> None:
        if request.path != PATH or self._slots.value == 0:
            await request.reject(404 if request.path != PATH else 503)
            return
        async with self._slots:
            self.stats.connections += 1
            ws = await request.accept()
            try:
                with trio.move_on_after(self._lifetime):
                    for _ in range(self._max_requests):
                        with trio.fail_after(self._idle):
                            data = await ws.get_message()
                        if not isinstance(data, bytes):
                            await ws.aclose(1003, "binary only")
                            return
                        await ws.send_message(self.handle(data))
                await ws.aclose(1008, "request or time limit")
            except (ConnectionClosed, trio.TooSlowError, trio.BrokenResourceError):
                await ws.aclose()

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; ``task_status`` gets the bound port."""
        ssl_ctx = self.identity.server_ssl_context()
        async with trio.open_nursery() as nursery:
            srv = await nursery.start(
                lambda task_status: serve_websocket(
                    self._guarded_handler,
                    host,
                    port,
                    ssl_ctx,
                    max_message_size=MAX_MESSAGE_SIZE,
                    connect_timeout=10,
                    disconnect_timeout=5,
                    task_status=task_status,
                )
            )
            task_status.started(srv.port)

    async def _guarded_handler(self, request: WebSocketRequest) -> None:
        # A misbehaving client must never take the service down.
        with contextlib.suppress(
            ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError
        ):
            await self._handler(request)


async def _request(url: str, message: bytes, timeout: float) -> bytes:
    ctx: ssl.SSLContext | None = client_ssl_context() if url.startswith("wss:") else None
    try:
        with trio.fail_after(timeout):
            async with open_websocket_url(
                url,
                ctx,
                max_message_size=MAX_MESSAGE_SIZE,
                connect_timeout=timeout,
                disconnect_timeout=2,
            ) as ws:
                await ws.send_message(message)
                reply = await ws.get_message()
    except (
        HandshakeError,
        ConnectionClosed,
        OSError,
        trio.TooSlowError,
        trio.BrokenResourceError,
    ) as exc:
        raise RendezvousError(f"rendezvous {url} unreachable: {exc.__class__.__name__}") from exc
    if not isinstance(reply, bytes):
        raise RendezvousError("rendezvous replied with text")
    return reply


async def publish_record(url: str, record: PeerRecord, *, timeout: float = 10.0) -> None:
    """Publish our record; raises :class:`RendezvousError` if the service refuses it."""
    reply = decode_message(await _request(url, encode_message(Publish(record.encode())), timeout))
    if not isinstance(reply, Result) or not reply.ok:
        reason = reply.reason if isinstance(reply, Result) else "unexpected reply"
        raise RendezvousError(f"record refused: {reason}")


async def fetch_records(
    url: str, *, limit: int = MAX_FETCH, timeout: float = 10.0, now: float | None = None
) -> list[PeerRecord]:
    """Fetch and verify the current records; records that fail verification are skipped."""
    reply = decode_message(await _request(url, encode_message(Fetch(limit)), timeout))
    if not isinstance(reply, Records):
        raise RendezvousError("unexpected reply to FETCH")
    now = time.time() if now is None else now
    out: list[PeerRecord] = []
    for raw in reply.records:
        try:
            out.append(PeerRecord.decode(raw).verify(now))
        except ProtocolError as exc:
            log.debug("skipping a record from the rendezvous: %s", exc)
    return out
