"""trio driver for a WebRTC data-channel peer connection, and the :class:`WebRtcLink`.

The driver only moves bytes and time (DESIGN.md §3): datagrams from the shared
:class:`~zmesh.io_trio.udp.UdpEndpoint` go into :class:`PeerConnection.receive_datagram`, its
``datagrams_to_send`` go out through the endpoint, and one task sleeps until ``get_timer()``.
Events become channel objects with ``send``/``receive``. Offers and answers are non-trickle
here: ``create_offer``/``create_answer`` wait until gathering is complete, so the returned SDP
holds every candidate (what ``webrtc_echo`` and the interop tests need).

``now`` is ``trio.current_time()``; OpenSSL's DTLS timers keep their own clock (see
``zmesh/sansio/webrtc/_openssl.py``), and the DTLS certificate's validity starts a day before
the wall-clock time read here. Datagrams are handled in batches: the endpoint's reader feeds
everything one socket wake-up read, then :meth:`WebRtcPeer.end_of_batch` sends what the batch
produced (one SACK for the batch) without waking the connection task.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import trio

from zmesh.io_trio.link import LinkClosed, LinkStats
from zmesh.io_trio.udp import UdpEndpoint
from zmesh.sansio.tetrys.config import TetrysConfig
from zmesh.sansio.tetrys.link import CELL_SIZE, CellReceived, CellsLost, TetrysLink
from zmesh.sansio.webrtc import dtls as _dtls
from zmesh.sansio.webrtc import ice as _ice
from zmesh.sansio.webrtc.candidate import Candidate
from zmesh.sansio.webrtc.peerconnection import (
    ConnectionState,
    ConnectionStateChanged,
    LocalCandidate,
    PeerConnection,
    SctpFactory,
    default_sctp_factory,
)
from zmesh.sansio.webrtc.sctp import SendBufferFull
from zmesh.sansio.webrtc.sdp import SessionDescription
from zmesh.sansio.wire import DEFAULT_RANDOM, LocalProtocolError, ProtocolError, RandomSource

__all__ = ["WebRtcPeer", "WebRtcChannel", "WebRtcError", "WebRtcLink", "ChannelClosedError",
           "CHANNEL_BUDGET", "RECEIVE_BUDGET"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
CHANNEL_QUEUE: Final = 8192  # received messages per channel before the driver waits
#: Bytes of received, unread messages one channel may hold. Past it the driver stops taking
#: messages out of SCTP, whose receive window then closes and stops the sender: back-pressure,
#: never loss. (A channel whose messages we never want, a link's ``zmesh-control``, discards
#: them on arrival instead, so it cannot stall the cells.) 8192 cells of a busy link are about
#: 4.3 MiB.
CHANNEL_BUDGET: Final = 8 * 1024 * 1024
#: The same bound for all channels of one peer connection together (a peer may open many).
RECEIVE_BUDGET: Final = 4 * CHANNEL_BUDGET
ACCEPT_QUEUE: Final = 256
CANDIDATE_QUEUE: Final = 64
BACKLOG: Final = 4096  # datagrams the kernel refused while the reader was feeding us
SEND_HIGH_WATER: Final = 4 * 1024 * 1024  # bytes buffered in SCTP before send() waits
GATHER_TIMEOUT: Final = 3.0


class WebRtcError(Exception):
    """The peer connection failed or was closed."""


class ChannelClosedError(Exception):
    """The data channel is closed."""


class WebRtcChannel:
    """One data channel: ``await send(data)``, ``await receive()``, ``await aclose()``."""

    def __init__(self, peer: WebRtcPeer, channel: Any) -> None:
        self._peer = peer
        self.sansio = channel
        self.id: int = int(_channel_id(channel))
        self.label: str = str(getattr(channel, "label", ""))
        self.protocol: str = str(getattr(channel, "protocol", ""))
        self._send, self._recv = trio.open_memory_channel[bytes | str](CHANNEL_QUEUE)
        self.queued_bytes = 0  # received, not yet read (bounded by CHANNEL_BUDGET)
        #: Drop what arrives (counted in the peer's ``receive_overflow``) instead of queueing
        #: it: for channels that carry nothing this end reads.
        self.discard_incoming = False
        self.open = trio.Event()
        self.closed = False
        self._writable = trio.Event()
        self._writable.set()

    async def send(self, data: bytes | str) -> None:
        """Queue one message; waits while SCTP's send buffer is full (back-pressure)."""
        while True:
            if self.closed:
                raise ChannelClosedError(self.label)
            if self._peer.buffered_amount(self) <= SEND_HIGH_WATER:
                try:
                    self._peer._command(lambda now: self._peer.pc.send(self.id, data, now))
                    return
                except SendBufferFull:
                    pass
            # No kick: _command already sent what could go; SACKs (the reader) free the room.
            self._writable = trio.Event()
            await self._writable.wait()

    async def receive(self) -> bytes | str:
        try:
            message = await self._recv.receive()
        except trio.EndOfChannel:
            raise ChannelClosedError(self.label) from None
        self._peer.queued_bytes -= len(message)
        self.queued_bytes -= len(message)
        if self._peer._held is not None:
            # Room again: take the held message and what SCTP kept behind it, and let the
            # connection send the window update.
            self._peer._dispatch_events()
            self._peer._command(lambda now: None)
        return message

    def __aiter__(self) -> WebRtcChannel:
        return self

    async def __anext__(self) -> bytes | str:
        try:
            return await self.receive()
        except ChannelClosedError:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self._peer._command(lambda now: self._peer.pc.close_channel(self.id, now))
        self._writable.set()

    def _remote_closed(self) -> None:
        self.closed = True
        self._send.close()
        self._writable.set()


