"""The trio node runtime: one nursery running a node's links, circuits, exit and streams.

A :class:`Node` glues the sans-IO pieces to sockets and time:

- :class:`~zmesh.sansio.onion.OnionNode` (circuits: client, relay and exit roles) is driven by
  one task per link (read a batch of cells, feed them, drain events, flush) and one timer task;
- each circuit end gets a :class:`~zmesh.io_trio.circuit_streams.CircuitStreams` (the stream
  mux) when it opens; at an exit, BEGIN spawns a task that dials the destination under the exit
  policy (``zmesh.io_trio.exit_direct``) and splices bytes both ways;
- links are WebSocket-over-TLS (:mod:`zmesh.io_trio.websocket_link`), accepted on the node's
  listener and dialled on demand (``LinkNeeded``) from signed peer records;
- the node publishes its own signed peer record to the rendezvous services and refreshes the
  peer table from them.

Concurrency rules (trio, structured): every task lives in the node's nursery or a link's;
leaving ``async with Node(...)`` cancels them all, after a shielded, time-bounded shutdown that
sends a DESTROY for every circuit this node originated. Cells leave through ``_flush_now`` into
one carry queue per link, in order, so a circuit's cells are never reordered on a link and a
full link never holds up the others; a link reader waits only while all carry queues together
exceed ``CARRY_HIGH_WATER`` (waiting for the one link its cells go to deadlocked two busy
nodes: docs/architecture.md §3).

Clocks: the onion layer and peer records use wall-clock seconds (``time.time()``), because
Sphinx epochs and record expiry must agree between machines; everything else uses trio's clock.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from types import TracebackType
from typing import cast

import trio

from zmesh.io_trio.circuit_streams import CircuitStreams, MeshStream
from zmesh.io_trio.direct_socket import DirectSocketStream
from zmesh.io_trio.link import Link, LinkClosed
from zmesh.io_trio.rendezvous import RendezvousError, fetch_records, publish_record
from zmesh.io_trio.state import NodeIdentity, StateDir
from zmesh.io_trio.websocket_link import (
    LINK_PATH,
    LinkSettings,
    WebSocketLink,
    connect_websocket_link,
    serve_websocket_links,
)
from zmesh.sansio.exit.policy import ExitPolicy
from zmesh.sansio.onion.cells import CELL_SIZE, MAX_RELAY_PAYLOAD, DestroyReason, RelayKind
from zmesh.sansio.onion.events import (
    CircuitBuilt,
    CircuitDestroyed,
    CircuitHandle,
    CircuitOpened,
    LinkNeeded,
    RelayMessageReceived,
    RelayMessagesReceived,
    RouteHop,
)
from zmesh.sansio.onion.keyring import DEFAULT_EPOCH_LENGTH, SphinxKeyRing
from zmesh.sansio.onion.node import OnionConfig, OnionNode
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY
from zmesh.sansio.signaling.peer_record import Capability, PeerRecord, SphinxKey, sign_record
from zmesh.sansio.streams import ResetReason, Role, StreamMux, StreamOpenFailed
from zmesh.sansio.wire import ProtocolError

__all__ = ["NodeConfig", "Node", "CircuitInfo", "ReceivedMessage", "NoPath"]

log = logging.getLogger(__name__)


#: Cells the onion layer may queue (all links) between two flushes: a full circuit window
#: (4 MiB of stream data, ~4300 cells) for a few circuits at once.
ONION_QUEUED_CELLS = 16384
#: Cells the node holds for links whose send queues are full (all links together) before
#: link readers stop reading and pumps stop pumping: ~16 MiB, four circuits' full windows.
CARRY_HIGH_WATER = 16384


class NoPath(Exception):
    """Not enough usable peers for the requested circuit."""


@dataclass
class NodeConfig:
    """Everything a node needs; ``zmesh node --help`` documents the same names."""

    state_dir: str | None = None  # None: a fresh identity in memory (tests, demo)
    host: str = "127.0.0.1"  # where the link listener binds
    port: int = 0  # 0: any free port
    advertise_host: str | None = None  # the host other nodes dial (default: host)
    listen: bool = True  # False: a pure client that only dials out
    relay: bool = True
    exit: bool = True
    exit_policy: ExitPolicy = field(default_factory=ExitPolicy)
    rendezvous: tuple[str, ...] = ()
    record_lifetime: float = 3600.0
    republish_interval: float = 600.0
    refresh_interval: float = 60.0
    epoch_length: float = DEFAULT_EPOCH_LENGTH
    link: LinkSettings = field(default_factory=LinkSettings)
    circuit_timeout: float = 10.0
    stream_timeout: float = 15.0
    exit_connect_timeout: float = 10.0
    message_queue: int = 256  # end-to-end messages held for the application
    max_peers: int = 4096  # peer records held; the soonest-expiring goes first
    max_exit_connections: int = 1024  # TCP connections this exit holds open at once
    # AEAD of the circuits this node builds (its hops learn which): "auto" picks AES-256-GCM
    # when the CPU has AES instructions (cheaper per cell there: bench/cells.py), else
    # ChaCha20-Poly1305, which is fast and constant-time in software.
    cell_aead: str = "auto"


@dataclass(frozen=True)
class ReceivedMessage:
    """An end-to-end message that arrived over a circuit ending here (sender is anonymous)."""

    data: bytes
    circuit: CircuitHandle


@dataclass
class CircuitInfo:
    circuit: CircuitHandle
    path: tuple[bytes, ...]
    built_at: float
    build_rtt: float | None = None  # seconds from CREATE to checked CREATED
    streams: CircuitStreams | None = None


@dataclass
class _Pending:
    event: trio.Event = field(default_factory=trio.Event)
    ok: bool = False
    reason: str = ""
    rtt: float | None = None


def _wall() -> float:
    return time.time()


@functools.cache
def cpu_has_aes() -> bool:
    """Whether this CPU has AES instructions (x86 AES-NI, Arm's AES extension), read from
    /proc/cpuinfo; False when that cannot be read. Without them OpenSSL's AES-GCM runs a
    slower constant-time software path, and ChaCha20-Poly1305 is the better cell AEAD."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return "aes" in value.split()
    except OSError:
        pass
    return False


class Node:
    """A running zmesh node (client, relay and/or exit). Use ``async with Node(config)``."""

    def __init__(self, config: NodeConfig, identity: NodeIdentity | None = None) -> None:
        self.config = config
        self._state = StateDir(config.state_dir) if config.state_dir else None
        if identity is None:
            identity = self._state.load_or_create() if self._state else NodeIdentity.generate()
        self.identity = identity
        self.node_id = identity.node_id
        now = _wall()
        self.keyring = SphinxKeyRing(ZMESH_GEOMETRY, now, epoch_length=config.epoch_length)
        self.onion = OnionNode(
            self.node_id,
            self.keyring,
            config=OnionConfig(max_queued_cells=ONION_QUEUED_CELLS, min_hops=1, batch_events=True),
        )
        self.peers: dict[bytes, PeerRecord] = {}
        self.links: dict[bytes, Link] = {}
        self.port: int | None = None
        self.record: PeerRecord | None = None
        self._seq = 0
        self._ends: dict[CircuitHandle, CircuitStreams] = {}  # exit-role circuit ends
        self._circuits: dict[CircuitHandle, CircuitInfo] = {}  # circuits we originated
        self._pending: dict[CircuitHandle, _Pending] = {}
        self._dialing: dict[bytes, trio.Event] = {}
        self._avoid: dict[bytes, float] = {}  # peer -> trio time until which we avoid it
        self._backlogged: dict[CircuitHandle, Callable[[], None]] = {}
        self._dirty: set[CircuitStreams] = set()
        self._exit_slots = trio.Semaphore(config.max_exit_connections)
        self._last_refresh = -math.inf
        self._published: dict[str, int] = {}  # rendezvous url -> seq it holds from us
        self._flush_lock = trio.Lock()
        self._flush_wanted = trio.Event()
        # Cells a link could not take at once, per link, in order (see _flush_now); bounded
        # by CARRY_HIGH_WATER through the readers' back-pressure and the pumps' backlogs.
        self._carry: dict[Link, collections.deque[bytes]] = {}
        self._carry_cells = 0
        self._carry_room = trio.Event()  # set while _carry_cells < CARRY_HIGH_WATER
        self._carry_room.set()
        self._link_room = trio.Event()  # some link freed send-queue room
        self._timer_changed = trio.Event()
        # The deadline _timer_task sleeps toward; -1 means "not sleeping on one" (wake it).
        self._armed_deadline: float | None = -1.0
        self._circuit_lock = trio.Lock()
        self._current: CircuitInfo | None = None
        self._msg_send, self._msg_recv = trio.open_memory_channel[ReceivedMessage](
            config.message_queue
        )
        self.messages_dropped = 0
        self.dropped_cells = 0
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.started = trio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._nursery = nursery
            stack.push_async_callback(self._shutdown)
            if self.config.listen:
                self.port = await nursery.start(self._serve_links)
            nursery.start_soon(self._timer_task)
            nursery.start_soon(self._flush_task)
            self._publish_local_record()
            if self.config.rendezvous:
                await self.refresh_peers()
                nursery.start_soon(self._rendezvous_task)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        self.started.set()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None and self._stack is not None
        self._nursery.cancel_scope.cancel()
        return await self._stack.__aexit__(exc_type, exc, tb)

    async def _shutdown(self) -> None:
        """Send DESTROY for our circuits and close links; shielded, at most 2 seconds."""
        with trio.move_on_after(2) as scope:
            scope.shield = True
            now = _wall()
            for info in list(self._circuits.values()):
                with contextlib.suppress(ProtocolError):
                    self.onion.destroy_circuit(info.circuit, DestroyReason.REQUESTED, now)
            self._drain_events()
            with contextlib.suppress(LinkClosed):
                await self._flush()
            await trio.sleep(0.05)  # let link writers put the DESTROYs on the wire
            for link in list(self.links.values()):
                await link.aclose()
        self._msg_send.close()

    # -- peer records and rendezvous ------------------------------------------------------

    @property
    def link_url(self) -> str | None:
        if self.port is None:
            return None
        host = self.config.advertise_host or self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"wss://{host}:{self.port}{LINK_PATH}"

    def _publish_local_record(self) -> PeerRecord:
        now = _wall()
        caps = Capability.CLIENT
        if self.config.relay and self.config.listen:
            caps |= Capability.RELAY
        if self.config.exit and self.config.listen:
            caps |= Capability.EXIT
        if self._state is not None:
            seq = self._state.next_seq(now)
        else:
            seq = max(self._seq + 1, int(now * 1000))
        self._seq = seq
        keys = self.keyring.public_keys(now)
        url = self.link_url
        self.record = sign_record(
            self.identity.identity,
            seq=seq,
            expires=int(now + self.config.record_lifetime),
            capabilities=caps,
            cert_sha256=self.identity.cert_sha256,
            sphinx_keys=[SphinxKey(e, k) for e, k in sorted(keys.items())],
            addresses=[url] if url else [],
        )
        return self.record

    def add_peer(self, record: PeerRecord) -> bool:
        """Verify and remember a peer record (newer ``seq`` wins). Returns True if kept."""
        try:
            record.verify(_wall())
        except ProtocolError as exc:
            log.debug("ignoring peer record: %s", exc)
            return False
        if record.node_id == self.node_id:
            return False
        held = self.peers.get(record.node_id)
        if held is not None and held.seq >= record.seq:
            return False
        if held is None and len(self.peers) >= self.config.max_peers:
            victim = min(self.peers.values(), key=lambda r: r.expires)
            if victim.expires >= record.expires:
                return False
            del self.peers[victim.node_id]
        self.peers[record.node_id] = record
        return True

    async def refresh_peers(self) -> int:
        """Publish our record and fetch everyone's from each rendezvous; returns peers known."""
        assert self.record is not None
        for url in self.config.rendezvous:
            try:
                if self.config.listen and self._published.get(url) != self.record.seq:
                    await publish_record(url, self.record)
                    self._published[url] = self.record.seq
                for record in await fetch_records(url):
                    self.add_peer(record)
            except (RendezvousError, ProtocolError) as exc:
                log.warning("rendezvous %s: %s", url, exc)
        now = _wall()
        for node_id in [k for k, r in self.peers.items() if r.expires <= now]:
            del self.peers[node_id]
        return len(self.peers)

    def _may_refresh(self) -> bool:
        """At most one on-demand refresh per second (a flood of unknown next hops must not
        turn into a flood of rendezvous requests)."""
        now = trio.current_time()
        if now - self._last_refresh < 1.0:
            return False
        self._last_refresh = now
        return True

    async def _rendezvous_task(self) -> None:
        next_publish = trio.current_time() + self.config.republish_interval
        while True:
            await trio.sleep(self.config.refresh_interval)
            if trio.current_time() >= next_publish or self._record_keys_stale():
                self._publish_local_record()
                next_publish = trio.current_time() + self.config.republish_interval
            await self.refresh_peers()

    def _record_keys_stale(self) -> bool:
        assert self.record is not None
        keys = self.keyring.public_keys(_wall())
        return {k.epoch for k in self.record.sphinx_keys} != set(keys)

    # -- links ----------------------------------------------------------------------------

    async def _serve_links(
        self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await serve_websocket_links(
            self.identity,
            self._run_link,
            host=self.config.host,
            port=self.config.port,
            settings=self.config.link,
            task_status=task_status,
        )

    async def _run_link(self, link: Link) -> None:
        """Drive one authenticated link until it closes (runs in the link's own task)."""
        peer = link.peer_id
        try:
            self.onion.link_up(cast(Hashable, link), peer, _wall())
        except ProtocolError as exc:
            log.info("refusing a link to %s: %s", peer[:4].hex(), exc)
            await link.aclose()
            return
        key = cast(Hashable, link)
        onion = self.onion

        def account(errors: list[ProtocolError]) -> None:
            if errors:
                self.dropped_cells += len(errors)
                for err in errors:
                    log.debug("dropped a cell from %s: %s", peer[:4].hex(), err)

        async def deliver(blocks: list[bytes]) -> None:
            # Runs in the link's reader task: onion, streams and the flush toward the next
            # link happen before the reader reads again (back-pressure reaches its socket).
            now = _wall()
            for block in blocks:
                account(onion.receive_block(key, block, now))
            self._drain_events()  # ends with _flush_now
            # Not "until every link took its cells": a reader waiting on a link that waits on
            # this reader's peer deadlocked two busy nodes. Only a node-wide backlog holds it.
            await self._wait_carry_room()

        async with trio.open_nursery() as nursery:
            if isinstance(link, WebSocketLink):
                link.set_deliver(deliver)
                link.on_send_room = self._on_link_room
                nursery.start_soon(link.run)
            self.links[peer] = link
            self._drain_events()  # parked CREATEs for this peer leave (_flush_now)
            try:
                if isinstance(link, WebSocketLink):
                    await link.wait_closed()
                    raise LinkClosed(link.close_reason)
                while True:
                    account(onion.receive_cells(key, [await link.receive_cell()], _wall()))
                    self._drain_events()
                    await self._wait_carry_room()
            except LinkClosed as exc:
                log.info("link to %s closed: %s", peer[:4].hex(), exc.reason)
            finally:
                if self.links.get(peer) is link:
                    del self.links[peer]
                self.onion.link_down(cast(Hashable, link), _wall())
                self._drain_events()
                self._timer_changed.set()
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await link.aclose()

    async def connect_peer(self, peer_id: bytes) -> Link:
        """A link to ``peer_id``, dialled from its record if there is none yet."""
        link = self.links.get(peer_id)
        if link is not None:
            return link
        dialing = self._dialing.get(peer_id)
        if dialing is not None:
            await dialing.wait()
            link = self.links.get(peer_id)
            if link is None:
                raise LinkClosed("dial failed")
            return link
        record = self.peers.get(peer_id)
        if record is None and self.config.rendezvous and self._may_refresh():
            # A relay asked to extend to a node that joined after our last fetch.
            await self.refresh_peers()
            record = self.peers.get(peer_id)
        if record is None:
            raise LinkClosed("no peer record for that node")
        done = trio.Event()
        self._dialing[peer_id] = done
        try:
            last: LinkClosed = LinkClosed("peer record has no wss address")
            for address in record.addresses:
                parsed = urllib.parse.urlsplit(address)
                if parsed.scheme != "wss" or not parsed.hostname or not parsed.port:
                    continue
                try:
                    link = await connect_websocket_link(
                        parsed.hostname,
                        parsed.port,
                        self.identity,
                        expected_peer_id=peer_id,
                        expected_cert_sha256=record.cert_sha256,
                        settings=self.config.link,
                    )
                except LinkClosed as exc:
                    last = exc
                    continue
                assert self._nursery is not None
                self._nursery.start_soon(self._run_link, link)
                # _run_link registers the link at its first step
                while peer_id not in self.links and not link.closed:
                    await trio.sleep(0)
                return link
            self._avoid[peer_id] = trio.current_time() + 30.0
            raise last
        finally:
            done.set()
            self._dialing.pop(peer_id, None)

    async def _dial_for_onion(self, peer_id: bytes) -> None:
        try:
            await self.connect_peer(peer_id)
        except LinkClosed as exc:
            log.info("cannot reach next hop %s: %s", peer_id[:4].hex(), exc.reason)
            # Fail the CREATEs parked for it now, not at the onion's link-wait timeout.
            self.onion.link_failed(peer_id, _wall())
            self._drain_events()

    # -- the onion driver -----------------------------------------------------------------

    def _drain_events(self) -> None:
        """Handle every onion event (and the mux work they cause), then hand the cells they
        queued to the links (``_flush_now``: no waiting, no task switch)."""
        self._drain_loop(self.onion, self._dirty)
        self._flush_now()
        # Wake the timer task only when the onion's next deadline moved: on the data path it
        # does not, and a wake-up per batch of cells was ~4 % of a relay's CPU.
        if self.onion.get_timer() != self._armed_deadline:
            self._timer_changed.set()

    def _drain_loop(self, onion: OnionNode, dirty: set[CircuitStreams]) -> None:
        while True:
            event = onion.next_event()
            if event is None:
                if not dirty:
                    break
                ends = list(dirty)
                dirty.clear()
                for end in ends:
                    end.dispatch()  # may queue more onion work (SENDMEs); loop again
                continue
            if isinstance(event, RelayMessagesReceived):
                self._on_relay_messages(event)
            elif isinstance(event, RelayMessageReceived):
                self._on_relay_message(event)
            elif isinstance(event, CircuitBuilt):
                pending = self._pending.pop(event.circuit, None)
                if pending is not None:
                    pending.ok = True
                    pending.rtt = event.rtt
                    pending.event.set()
            elif isinstance(event, CircuitOpened):
                self._open_exit_end(event.circuit)
            elif isinstance(event, CircuitDestroyed):
                self._on_destroyed(event)
            elif isinstance(event, LinkNeeded) and self._nursery is not None:
                self._nursery.start_soon(self._dial_for_onion, event.peer_id)

    def _on_relay_messages(self, event: RelayMessagesReceived) -> None:
        """A run of same-kind messages (the onion's batch event): one mux call for a run of
        STREAM messages, the per-message handling for the rest."""
        if event.kind == RelayKind.STREAM:
            self._on_stream_messages(event.circuit, event.payloads)
            return
        for payload in event.payloads:
            self._on_relay_message(RelayMessageReceived(event.circuit, event.kind, payload))

    def _on_relay_message(self, event: RelayMessageReceived) -> None:
        circuit = event.circuit
        if event.kind == RelayKind.STREAM:
            self._on_stream_messages(circuit, (event.payload,))
        elif event.kind == RelayKind.E2E_MESSAGE:
            try:
                self._msg_send.send_nowait(ReceivedMessage(bytes(event.payload), circuit))
            except (trio.WouldBlock, trio.ClosedResourceError):
                self.messages_dropped += 1
        elif event.kind == RelayKind.PING:
            with contextlib.suppress(ProtocolError):
                self.onion.send_relay_message(
                    circuit, RelayKind.PONG, bytes(event.payload), _wall()
                )

    def _on_stream_messages(self, circuit: CircuitHandle, payloads: tuple[bytes, ...]) -> None:
        end = self._ends.get(circuit)
        if end is None:
            info = self._circuits.get(circuit)
            end = info.streams if info is not None else None
        if end is None:
            return
        try:
            end.mux.receive_messages(payloads)
        except ProtocolError as exc:
            log.info("stream protocol violation, tearing the circuit down: %s", exc)
            self._destroy(circuit, DestroyReason.PROTOCOL)
            return
        # Dispatch once per batch of cells, not per cell: the mux coalesces a stream's
        # received bytes until next_event(), so readers get large chunks.
        self._dirty.add(end)

    def _on_destroyed(self, event: CircuitDestroyed) -> None:
        circuit = event.circuit
        pending = self._pending.pop(circuit, None)
        if pending is not None:
            pending.reason = f"destroyed ({getattr(event, 'reason', '?')})"
            pending.event.set()
        self._backlogged.pop(circuit, None)
        end = self._ends.pop(circuit, None)
        if end is not None:
            end.fail_all()
        info = self._circuits.pop(circuit, None)
        if info is not None:
            if info.streams is not None:
                info.streams.fail_all()
            if self._current is info:
                self._current = None

    def _destroy(self, circuit: CircuitHandle, reason: DestroyReason) -> None:
        with contextlib.suppress(ProtocolError):
            self.onion.destroy_circuit(circuit, reason, _wall())
        self._drain_events()

    def _make_pump(self, circuit: CircuitHandle, mux: StreamMux) -> Callable[[], None]:
        """The callback a circuit end calls after every mux command: payloads onto the circuit
        as far as the onion's per-link queue allows (the rest waits in a backlog that the
        flusher retries after draining), then wake the flusher."""
        onion = self.onion
        backlog: collections.deque[bytes] = collections.deque()

        def pump() -> None:
            backlog.extend(mux.messages_to_send())
            if not backlog:
                return
            if self._carry_cells >= CARRY_HIGH_WATER:
                # The links are behind: keep it here (the mux's windows bound it) until the
                # flush task has room again.
                self._backlogged[circuit] = pump
                self._flush_wanted.set()
                return
            try:
                payloads = list(backlog)
                taken = onion.send_relay_messages(circuit, RelayKind.STREAM, payloads, _wall())
                if taken == len(payloads):
                    backlog.clear()
                else:
                    for _ in range(taken):
                        backlog.popleft()
            except ProtocolError as exc:
                log.debug("circuit gone while sending: %s", exc)
                backlog.clear()
            if backlog:
                self._backlogged[circuit] = pump
            else:
                self._backlogged.pop(circuit, None)
            self._flush_now()

        return pump

    def _open_exit_end(self, circuit: CircuitHandle) -> None:
        if not self.config.exit:
            # A relay-only node refuses every stream; the circuit can still carry messages.
            mux = StreamMux(Role.EXIT, max_message_size=MAX_RELAY_PAYLOAD)
            self._ends[circuit] = CircuitStreams(mux, self._make_pump(circuit, mux), None)
            return
        mux = StreamMux(Role.EXIT, max_message_size=MAX_RELAY_PAYLOAD)
        end = CircuitStreams(mux, self._make_pump(circuit, mux))
        nursery = self._nursery

        def on_begin(stream_id: int, host: str, port: int) -> None:
            if nursery is not None:
                nursery.start_soon(self._exit_stream, end, stream_id, host, port)

        end._on_begin = on_begin
        self._ends[circuit] = end

    async def _exit_stream(self, end: CircuitStreams, stream_id: int, host: str, port: int) -> None:
        from zmesh.io_trio.exit_direct import open_exit_connection

        try:
            self._exit_slots.acquire_nowait()
        except trio.WouldBlock:
            end.reject(stream_id, ResetReason.RESOURCE_LIMIT)
            return
        try:
            await self._exit_stream_inner(end, stream_id, host, port, open_exit_connection)
        finally:
            self._exit_slots.release()

    async def _exit_stream_inner(
        self,
        end: CircuitStreams,
        stream_id: int,
        host: str,
        port: int,
        open_exit_connection: Callable[..., Awaitable[trio.SocketStream]],
    ) -> None:
        try:
            tcp = await open_exit_connection(
                host, port, self.config.exit_policy, timeout=self.config.exit_connect_timeout
            )
        except StreamOpenFailed as exc:
            log.info("exit refused a stream: %s", exc)
            end.reject(stream_id, exc.reason)
            return
        stream = end.accept(stream_id)
        if stream is None:
            await tcp.aclose()
            return
        await splice(stream, DirectSocketStream(tcp))

    async def _timer_task(self) -> None:
        while True:
            deadline = self.onion.get_timer()
            self._timer_changed = trio.Event()
            if deadline is None:
                self._armed_deadline = None
                await self._timer_changed.wait()
                continue
            delay = deadline - _wall()
            if delay > 0:
                self._armed_deadline = deadline
                with trio.move_on_after(min(delay, 60.0)):
                    await self._timer_changed.wait()
                self._armed_deadline = -1.0
                continue
            self._armed_deadline = -1.0
            self.onion.handle_timer(_wall())
            self._drain_events()

    async def _flush_task(self) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted = trio.Event()
            await self._flush()

    def _flush_now(self) -> None:
        """Move queued cells to their links without waiting, from whichever task queued
        them: each link takes what its send queue has room for at once (a forwarded request
        or reply then costs no task switch); the rest waits in that link's own carry queue,
        in order, for the flush task. One full link never holds up the others."""
        carry = self._carry
        for link_id, block in self.onion.blocks_to_send():
            link = cast(Link, link_id)
            queued = carry.get(link)
            if queued is None:
                queued = carry[link] = collections.deque()
            queued.append(block)
            self._carry_cells += len(block) // CELL_SIZE
        for link in [lk for lk in carry if isinstance(lk, WebSocketLink)]:
            queued = carry[link]
            try:
                taken = link.send_blocks_nowait(list(queued))
            except LinkClosed:
                taken = len(queued)
                self.dropped_cells += sum(len(b) for b in queued) // CELL_SIZE
            for _ in range(taken):
                self._carry_cells -= len(queued.popleft()) // CELL_SIZE
            if not queued:
                del carry[link]
        if carry or self._backlogged:
            self._flush_wanted.set()
        if self._carry_cells < CARRY_HIGH_WATER:
            self._carry_room.set()

    async def _flush(self) -> None:
        """Move every queued cell to its link, in order per link, waiting for queue space
        wherever a link is full (while the others keep moving)."""
        async with self._flush_lock:
            while True:
                for pump in list(self._backlogged.values()):
                    if self._carry_cells >= CARRY_HIGH_WATER:
                        break
                    pump()
                self._flush_now()
                for link in [lk for lk in self._carry if not isinstance(lk, WebSocketLink)]:
                    queued = self._carry.pop(link)
                    self._carry_cells -= sum(len(b) for b in queued) // CELL_SIZE
                    try:
                        await _send_cells(link, list(queued))
                    except LinkClosed:
                        self.dropped_cells += sum(len(b) for b in queued) // CELL_SIZE
                if not self._carry:
                    if not self._backlogged or self._carry_cells >= CARRY_HIGH_WATER:
                        return
                    continue  # pumps left a backlog while the onion's queue was full
                # Some link is full: sleep until any link frees room (or closes).
                if self._link_room.is_set():
                    self._link_room = trio.Event()
                await self._link_room.wait()

    async def _wait_carry_room(self) -> None:
        """Back-pressure for a link reader: wait while the node's carry queues hold more
        than CARRY_HIGH_WATER cells (links that cannot take them in time)."""
        while self._carry_cells >= CARRY_HIGH_WATER:
            if self._carry_room.is_set():
                self._carry_room = trio.Event()
            await self._carry_room.wait()

    def _on_link_room(self) -> None:
        self._link_room.set()

    # -- circuits (client role) -----------------------------------------------------------

    @property
    def cell_aead(self) -> str:
        """The cell AEAD this node's circuits use (``NodeConfig.cell_aead`` resolved)."""
        if self.config.cell_aead != "auto":
            return self.config.cell_aead
        return "aes-256-gcm" if cpu_has_aes() else "chacha20-poly1305"

    def _usable(self, record: PeerRecord, epoch: int, now_trio: float) -> bool:
        return (
            record.sphinx_key_for(epoch) is not None
            and bool(record.capabilities & Capability.RELAY)
            and self._avoid.get(record.node_id, -math.inf) < now_trio
            and bool(record.addresses)
        )

    def choose_path(self, hops: int, last_hop: bytes | None = None) -> list[PeerRecord]:
        """Random distinct relays; the last one an exit (or ``last_hop`` when given)."""
        epoch = self.keyring.epoch_at(_wall())
        now_trio = trio.current_time()
        usable = [r for r in self.peers.values() if self._usable(r, epoch, now_trio)]
        if last_hop is not None:
            exit_record = self.peers.get(last_hop)
            # The requested last hop need not relay for others; it must accept circuits,
            # which every listening node does.
            if (
                exit_record is None
                or exit_record.sphinx_key_for(epoch) is None
                or not exit_record.addresses
            ):
                raise NoPath("no usable record for the requested last hop")
        else:
            exits = [r for r in usable if r.capabilities & Capability.EXIT]
            if not exits:
                raise NoPath(f"no exit among {len(usable)} usable peers")
            exit_record = exits[secrets.randbelow(len(exits))]
        middle = [r for r in usable if r.node_id != exit_record.node_id]
        if len(middle) < hops - 1:
            raise NoPath(f"need {hops} relays, know {len(middle) + 1} usable")
        path: list[PeerRecord] = []
        for _ in range(hops - 1):
            pick = middle.pop(secrets.randbelow(len(middle)))
            path.append(pick)
        path.append(exit_record)
        return path

    async def build_circuit(
        self, hops: int = 2, *, last_hop: bytes | None = None, path: list[PeerRecord] | None = None
    ) -> CircuitInfo:
        """Build a circuit through ``hops`` relays; raises :class:`NoPath` or ``TooSlowError``."""
        if path is None:
            path = self.choose_path(hops, last_hop)
        now = _wall()
        epoch = self.keyring.epoch_at(now)
        route = []
        for record in path:
            key = record.sphinx_key_for(epoch)
            if key is None:
                raise NoPath("a hop has no key for the current epoch")
            route.append(RouteHop(record.node_id, key.public_key, key.epoch))
        try:
            await self.connect_peer(path[0].node_id)
        except LinkClosed as exc:
            self._avoid[path[0].node_id] = trio.current_time() + 30.0
            raise NoPath(f"first hop unreachable: {exc.reason}") from exc
        circuit = self.onion.build_circuit(route, _wall(), aead=self.cell_aead)
        pending = _Pending()
        self._pending[circuit] = pending
        self._drain_events()  # the CREATE leaves at once unless its link is full (_flush_now)
        with trio.move_on_after(self.config.circuit_timeout):
            await pending.event.wait()
        if not pending.ok:
            self._pending.pop(circuit, None)
            self._destroy(circuit, DestroyReason.TIMEOUT)
            raise NoPath(f"circuit build failed: {pending.reason or 'timeout'}")
        info = CircuitInfo(
            circuit, tuple(r.node_id for r in path), trio.current_time(), pending.rtt
        )
        mux = StreamMux(Role.CLIENT, max_message_size=MAX_RELAY_PAYLOAD)
        info.streams = CircuitStreams(mux, self._make_pump(circuit, mux))
        self._circuits[circuit] = info
        return info

    async def current_circuit(self, hops: int = 2, attempts: int = 3) -> CircuitInfo:
        """The circuit new streams use; built (with retries over fresh paths) when needed."""
        async with self._circuit_lock:
            info = self._current
            if (
                info is not None
                and info.circuit in self._circuits
                and (info.streams is None or info.streams.failed is None)
            ):
                return info
            last: Exception = NoPath("no attempt")
            for _ in range(attempts):
                try:
                    self._current = await self.build_circuit(hops)
                    return self._current
                except NoPath as exc:
                    last = exc
                    log.info("circuit attempt failed: %s", exc)
                    if self.config.rendezvous:
                        await self.refresh_peers()
            raise last

    async def open_tcp_stream(self, host: str, port: int, *, hops: int = 2) -> MeshStream:
        """A stream to ``host``:``port`` through a circuit; the exit resolves ``host``.

        Raises :class:`StreamOpenFailed` with the reason (policy, unreachable, refused,
        timeout) the exit reported, or ``CIRCUIT_FAILED`` when no circuit could be built.
        """
        try:
            info = await self.current_circuit(hops)
        except NoPath as exc:
            raise StreamOpenFailed(ResetReason.NETWORK_UNREACHABLE, str(exc)) from exc
        assert info.streams is not None
        with trio.move_on_after(self.config.stream_timeout):
            return await info.streams.open_stream(host, port)
        raise StreamOpenFailed(ResetReason.TTL_EXPIRED, "the exit did not answer in time")

    # -- end-to-end messages --------------------------------------------------------------

    async def send_message(self, peer_id: bytes, data: bytes, *, hops: int = 2) -> None:
        """Send ``data`` anonymously to ``peer_id`` over a circuit that ends at that peer."""
        if len(data) > MAX_RELAY_PAYLOAD:
            raise ValueError(f"a message holds at most {MAX_RELAY_PAYLOAD} bytes")
        info = next((i for i in self._circuits.values() if i.path and i.path[-1] == peer_id), None)
        if info is None:
            info = await self.build_circuit(hops, last_hop=peer_id)
        self.onion.send_relay_message(info.circuit, RelayKind.E2E_MESSAGE, data, _wall())
        self._flush_wanted.set()
        await trio.lowlevel.checkpoint()

    async def messages(self) -> AsyncIterator[ReceivedMessage]:
        async for message in self._msg_recv:
            yield message

    @property
    def message_channel(self) -> trio.MemoryReceiveChannel[ReceivedMessage]:
        return self._msg_recv

    # -- status ---------------------------------------------------------------------------

    def status(self, *, full_ids: bool = False) -> dict[str, object]:
        """A snapshot for ``zmesh status`` and the demo's live view (JSON-ready)."""

        def short(node_id: bytes) -> str:
            return node_id.hex() if full_ids else node_id[:4].hex()

        links = []
        for peer, link in self.links.items():
            s = link.stats
            links.append(
                {
                    "peer": short(peer),
                    "kind": link.kind,
                    "rtt_ms": None if s.rtt is None else round(s.rtt * 1000, 2),
                    "cells_sent": s.cells_sent,
                    "cells_received": s.cells_received,
                    "bytes_sent": s.bytes_sent,
                    "bytes_received": s.bytes_received,
                }
            )
        circuits = []
        for info in self._circuits.values():
            circuits.append(
                {
                    "path": [short(p) for p in info.path],
                    "build_rtt_ms": None
                    if info.build_rtt is None
                    else round(info.build_rtt * 1e3, 2),
                    "streams": 0 if info.streams is None else len(info.streams),
                    "bytes_sent": 0 if info.streams is None else info.streams.bytes_sent,
                    "bytes_received": 0 if info.streams is None else info.streams.bytes_received,
                }
            )
        return {
            "node": short(self.node_id),
            "port": self.port,
            "peers": len(self.peers),
            "links": links,
            "circuits": circuits,
            "exit_circuits": len(self._ends),
            "relayed_circuits": self.onion.relayed_circuit_count,
            "dropped_cells": self.dropped_cells,
        }


async def _send_cells(link: Link, blocks: list[bytes]) -> None:
    """Hand ``blocks`` (runs of whole cells, in order) to ``link``, waiting for queue space."""
    if isinstance(link, WebSocketLink):
        while blocks:
            n = link.send_blocks_nowait(blocks)
            if n == len(blocks):
                return
            blocks = blocks[n:]
            await link.wait_send_space()
    else:
        for block in blocks:
            for i in range(0, len(block), CELL_SIZE):
                await link.send_cell(block[i : i + CELL_SIZE])


async def splice(a: trio.abc.Stream, b: trio.abc.Stream, chunk: int = 65536) -> None:
    """Copy bytes both ways until both directions ended; half-closes are passed on."""

    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        try:
            while True:
                data = await src.receive_some(chunk)
                if not data:
                    break
                await dst.send_all(data)
            if isinstance(dst, trio.abc.HalfCloseableStream):
                await dst.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, a, b)
            nursery.start_soon(pump, b, a)
    finally:
        with trio.CancelScope(shield=True):
            await a.aclose()
            await b.aclose()
