"""The WebSocket-over-HTTPS link: the fallback transport between two nodes (RFC 6455 over TLS 1.3).

Wire format (docs/wire/websocket-link.md): TLS 1.3 with each node's self-signed certificate,
an HTTP/1.1 upgrade to ``GET /zmesh/link`` with subprotocol ``zmesh-link.v1``, then the identity
handshake of :mod:`zmesh.sansio.signaling.link_auth` (bound to the server certificate's
SHA-256), then cells. Every binary data message carries one or more whole 1024-byte cells back
to back (at most :data:`MAX_CELLS_PER_MESSAGE`): under load the writer coalesces what is queued
into one message and one TLS write, which is what makes the link cheap per cell in Python.
An idle link sends one cell per message. Keepalive is the WebSocket Ping/Pong (RFC 6455 §5.5.2)
with an 8-byte counter; its round trip goes into ``LinkStats.rtt``.

The HTTP upgrade goes through wsproto; from the identity handshake on, frames go through the
link's own RFC 6455 codec (:mod:`zmesh.sansio.websocket_frames`): wsproto's generic per-frame
machinery and its pure-Python masking cost more per byte than a relay's whole cell work. The
stream underneath is :class:`~zmesh.io_trio.tls.TlsStream` rather than trio-websocket's
connection object, which does one ``send_all`` per message and moves every received message
through a one-slot channel and an extra task.

Queues are bounded both ways: :meth:`WebSocketLink.send_cell` blocks when ``send_queue`` cells
wait to be written, and the reader stops reading the socket while ``receive_queue`` cells wait
to be consumed, so back-pressure reaches the peer's TCP window.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import secrets
import ssl
import struct
from collections.abc import Awaitable, Callable

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    Event,
    RejectConnection,
    Request,
)
from wsproto.utilities import LocalProtocolError as WsLocalError
from wsproto.utilities import RemoteProtocolError as WsRemoteError

from zmesh.io_trio.link import LinkClosed, LinkStats
from zmesh.io_trio.state import NodeIdentity, cert_sha256, client_ssl_context
from zmesh.io_trio.tls import READ_SIZE, TlsStream
from zmesh.sansio.signaling.link_auth import AuthState, LinkAuthenticator, Role
from zmesh.sansio.websocket_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    BinaryMessage,
    CloseFrame,
    FrameDecoder,
    PingFrame,
    PongFrame,
    encode_close_payload,
    encode_frame,
    encode_frame_header,
)
from zmesh.sansio.wire import ProtocolError

__all__ = [
    "CELL_SIZE",
    "MAX_CELLS_PER_MESSAGE",
    "LINK_PATH",
    "SUBPROTOCOL",
    "WebSocketLink",
    "connect_websocket_link",
    "serve_websocket_links",
    "LinkSettings",
]

log = logging.getLogger(__name__)

CELL_SIZE = 1024  # zmesh cells are one size on every link (DESIGN.md §4); ">> 10" below
MAX_CELLS_PER_MESSAGE = 64  # 64 KiB messages: one TLS write of ~4 records
LINK_PATH = "/zmesh/link"
SUBPROTOCOL = "zmesh-link.v1"
MAX_HANDSHAKE_MESSAGE = 256
RECEIVE_CHUNK = READ_SIZE
_PING = struct.Struct("!Q")


class LinkSettings:
    """Tunables of a link; defaults suit a WAN link, tests shorten the timers."""

    def __init__(
        self,
        *,
        send_queue: int = 2048,
        receive_queue: int = 2048,
        keepalive_interval: float = 10.0,
        keepalive_timeout: float = 30.0,
        handshake_timeout: float = 10.0,
        max_pending_handshakes: int = 256,
    ) -> None:
        self.send_queue = send_queue
        # Connections still in TLS + upgrade + identity handshake: each costs a task and TLS
        # state before we know who it is, so their number has a bound of its own.
        self.max_pending_handshakes = max_pending_handshakes
        self.receive_queue = receive_queue
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.handshake_timeout = handshake_timeout


class _Transport:
    """The stream plus the framing: wsproto for the HTTP upgrade, then the link's own RFC 6455
    codec (``zmesh.sansio.websocket_frames``); reads events, writes frames; one writer at a
    time."""

    def __init__(self, stream: TlsStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self.client = ws.client
        self._frames: FrameDecoder | None = None
        self._events: collections.deque[object] = collections.deque()
        self.flush_wanted = False  # reading produced TLS records for the peer

    def start_frames(self) -> None:
        """The upgrade is done: from here on the link's codec frames and parses. The client
        speaks first after the upgrade, so no byte is in flight at this switch."""
        self._frames = FrameDecoder(
            expect_masked=not self.client,
            max_message=MAX_CELLS_PER_MESSAGE * CELL_SIZE,
            # A partial frame plus what one TLS read decrypts (a read plus a partial record).
            max_buffer=MAX_CELLS_PER_MESSAGE * CELL_SIZE + 14 + READ_SIZE + 32 * 1024,
        )

    async def next_event(self) -> object:
        while not self._events:
            data = await self.stream.receive_some(RECEIVE_CHUNK)
            if not data:
                raise LinkClosed("peer closed the connection")
            frames = self._frames
            if frames is None:
                self.ws.receive_data(data)
                self._events.extend(self.ws.events())
            else:
                frames.receive_data(data)
                while (event := frames.next_event()) is not None:
                    self._events.append(event)
            if self.stream.needs_flush:
                self.flush_wanted = True
        return self._events.popleft()

    def pending_events(self) -> collections.deque[object]:
        return self._events

    async def send(self, *events: Event) -> None:
        """wsproto events: the HTTP upgrade only."""
        await self.stream.send_all(b"".join(self.ws.send(e) for e in events))

    def frame(self, opcode: int, payload: bytes | bytearray | memoryview) -> bytes:
        """One frame, masked with a fresh key when this end is the client (§5.3)."""
        return encode_frame(opcode, payload, secrets.token_bytes(4) if self.client else None)

    async def send_frames(self, *frames: bytes) -> None:
        await self.stream.send_all(b"".join(frames))

    async def receive_message(self, limit: int) -> bytes:
        """One whole binary message during the identity handshake (Pings answered inline)."""
        while True:
            event = await self.next_event()
            if isinstance(event, BinaryMessage):
                if len(event.data) > limit:
                    raise LinkClosed("handshake message too large")
                return event.data
            if isinstance(event, PingFrame):
                await self.send_frames(self.frame(OP_PONG, event.payload))
            elif isinstance(event, CloseFrame):
                raise LinkClosed(f"peer closed during handshake ({event.code})")


class WebSocketLink:
    """An authenticated cell pipe over one WebSocket connection; implements ``Link``.

    Call :meth:`run` in a nursery to move bytes; the link is usable once authenticated (both
    constructors below return it authenticated).
    """

    kind = "websocket"

    def __init__(
        self,
        transport: _Transport,
        peer_id: bytes,
        settings: LinkSettings,
        *,
        remote: str = "",
    ) -> None:
        self._t = transport
        self._peer_id = peer_id
        self._settings = settings
        self._stats = LinkStats()
        self.remote = remote
        # Both queues hold runs: each entry is one or more whole cells back to back (a received
        # message, a kernel's output). The bounds count cells, not entries.
        self._send_q: collections.deque[bytes | memoryview] = collections.deque()
        self._send_cells = 0
        self._recv_q: collections.deque[bytes] = collections.deque()
        self._recv_cells = 0
        self._control: list[tuple[int, bytes]] = []  # (opcode, payload), one per opcode
        self._send_ready = trio.Event()  # writer has something to do
        self._send_space = trio.Event()  # a blocked sender may retry
        self._recv_ready = trio.Event()  # a blocked receiver may retry
        self._recv_space = trio.Event()  # the reader may read the socket again
        self._closed: LinkClosed | None = None
        self._closed_event = trio.Event()
        self._writer_busy = True  # until the writer task runs, nothing is written directly
        # Set by the runtime: complete messages go straight to it from the reader task (one
        # task, no queue hand-off per message). None: they queue for receive_*().
        self._deliver: Callable[[list[bytes]], Awaitable[None]] | None = None
        # Called (synchronously) whenever the send queue freed room or the link closed: the
        # runtime's flush task waits for room on any of its links at once.
        self.on_send_room: Callable[[], None] | None = None
        self._cancel = trio.CancelScope()
        self._ping_seq = 0
        self._ping_sent: dict[int, float] = {}
        self._last_heard = trio.current_time()

    # -- Link interface -------------------------------------------------------------------

    @property
    def peer_id(self) -> bytes:
        return self._peer_id

    @property
    def stats(self) -> LinkStats:
        return self._stats

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def send_cell(self, cell: bytes) -> None:
        while True:
            if self._closed is not None:
                raise self._closed
            if self._send_cells < self._settings.send_queue:
                self._send_q.append(cell)
                self._send_cells += 1
                self._write_now()
                # A checkpoint keeps send_cell cancellable and fair without a task switch per
                # cell when nothing else is runnable.
                await trio.lowlevel.checkpoint_if_cancelled()
                return
            self._send_space = trio.Event() if self._send_space.is_set() else self._send_space
            await self._send_space.wait()

    def send_cells_nowait(self, cells: list[bytes]) -> int:
        """Queue as many of ``cells`` as fit; returns how many."""
        if self._closed is not None:
            raise self._closed
        room = self._settings.send_queue - self._send_cells
        taken = cells if len(cells) <= room else cells[: max(room, 0)]
        if taken:
            self._send_q.extend(taken)
            self._send_cells += len(taken)
            self._write_now()
        return len(taken)

    def send_blocks_nowait(self, blocks: list[bytes]) -> int:
        """Queue leading ``blocks`` (each one or more whole cells) while the queue is under
        its bound; returns how many blocks were taken. The runtime's fast path: a run stays
        one buffer until the writer frames it."""
        if self._closed is not None:
            raise self._closed
        limit = self._settings.send_queue
        taken = 0
        for block in blocks:
            if self._send_cells >= limit:
                break
            self._send_q.append(block)
            self._send_cells += len(block) >> 10  # // CELL_SIZE
            taken += 1
        if taken:
            self._write_now()
        return taken

    async def wait_send_space(self) -> None:
        while self._closed is None and self._send_cells >= self._settings.send_queue:
            if self._send_space.is_set():
                self._send_space = trio.Event()
            await self._send_space.wait()
        if self._closed is not None:
            raise self._closed

    async def receive_cell(self) -> bytes:
        await self._wait_received()
        block = self._recv_q.popleft()
        if len(block) > CELL_SIZE:
            self._recv_q.appendleft(block[CELL_SIZE:])
            block = block[:CELL_SIZE]
        self._recv_cells -= 1
        self._recv_space.set()
        await trio.lowlevel.checkpoint_if_cancelled()
        return block

    async def receive_cells(self) -> list[bytes]:
        """Every cell queued so far (at least one), one per entry."""
        return [
            block[i : i + CELL_SIZE]
            for block in await self.receive_blocks()
            for i in range(0, len(block), CELL_SIZE)
        ]

    async def receive_blocks(self) -> list[bytes]:
        """Everything queued so far (at least one cell), as received: each entry is one
        message's whole cells back to back. The runtime's fast path (``receive_block``)."""
        await self._wait_received()
        blocks = list(self._recv_q)
        self._recv_q.clear()
        self._recv_cells = 0
        self._recv_space.set()
        return blocks

    async def _wait_received(self) -> None:
        while not self._recv_q:
            if self._closed is not None:
                raise self._closed
            if self._recv_ready.is_set():
                self._recv_ready = trio.Event()
            await self._recv_ready.wait()

    async def aclose(self) -> None:
        if self._closed is None:
            self._close("closed locally")
            with trio.move_on_after(1) as scope:
                scope.shield = True
                with contextlib.suppress(
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                    trio.BusyResourceError,
                    WsLocalError,
                ):
                    await self._t.send_frames(
                        self._t.frame(OP_CLOSE, encode_close_payload(1000, "bye"))
                    )
        self._cancel.cancel()
        with trio.CancelScope(shield=True):
            await self._t.stream.aclose()

    # -- internals ------------------------------------------------------------------------

    def set_deliver(self, deliver: Callable[[list[bytes]], Awaitable[None]]) -> None:
        """Have the reader task hand every batch of received messages (each one or more
        whole cells) to ``deliver`` and await it, instead of queueing them for
        ``receive_*``. While ``deliver`` waits (back-pressure further on), nothing more is
        read from this link's socket."""
        self._deliver = deliver

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    @property
    def close_reason(self) -> str:
        return self._closed.reason if self._closed is not None else "open"

    def _close(self, reason: str) -> None:
        if self._closed is None:
            self._closed = LinkClosed(reason)
            self._closed_event.set()
            log.debug("link to %s closed: %s", self._peer_id[:4].hex(), reason)
        for event in (self._send_ready, self._send_space, self._recv_ready, self._recv_space):
            event.set()
        if self.on_send_room is not None:
            self.on_send_room()
        self._cancel.cancel()

    async def run(self) -> None:
        """Move bytes until the link closes; never raises for link failures."""
        try:
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._keepalive)
        finally:
            self._close(self._closed.reason if self._closed else "stopped")
            with trio.CancelScope(shield=True):
                await self._t.stream.aclose()

    async def _reader(self) -> None:
        stats = self._stats
        try:
            while True:
                if self._recv_q and self._deliver is not None and not self._t.pending_events():
                    # Everything read so far is parsed: hand the messages on in one call
                    # (also when a control frame came after them in the same read).
                    blocks = list(self._recv_q)
                    self._recv_q.clear()
                    self._recv_cells = 0
                    await self._deliver(blocks)
                event = await self._t.next_event()
                self._last_heard = trio.current_time()
                if self._t.flush_wanted:
                    self._send_ready.set()
                if isinstance(event, BinaryMessage):
                    data = event.data  # whole: the codec reassembles and bounds messages
                    n = len(data)
                    if n == 0 or n % CELL_SIZE:
                        stats.dropped_malformed += 1
                        self._close(f"message of {n} bytes is not whole cells")
                        return
                    # The whole message stays one buffer: the node opens it run by run.
                    self._recv_q.append(data)
                    self._recv_cells += n // CELL_SIZE
                    stats.cells_received += n // CELL_SIZE
                    stats.bytes_received += n
                    if self._deliver is not None:
                        continue  # delivered at the top of the loop
                    self._recv_ready.set()
                    while self._recv_cells >= self._settings.receive_queue:
                        if self._recv_space.is_set():
                            self._recv_space = trio.Event()
                        await self._recv_space.wait()
                        if self._closed is not None:
                            return
                elif isinstance(event, PingFrame):
                    self._queue_control(OP_PONG, event.payload)
                elif isinstance(event, PongFrame):
                    self._on_pong(event.payload)
                elif isinstance(event, CloseFrame):
                    self._close(f"peer closed the link ({event.code})")
                    return
                else:  # nothing else comes out of the codec; be safe all the same
                    stats.dropped_malformed += 1
                    self._close(f"unexpected {type(event).__name__}")
                    return
        except LinkClosed as exc:
            self._close(exc.reason)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            self._close(f"connection failed: {exc.__class__.__name__}")
        except (ProtocolError, WsRemoteError, WsLocalError) as exc:
            self._stats.dropped_malformed += 1
            self._close(f"websocket protocol error: {exc}")

    async def _writer(self) -> None:
        q = self._send_q
        try:
            # _writer_busy is False only while this task is parked on _send_ready: then, and
            # only then, other tasks may write directly (_write_now).
            while True:
                stream = self._t.stream
                if stream.has_unsent or self._t.flush_wanted:
                    self._t.flush_wanted = False
                    await stream.send_pending()
                    continue
                if not q and not self._control:
                    if self._closed is not None:
                        return
                    self._send_ready = trio.Event()
                    self._writer_busy = False
                    try:
                        await self._send_ready.wait()
                    finally:
                        self._writer_busy = True
                    continue
                await stream.send_all(self._frame_queued())
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            self._close(f"send failed: {exc.__class__.__name__}")
        except WsLocalError as exc:
            self._close(f"websocket state: {exc}")

    def _frame_queued(self) -> bytes:
        """Frame queued control events and up to four messages of queued cells (~256 KiB
        keeps the pipe full without holding the event loop for long) for one TLS write."""
        q = self._send_q
        t = self._t
        frames: list[bytes | memoryview] = []
        if self._control:
            frames.extend(t.frame(opcode, payload) for opcode, payload in self._control)
            self._control.clear()
        ncells = 0
        for _ in range(4):
            if not q:
                break
            parts, k = _take_message(q, MAX_CELLS_PER_MESSAGE)
            if t.client:
                # Masked (§5.3): one copy through the masking kernel.
                batch = parts[0] if len(parts) == 1 else b"".join(parts)
                frames.append(t.frame(OP_BINARY, batch))
            else:
                # Unmasked: a 2-10 byte header before the runs, copied once (the TLS write).
                frames.append(encode_frame_header(OP_BINARY, k * CELL_SIZE))
                frames.extend(parts)
            ncells += k
        self._send_cells -= ncells
        self._send_space.set()
        if ncells and self.on_send_room is not None:
            self.on_send_room()
        self._stats.cells_sent += ncells
        self._stats.bytes_sent += ncells * CELL_SIZE
        return b"".join(frames)

    def _write_now(self) -> None:
        """Write what was just queued from the calling task, if the writer task is idle and
        the socket takes it: a forwarded cell then leaves without a task switch (the latency
        case). Whatever the socket does not take waits in the TLS stream for the writer."""
        if self._writer_busy or self._closed is not None or self._t.stream.has_unsent:
            self._send_ready.set()
            return
        try:
            while self._send_q or self._control:
                if not self._t.stream.send_nowait(self._frame_queued()):
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            self._close(f"send failed: {exc.__class__.__name__}")
            return
        except WsLocalError as exc:
            self._close(f"websocket state: {exc}")
            return
        if self._send_q or self._control or self._t.stream.has_unsent:
            self._send_ready.set()

    async def _keepalive(self) -> None:
        interval = self._settings.keepalive_interval
        timeout = self._settings.keepalive_timeout
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            if now - self._last_heard > timeout:
                self._close("keepalive timeout")
                return
            self._ping_seq += 1
            self._ping_sent[self._ping_seq] = now
            if len(self._ping_sent) > 8:  # bound: forget pings that were never answered
                del self._ping_sent[min(self._ping_sent)]
            self._queue_control(OP_PING, _PING.pack(self._ping_seq))

    def _queue_control(self, opcode: int, payload: bytes) -> None:
        # RFC 6455 §5.5.3 lets us answer only the latest Ping, and one unsent Ping of our own is
        # enough: the queue holds at most one frame of each kind, however fast a peer pings
        # while it never reads.
        self._control = [c for c in self._control if c[0] != opcode]
        self._control.append((opcode, payload))
        self._send_ready.set()

    def _on_pong(self, payload: bytes) -> None:
        if len(payload) != _PING.size:
            return
        (seq,) = _PING.unpack(payload)
        sent = self._ping_sent.pop(seq, None)
        if sent is not None:
            self._stats.rtt = trio.current_time() - sent

    async def ping(self) -> None:
        """Send a keepalive now (tests and ``zmesh status`` use it for a fresh RTT)."""
        self._ping_seq += 1
        self._ping_sent[self._ping_seq] = trio.current_time()
        self._queue_control(OP_PING, _PING.pack(self._ping_seq))
        await trio.lowlevel.checkpoint()