class WebRtcPeer:
    """Runs one :class:`PeerConnection` on a shared UDP endpoint.

    ``async with WebRtcPeer(endpoint) as peer:`` then either ``sdp = await peer.create_offer()``
    and ``await peer.set_remote_answer(answer)``, or ``answer = await peer.create_answer(offer)``;
    ``await peer.wait_connected()``; channels with ``create_channel``/``accept_channel``.
    """

    def __init__(
        self,
        endpoint: UdpEndpoint,
        *,
        stun_servers: Sequence[Address] = (),
        random: RandomSource = DEFAULT_RANDOM,
        certificate: _dtls.DtlsCertificate | None = None,
        ice_config: _ice.IceConfig | None = None,
        sctp_factory: SctpFactory = default_sctp_factory,
    ) -> None:
        self.endpoint = endpoint
        if certificate is None:
            # Certificate validity is calendar time: the driver reads the wall clock so the
            # sans-IO layer does not have to.
            certificate = _dtls.DtlsCertificate.generate(
                _dtls.chrome_not_before(datetime.datetime.now(datetime.UTC)), random=random)
        self.pc = PeerConnection(random=random, certificate=certificate, ice_config=ice_config,
                                 sctp_factory=sctp_factory)
        self._stun_servers = list(stun_servers)
        # Wakeups for the connection task (datagrams themselves are fed in by deliver()).
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[None](1)
        self._kicked = False
        self._closing = False
        self._batch_now: float | None = None  # trio time of the batch being delivered
        self._sleeping_until = -math.inf  # the connection task's wake-up deadline
        self._backlog: deque[tuple[bytes, Address]] = deque(maxlen=BACKLOG)
        self._accept_send, self._accept_recv = trio.open_memory_channel[WebRtcChannel](
            ACCEPT_QUEUE)
        self._channels: dict[int, WebRtcChannel] = {}
        self._state_changed = trio.Event()
        self._gathered = trio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._nursery: trio.Nursery | None = None
        self.failure: str | None = None
        self.inbox_dropped = 0
        self.receive_overflow = 0  # messages dropped on arrival (discarding channels)
        self.receive_stalls = 0  # times a full channel made us leave messages in SCTP
        #: Bytes of received messages waiting in channel queues (bounded by RECEIVE_BUDGET).
        self.queued_bytes = 0
        #: A MessageReceived that did not fit its channel's budget; while set, no further
        #: events are taken from the connection (SCTP holds them, and its window shrinks).
        self._held: Any | None = None
        self.candidates_dropped = 0
        self._candidates_send, self._candidates_recv = trio.open_memory_channel[
            Candidate | None](CANDIDATE_QUEUE)
        for address in endpoint.host_addresses():
            self.pc.add_host_address(address)

    # -- DatagramSink --------------------------------------------------------------------------

    @property
    def local_ufrag(self) -> str:
        return self.pc.ice.local_ufrag if self.pc.ice is not None else ""

    def deliver(self, data: bytes, source: Address) -> None:
        """Called by the endpoint's reader for each datagram: feed it in at once (one trio
        thread, so no locking). Answers wait for :meth:`end_of_batch`."""
        if self._closing:
            return
        now = self._batch_now
        if now is None:
            now = self._batch_now = trio.current_time()
        try:
            self.pc.receive_datagram(data, source, now)
        except Exception:  # a bug in one connection must not take the shared port down
            log.exception("peer connection failed on an incoming datagram")
            self.inbox_dropped += 1

    def end_of_batch(self) -> None:
        """The reader drained the socket: send what the batch produced (one SACK for all of
        it, new data the SACKs released) straight from the reader, hand events to channels,
        and wake the connection task only if its timer moved earlier."""
        now = self._batch_now
        self._batch_now = None
        if self._closing or now is None:
            return
        self._answer(now)

    def _answer(self, now: float) -> None:
        """Send what the connection has to send now, pass events on, and wake the
        connection task only when it must re-arm its timer or wait for the socket."""
        self._send_now(self.pc.datagrams_to_send(now))
        self._dispatch_events()
        timer = self.pc.get_timer()
        if self._backlog or (timer is not None and timer < self._sleeping_until):
            self._kick()

    def _send_now(self, datagrams: list[tuple[bytes, Address]]) -> None:
        """Non-blocking sends; what the kernel refuses waits in the backlog for the task."""
        if self._backlog:
            self._backlog.extend(datagrams)
            return
        if datagrams:
            sent = self.endpoint.send_many(datagrams, self)
            if sent < len(datagrams):
                self._backlog.extend(datagrams[sent:])

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> WebRtcPeer:
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        self.endpoint.attach(self)
        self._nursery.start_soon(self._run)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        await self.aclose()
        return await self._stack.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        if self._nursery is None:
            return
        with trio.CancelScope(shield=True):
            if self.pc.state is not ConnectionState.CLOSED:
                self.pc.close(trio.current_time())
                await self._flush()
        self._closing = True
        self.endpoint.detach(self)
        for channel in self._channels.values():
            channel._remote_closed()
        self._accept_send.close()
        self._nursery.cancel_scope.cancel()

    @property
    def state(self) -> ConnectionState:
        return self.pc.state

    # -- signaling -----------------------------------------------------------------------------

    async def create_offer(self, *, trickle: bool = False) -> str:
        """The offer's SDP. Non-trickle (default): waits until gathering is complete so every
        candidate is inside. Trickle: returns at once; later candidates come out of
        :meth:`local_candidates`."""
        self.pc.create_offer(trio.current_time())
        await self._gather(wait=not trickle)
        return self.pc.current_local_description().to_sdp()

    async def create_answer(self, offer: str, *, trickle: bool = False) -> str:
        now = trio.current_time()
        self.pc.set_remote_description(SessionDescription.parse(offer, "offer"), now)
        self.pc.create_answer(now)
        await self._gather(wait=not trickle)
        self._kick()
        return self.pc.current_local_description().to_sdp()

    async def add_remote_candidate(self, candidate: str | None) -> None:
        """Trickle in one ``a=candidate`` value (with or without the prefix); ``None`` or ``""``
        is end-of-candidates. Raises ``ProtocolError`` for a malformed line."""
        parsed = Candidate.from_sdp(candidate) if candidate else None
        self.pc.add_remote_candidate(parsed, trio.current_time())
        self._kick()

    async def local_candidates(self) -> AsyncIterator[str | None]:
        """Local candidates as ``candidate:...`` strings as they are gathered, then ``None``."""
        async for candidate in self._candidates_recv:
            yield None if candidate is None else f"candidate:{candidate.to_sdp()}"
            if candidate is None:
                return

    async def set_remote_answer(self, answer: str) -> None:
        self.pc.set_remote_description(SessionDescription.parse(answer, "answer"),
                                       trio.current_time())
        self._kick()

    async def _gather(self, *, wait: bool = True) -> None:
        now = trio.current_time()
        for server in self._stun_servers:
            self.pc.gather_srflx(server, now)
        self.pc.finish_gathering()
        self._kick()
        if not wait:
            return
        with trio.move_on_after(GATHER_TIMEOUT):
            while not self.pc.gathering_complete:
                await self._wait_state()

    async def wait_connected(self) -> None:
        while self.pc.state is not ConnectionState.CONNECTED:
            if self.pc.state in (ConnectionState.FAILED, ConnectionState.CLOSED):
                raise WebRtcError(self.failure or self.pc.state.value)
            await self._wait_state()

    async def _wait_state(self) -> None:
        event = self._state_changed
        await event.wait()

    # -- channels ------------------------------------------------------------------------------

    async def create_channel(self, label: str, **options: Any) -> WebRtcChannel:
        await self.wait_connected()
        sansio_channel = self.pc.create_channel(label, now=trio.current_time(), **options)
        channel = self._channels.get(_channel_id(sansio_channel))
        if channel is None:
            channel = WebRtcChannel(self, sansio_channel)
            self._channels[channel.id] = channel
        self._kick()
        return channel

    async def accept_channel(self) -> WebRtcChannel:
        try:
            return await self._accept_recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise WebRtcError(self.failure or "peer connection closed") from None

    def buffered_amount(self, channel: WebRtcChannel) -> int:
        sctp = self.pc.sctp
        amount = getattr(sctp, "buffered_amount", None)
        if amount is None or channel.closed:
            return 0
        try:
            return int(amount(channel.id))
        except LocalProtocolError:
            return 0

    # -- the loop ------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._kicked:
            return  # one wakeup is already pending
        self._kicked = True
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._inbox_send.send_nowait(None)

    def _command(self, action: Any) -> None:
        """Run a command on the connection and send its output from the calling task: no
        task switch per ``send`` (the sender's profile showed one per message)."""
        now = trio.current_time()
        action(now)
        if not self._closing:
            self._answer(now)

    async def _run(self) -> None:
        pc = self.pc
        while True:
            await self._flush()
            self._dispatch_events()
            timer = pc.get_timer()
            self._sleeping_until = timer if timer is not None else math.inf
            # A bare CancelScope: trio.move_on_at's context-manager wrapper showed up in the
            # sender's profile (this loop runs once per application send burst).
            with trio.CancelScope(deadline=self._sleeping_until) as scope:
                await self._inbox_recv.receive()
            self._sleeping_until = -math.inf  # awake: it re-reads the timer before sleeping
            self._kicked = False
            now = trio.current_time()
            if scope.cancelled_caught or (timer is not None and timer <= now):
                pc.handle_timer(now)

    async def _flush(self) -> None:
        self._send_now(self.pc.datagrams_to_send(trio.current_time()))
        while self._backlog:
            data, destination = self._backlog.popleft()
            await self.endpoint.sendto(data, destination, self)

    def _deliver(self, event: Any) -> bool:
        """Queue a received message on its channel; False if it must wait for room."""
        target = self._channels.get(int(event.channel_id))
        if target is None or target.closed:
            return True  # its channel is gone: nobody will read it
        if target.discard_incoming:
            self.receive_overflow += 1
            return True
        size = len(event.data)
        # An empty queue always takes one message (at most 256 KiB), so progress never stops.
        if (target.queued_bytes and target.queued_bytes + size > CHANNEL_BUDGET) or (
            self.queued_bytes and self.queued_bytes + size > RECEIVE_BUDGET
        ):
            return False
        try:
            target._send.send_nowait(event.data)
        except trio.WouldBlock:
            return False
        except trio.ClosedResourceError:
            return True
        target.queued_bytes += size
        self.queued_bytes += size
        return True

    def _dispatch_events(self) -> None:
        changed = False
        if self._held is not None and self._deliver(self._held):
            self._held = None
        while self._held is None and (event := self.pc.next_event()) is not None:
            name = type(event).__name__
            if isinstance(event, ConnectionStateChanged):
                changed = True
                if event.state in (ConnectionState.FAILED, ConnectionState.CLOSED):
                    self.failure = event.reason or event.state.value
                    for channel in self._channels.values():
                        channel._remote_closed()
                    self._accept_send.close()
                log.debug("peer connection %s %s", event.state.value, event.reason)
            elif isinstance(event, LocalCandidate):
                try:
                    self._candidates_send.send_nowait(event.candidate)
                except trio.WouldBlock:
                    self.candidates_dropped += 1
            elif isinstance(event, _ice.GatheringCompleted | _ice.PairSelected):
                changed = True
            elif name == "ChannelOpened":
                sansio_channel = event.channel
                cid = _channel_id(sansio_channel)
                opened = self._channels.get(cid)
                if opened is None:
                    opened = WebRtcChannel(self, sansio_channel)
                    self._channels[cid] = opened
                    with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                        self._accept_send.send_nowait(opened)
                opened.open.set()
            elif name == "MessageReceived":
                if not self._deliver(event):
                    self._held = event
                    self.receive_stalls += 1
            elif name == "ChannelClosed":
                cid = int(getattr(event, "channel_id", getattr(event, "id", -1)))
                closed = self._channels.pop(cid, None)
                if closed is not None:
                    closed._remote_closed()
            elif name == "BufferedAmountLow":
                cid = int(getattr(event, "channel_id", getattr(event, "id", -1)))
                low = self._channels.get(cid)
                if low is not None:
                    low._writable.set()
        if changed:
            self._state_changed.set()
            self._state_changed = trio.Event()
        # Send waiters re-check their buffered amount after every burst.
        for channel in self._channels.values():
            if not channel._writable.is_set() and \
                    self.buffered_amount(channel) <= SEND_HIGH_WATER:
                channel._writable.set()


def _channel_id(channel: Any) -> int:
    for name in ("id", "channel_id", "stream_id"):
        value = getattr(channel, name, None)
        if value is not None:
            return int(value)
    raise TypeError(f"data channel object {channel!r} has no id")


@dataclass
class _LinkChannels:
    control: WebRtcChannel
    cells: WebRtcChannel


class _TetrysCells:
    """Cells through a :class:`TetrysLink` over an unordered, unreliable channel (RFC 9407).

    Three duties, one task each in the peer's nursery: feed received datagrams to Tetrys, fire
    its timers, and pass recovered cells (in order) to ``receive``. Sending encodes at once.
    """

    def __init__(self, peer: WebRtcPeer, channel: WebRtcChannel) -> None:
        self.channel = channel
        self.tetrys = TetrysLink(TetrysConfig(symbol_size=CELL_SIZE, in_order=True))
        self.cells_send, self.cells_recv = trio.open_memory_channel[bytes](CHANNEL_QUEUE)
        self.lost = 0
        self.malformed = 0
        self._wake = trio.Event()
        if peer._nursery is None:
            raise WebRtcError("peer is not running")
        peer._nursery.start_soon(self._reader)
        peer._nursery.start_soon(self._timers)

    async def send(self, cell: bytes) -> None:
        self.tetrys.send_cell(cell, trio.current_time())
        await self._flush()
        self._wake.set()

    async def _flush(self) -> None:
        for datagram in self.tetrys.datagrams_to_send(trio.current_time()):
            await self.channel.send(datagram)

    def _deliver(self) -> None:
        while (event := self.tetrys.next_event()) is not None:
            if isinstance(event, CellReceived):
                try:
                    self.cells_send.send_nowait(event.cell)
                except trio.WouldBlock:
                    self.lost += 1
            elif isinstance(event, CellsLost):
                self.lost += event.count

    async def _reader(self) -> None:
        try:
            async for message in self.channel:
                if not isinstance(message, bytes):
                    self.malformed += 1
                    continue
                try:
                    self.tetrys.receive_datagram(message, trio.current_time())
                except ProtocolError:
                    self.malformed += 1
                self._deliver()
                await self._flush()  # window updates go back at once
                self._wake.set()
        finally:
            self.cells_send.close()

    async def _timers(self) -> None:
        while True:
            timer = self.tetrys.get_timer()
            with trio.move_on_at(timer if timer is not None else math.inf):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            if timer is not None and timer <= now:
                self.tetrys.handle_timer(now)
                self._deliver()
                with contextlib.suppress(ChannelClosedError, WebRtcError):
                    await self._flush()