def _take_message(
    q: collections.deque[bytes | memoryview], limit: int
) -> tuple[list[bytes | memoryview], int]:
    """Pop the next message's worth of runs (at most ``limit`` cells) off ``q``; a run
    longer than that is split, its tail left at the front as a view (no copy)."""
    parts: list[bytes | memoryview] = []
    cells = 0
    while q and cells < limit:
        run = q[0]
        k = len(run) >> 10  # // CELL_SIZE
        if cells + k <= limit:
            q.popleft()
            parts.append(run)
            cells += k
            continue
        take = limit - cells
        view = run if isinstance(run, memoryview) else memoryview(run)
        parts.append(view[: take * CELL_SIZE])
        q[0] = view[take * CELL_SIZE :]
        cells += take
    return parts, cells


async def _authenticate(transport: _Transport, auth: LinkAuthenticator) -> None:
    transport.start_frames()
    outgoing = auth.start()
    if outgoing:
        await transport.send_frames(*(transport.frame(OP_BINARY, m) for m in outgoing))
    while auth.state is not AuthState.DONE:
        data = await transport.receive_message(MAX_HANDSHAKE_MESSAGE)
        outgoing = auth.receive(data)
        if outgoing:
            await transport.send_frames(*(transport.frame(OP_BINARY, m) for m in outgoing))