class WebRtcLink:
    """The common :class:`~zmesh.io_trio.link.Link` over a WebRTC peer connection.

    By default cells travel on a reliable, ordered channel labelled ``zmesh-cells``. With
    ``fec=True`` they travel on ``zmesh-cells-fec``, an unordered channel with
    ``maxRetransmits: 0``, protected by Tetrys (:mod:`zmesh.sansio.tetrys.link`), which
    restores order and repairs loss without retransmission delay (cells it cannot repair are
    counted in ``stats.extra["cells_lost"]``). ``zmesh-control`` carries link control. The peer
    id is whatever the caller authenticated at the signaling layer.
    """

    CELLS_LABEL: Final = "zmesh-cells"
    FEC_LABEL: Final = "zmesh-cells-fec"
    CONTROL_LABEL: Final = "zmesh-control"

    def __init__(self, peer: WebRtcPeer, peer_id: bytes, channels: _LinkChannels) -> None:
        self._peer = peer
        self._peer_id = peer_id
        self._channels = channels
        self._stats = LinkStats()
        self._closed = False
        self._fec = _TetrysCells(peer, channels.cells) \
            if channels.cells.label == self.FEC_LABEL else None
        # Nothing on zmesh-control is read yet: drop it on arrival so it cannot hold the
        # connection's receive budget (and with it the cells).
        channels.control.discard_incoming = True

    @classmethod
    async def open(cls, peer: WebRtcPeer, peer_id: bytes, *, fec: bool = False) -> WebRtcLink:
        """On the side that made the offer: open both channels."""
        control = await peer.create_channel(cls.CONTROL_LABEL)
        if fec:
            cells = await peer.create_channel(cls.FEC_LABEL, ordered=False, max_retransmits=0)
        else:
            cells = await peer.create_channel(cls.CELLS_LABEL)
        return cls(peer, peer_id, _LinkChannels(control, cells))

    @classmethod
    async def accept(cls, peer: WebRtcPeer, peer_id: bytes) -> WebRtcLink:
        """On the answering side: wait for the two channels the offerer opens."""
        control: WebRtcChannel | None = None
        cells: WebRtcChannel | None = None
        while control is None or cells is None:
            channel = await peer.accept_channel()
            if channel.label == cls.CONTROL_LABEL:
                control = channel
            elif channel.label in (cls.CELLS_LABEL, cls.FEC_LABEL):
                cells = channel
        return cls(peer, peer_id, _LinkChannels(control, cells))

    @property
    def peer_id(self) -> bytes:
        return self._peer_id

    @property
    def kind(self) -> str:
        return "webrtc"

    @property
    def stats(self) -> LinkStats:
        if self._fec is not None:
            tetrys = self._fec.tetrys.stats
            self._stats.fec_repair_ratio = tetrys.repair_ratio
            self._stats.extra["cells_lost"] = float(self._fec.lost)
            self._stats.extra["cells_recovered"] = float(tetrys.recovered)
            self._stats.extra["loss_ema"] = tetrys.loss_ema
            # Tetrys's own counters: the repair overhead actually sent is coded_sent/cells_sent.
            self._stats.extra["coded_sent"] = float(tetrys.coded_sent)
            self._stats.extra["cells_sent"] = float(tetrys.cells_sent)
            self._stats.dropped_malformed = self._fec.malformed
        return self._stats

    async def send_cell(self, cell: bytes) -> None:
        if self._closed:
            raise LinkClosed("closed")
        try:
            if self._fec is not None:
                await self._fec.send(cell)
            else:
                await self._channels.cells.send(cell)
        except (ChannelClosedError, WebRtcError) as exc:
            raise LinkClosed(str(exc) or "channel closed") from None
        self._stats.cells_sent += 1
        self._stats.bytes_sent += len(cell)

    async def receive_cell(self) -> bytes:
        if self._fec is not None:
            try:
                cell = await self._fec.cells_recv.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise LinkClosed(self._peer.failure or "channel closed") from None
            self._stats.cells_received += 1
            self._stats.bytes_received += len(cell)
            return cell
        while True:
            try:
                message = await self._channels.cells.receive()
            except ChannelClosedError:
                raise LinkClosed(self._peer.failure or "channel closed") from None
            if isinstance(message, bytes):
                self._stats.cells_received += 1
                self._stats.bytes_received += len(message)
                return message
            self._stats.dropped_malformed += 1  # cells are binary; a string is a peer bug

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            await self._channels.cells.aclose()
            await self._channels.control.aclose()
            await self._peer.aclose()