async def connect_websocket_link(
    host: str,
    port: int,
    identity: NodeIdentity,
    *,
    expected_peer_id: bytes | None = None,
    expected_cert_sha256: bytes | None = None,
    settings: LinkSettings | None = None,
) -> WebSocketLink:
    """Dial a node's link endpoint, check its certificate pin and run the identity handshake.

    Returns an authenticated link; the caller must run :meth:`WebSocketLink.run` in a nursery.
    Raises :class:`LinkClosed` with the reason on any failure.
    """
    settings = settings or LinkSettings()
    stream: TlsStream | None = None
    try:
        with trio.fail_after(settings.handshake_timeout):
            tcp = await trio.open_tcp_stream(host, port)
            stream = TlsStream(tcp, client_ssl_context(), server_side=False)
            await stream.do_handshake()
            der = stream.getpeercert(binary_form=True)
            if not der:
                raise LinkClosed("server sent no certificate")
            server_cert = cert_sha256(der)
            if expected_cert_sha256 is not None and server_cert != expected_cert_sha256:
                raise LinkClosed("server certificate does not match the peer record's pin")
            transport = _Transport(stream, WSConnection(ConnectionType.CLIENT))
            await transport.send(
                Request(host=f"{host}:{port}", target=LINK_PATH, subprotocols=[SUBPROTOCOL])
            )
            event = await transport.next_event()
            if not isinstance(event, AcceptConnection) or event.subprotocol != SUBPROTOCOL:
                raise LinkClosed(f"upgrade refused: {type(event).__name__}")
            auth = LinkAuthenticator(
                Role.CLIENT,
                identity.identity,
                server_cert,
                expected_peer_id=expected_peer_id,
            )
            await _authenticate(transport, auth)
            return WebSocketLink(transport, auth.peer_id, settings, remote=f"{host}:{port}")
    except trio.TooSlowError:
        await _abort(stream)
        raise LinkClosed("handshake timed out") from None
    except LinkClosed:
        await _abort(stream)
        raise
    except (ProtocolError, WsRemoteError, WsLocalError) as exc:
        await _abort(stream)
        raise LinkClosed(f"handshake failed: {exc}") from exc
    except (OSError, ssl.SSLError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        await _abort(stream)
        raise LinkClosed(f"cannot reach {host}:{port}: {exc.__class__.__name__}") from exc


async def _abort(stream: trio.abc.AsyncResource | None) -> None:
    if stream is not None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def _accept_one(
    stream: TlsStream,
    identity: NodeIdentity,
    settings: LinkSettings,
) -> WebSocketLink:
    await stream.do_handshake()
    transport = _Transport(stream, WSConnection(ConnectionType.SERVER))
    event = await transport.next_event()
    if not isinstance(event, Request) or event.target != LINK_PATH:
        await transport.send(RejectConnection(status_code=404))
        raise LinkClosed("not a link upgrade")
    if SUBPROTOCOL not in event.subprotocols:
        await transport.send(RejectConnection(status_code=400))
        raise LinkClosed("wrong subprotocol")
    await transport.send(AcceptConnection(subprotocol=SUBPROTOCOL))
    auth = LinkAuthenticator(Role.SERVER, identity.identity, identity.cert_sha256)
    await _authenticate(transport, auth)
    remote = ""
    try:
        sock = stream.transport.socket
        addr = sock.getpeername()
        remote = f"{addr[0]}:{addr[1]}"
    except (OSError, AttributeError):
        pass
    return WebSocketLink(transport, auth.peer_id, settings, remote=remote)


async def serve_websocket_links(
    identity: NodeIdentity,
    on_link: Callable[[WebSocketLink], Awaitable[None]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: LinkSettings | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept links forever. ``on_link`` runs per authenticated link, in the connection's own
    task, and should return when it is done with the link (the link is closed afterwards).

    Anything a client sends that is not a proper TLS + upgrade + handshake is closed and
    counted at debug level; it never stops the listener. ``task_status`` gets the bound port.
    """
    settings = settings or LinkSettings()
    ssl_ctx = identity.server_ssl_context()
    handshakes = trio.CapacityLimiter(settings.max_pending_handshakes)

    async def handle(tcp: trio.SocketStream) -> None:
        try:
            handshakes.acquire_nowait()
        except trio.WouldBlock:
            log.debug("refused a link connection: too many handshakes in progress")
            await trio.aclose_forcefully(tcp)
            return
        stream = TlsStream(tcp, ssl_ctx, server_side=True)
        try:
            with trio.fail_after(settings.handshake_timeout):
                link = await _accept_one(stream, identity, settings)
        except (
            trio.TooSlowError,
            LinkClosed,
            ProtocolError,
            WsRemoteError,
            WsLocalError,
            OSError,
            ssl.SSLError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ) as exc:
            log.debug("refused a link connection: %s", exc.__class__.__name__)
            await _abort(stream)
            return
        finally:
            handshakes.release()
        try:
            await on_link(link)
        finally:
            await link.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    task_status.started(bound)
    await trio.serve_listeners(handle, listeners)


def rtt_ms(stats: LinkStats) -> float:
    return math.nan if stats.rtt is None else stats.rtt * 1000.0
