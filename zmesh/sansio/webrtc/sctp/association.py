"""The SCTP association over DTLS, sans-IO (RFC 9260, RFC 8261, RFC 3758, RFC 6525).

One :class:`SctpAssociation` is one end of an SCTP association carried in DTLS records, as
WebRTC data channels use it (RFC 8831 §5): one path, ports from SDP, no multi-homing.

Inputs are ``receive_data(packet, now)`` (one SCTP packet that DTLS decrypted), the commands
``connect``/``send``/``reset_streams``/``close``/``abort``, and ``handle_timer(now)``. Outputs
are ``data_to_send(now)`` (SCTP packets for DTLS to encrypt, one per record) and
``next_event()``. Packets are built lazily in ``data_to_send``: acknowledgements, control
chunks and DATA are bundled into as few packets as the path MTU allows (RFC 9260 §6.10), and a
SACK rides on outgoing data when one is pending.

Where RFC 9260 sections live:

- handshake, cookies, INIT collision (§5.1, §5.2.1, §5.2.4): ``_on_init``, ``_on_init_ack``,
  ``_on_cookie_echo``, ``_on_cookie_ack``;
- DATA receipt and delayed SACK (§6.2): ``_on_data``; SACK processing, fast retransmit and
  fast recovery (§6.2.1, §7.2.4): ``_on_sack`` with :mod:`.retransmit`; T3-rtx (§6.3.3):
  ``_on_t3``; congestion control and RTO: :mod:`.congestion`;
- heartbeats (§8.3), shutdown (§9.2), abort (§9.1);
- PR-SCTP abandonment and FORWARD TSN (RFC 3758 §3.5): :mod:`.retransmit`, ``_on_forward_tsn``;
- stream reset (RFC 6525 §5): ``_on_reconfig`` and ``_maybe_request_reset``.

Every TSN is unwrapped (see :mod:`.tsn`) the moment it is read from the wire.
"""

from __future__ import annotations

import enum
import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from zmesh.sansio.wire import (
    DEFAULT_RANDOM,
    LocalProtocolError,
    MalformedInput,
    ProtocolError,
    RandomSource,
    RemoteProtocolError,
    TruncatedInput,
)

from . import chunks as ch
from .config import SctpConfig
from .congestion import CongestionController, RtoEstimator
from .cookie import CookieExpired, StateCookie, open_cookie, seal_cookie
from .events import (
    AssociationClosed,
    AssociationEstablished,
    BufferedAmountLow,
    DataReceived,
    SctpEvent,
    StreamsReset,
    StreamsResetFailed,
)
from .packet import PacketBuilder, crc32c, crc32c_extend
from .reassembly import InboundStreams
from .retransmit import RetransmissionQueue, SentChunk
from .send_queue import OutMessage, SendQueue
from .streams_reset import (
    RESULT_DENIED,
    RESULT_ERROR_BAD_SEQUENCE,
    RESULT_IN_PROGRESS,
    RESULT_NOTHING_TO_DO,
    RESULT_PERFORMED,
    OtherReconfigParam,
    OutgoingResetRequest,
    ReconfigResponse,
    ResetRequester,
    decode_reconfig,
)
from .tsn import TSN_MASK, ReceivedTsns, unwrap

__all__ = [
    "AssociationState",
    "BadChecksum",
    "SctpAssociation",
    "SctpStats",
    "SendBufferFull",
]

logger = logging.getLogger(__name__)

_SUPPORTED_EXTENSIONS: Final = bytes([ch.RECONFIG, ch.FORWARD_TSN])
_HEARTBEAT_INFO: Final = struct.Struct("!8sd")
_COMMON_HEADER: Final = struct.Struct("!HHI")
_CHECKSUM: Final = struct.Struct("<I")  # RFC 9260 Appendix A: CRC32c stored little-endian
_ZERO4: Final = b"\x00\x00\x00\x00"
_SACK_PLAIN: Final = struct.Struct("!BBHIIHH")  # a SACK without gap blocks or duplicates
_MAX_DUPLICATES_REPORTED: Final = 16
_MIN_FRAGMENT: Final = 64  # do not start a DATA fragment in less room than this
_SACK_CHUNK_BASE: Final = 16
_MAX_QUEUED_REPLIES: Final = 256  # bound on control chunks / solo packets awaiting a send


class AssociationState(enum.Enum):
    CLOSED = "closed"
    COOKIE_WAIT = "cookie-wait"
    COOKIE_ECHOED = "cookie-echoed"
    ESTABLISHED = "established"
    SHUTDOWN_PENDING = "shutdown-pending"
    SHUTDOWN_SENT = "shutdown-sent"
    SHUTDOWN_RECEIVED = "shutdown-received"
    SHUTDOWN_ACK_SENT = "shutdown-ack-sent"

    # Members are singletons: hash by identity so state-set lookups on the per-packet path
    # stay in C (Enum's default hashes the member name in Python).
    __hash__ = object.__hash__


_S = AssociationState
_DATA_RECEIVING: Final = frozenset({_S.ESTABLISHED, _S.SHUTDOWN_PENDING, _S.SHUTDOWN_SENT})
_SACK_RECEIVING: Final = frozenset(
    {_S.ESTABLISHED, _S.SHUTDOWN_PENDING, _S.SHUTDOWN_RECEIVED, _S.SHUTDOWN_SENT}
)
_DATA_SENDING: Final = frozenset({_S.ESTABLISHED, _S.SHUTDOWN_PENDING, _S.SHUTDOWN_RECEIVED})
_PRE_ESTABLISHED: Final = frozenset({_S.CLOSED, _S.COOKIE_WAIT, _S.COOKIE_ECHOED})
_SEND_ALLOWED: Final = _PRE_ESTABLISHED | {_S.ESTABLISHED}


class SendBufferFull(LocalProtocolError):
    """``send`` was refused: the send buffer is full. Wait for :class:`BufferedAmountLow`."""


class BadChecksum(MalformedInput):
    """The packet's CRC32c did not match; it was dropped (and counted)."""


@dataclass(frozen=True, slots=True)
class SctpStats:
    """Counters and estimates, read with :attr:`SctpAssociation.stats`."""

    srtt: float | None
    rttvar: float
    rto: float
    cwnd: int
    ssthresh: int
    flight_size: int
    peer_rwnd: int
    packets_sent: int
    packets_received: int
    bytes_sent: int
    bytes_received: int
    messages_sent: int
    messages_received: int
    retransmissions: int
    fast_retransmissions: int
    t3_expirations: int
    abandoned_messages: int
    bad_checksums: int
    dropped_packets: int
    duplicate_tsns: int


class SctpAssociation:
    """One end of an SCTP association (see the module docstring)."""

    def __init__(
        self,
        *,
        is_client: bool,
        local_port: int = 5000,
        remote_port: int = 5000,
        random: RandomSource = DEFAULT_RANDOM,
        config: SctpConfig | None = None,
    ) -> None:
        self.config = cfg = config if config is not None else SctpConfig()
        self.is_client = is_client
        self.local_port = local_port
        self.remote_port = remote_port
        self._random = random
        self._state = _S.CLOSED
        self._terminated = False
        self._events: deque[SctpEvent] = deque()

        tag = 0
        while tag == 0:  # RFC 9260 §5.3.1: the initiate tag is never 0
            tag = int.from_bytes(random(4), "big")
        self._local_tag = tag
        self._initial_tsn = int.from_bytes(random(4), "big")
        self._cookie_key = random(32)
        self._peer_tag = 0

        # Peer capabilities (known once the handshake ran).
        self._outbound_streams = cfg.outbound_streams
        self._inbound_streams = cfg.inbound_streams
        self._peer_prsctp = False
        self._peer_reconfig = False
        self._pending_init_ack: ch.InitAckChunk | None = None

        # Send side.
        mtu = cfg.max_packet_size
        self._builder = PacketBuilder(mtu)
        self._queue = SendQueue(
            cfg.send_buffer_size, cfg.buffered_amount_low_threshold, self._buffered_low
        )
        self._out_ssn: dict[int, int] = {}
        self._next_tsn = self._initial_tsn  # unwrapped
        self._rtx = RetransmissionQueue(self._initial_tsn, self._on_abandon)
        self._peer_rwnd = cfg.receive_window
        self._fast_rtx_pending = False
        self._forward_tsn_due = False
        self._ack_credit = 0  # bytes acknowledged since the last transmission (Max.Burst)
        self._rto = RtoEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max, cfg.max_timer_backoff)
        self._cc = CongestionController(
            mtu, cfg.initial_cwnd_packets, cfg.min_cwnd_packets, cfg.receive_window,
            increase_limit_packets=cfg.max_burst,
        )
        self._errors = 0
        self._resetting: set[int] = set()
        self._reset = ResetRequester(self._initial_tsn)

        # Receive side.
        self._rx = ReceivedTsns(-1)
        self._inbound = InboundStreams(self._deliver, cfg.max_message_size)
        self._rx_pending = 0  # bytes in DataReceived events not yet drained
        self._sack_due: float | None = None
        self._sack_now = False
        self._data_packets_unacked = 0
        self._duplicates: list[int] = []
        self._last_advertised = cfg.receive_window
        self._peer_req_expected = 0
        self._peer_last_result = RESULT_PERFORMED
        self._deferred_reset: OutgoingResetRequest | None = None
        self._deferred_last_tsn = 0
        self._last_incoming_reset: tuple[tuple[int, ...], int] | None = None

        # Control chunks waiting for a packet, and packets that must travel alone.
        self._control: list[bytes] = []
        self._solo: list[tuple[int, bytes]] = []
        self._cookie_echo: bytes | None = None  # re-sent by T1-cookie
        self._cookie_echo_due = False

        # Timers (absolute deadlines).
        self._t1: float | None = None
        self._t1_count = 0
        self._t2: float | None = None
        self._t2_count = 0
        self._t3: float | None = None
        self._last_rx_time = 0.0
        self._hb_nonce: bytes | None = None
        self._hb_ack_deadline: float | None = None
        self._shutdown_by_peer = False

        # Counters.
        self._packets_sent = 0
        self._packets_received = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._messages_sent = 0
        self._messages_received = 0
        self._t3_expirations = 0
        self._bad_checksums = 0
        self._dropped = 0
        self._duplicate_tsns = 0

        # Chunk dispatch (DATA, FORWARD TSN and unknown chunks are handled inline).
        self._handlers: dict[type, Callable[[Any, float], None]] = {
            ch.SackChunk: self._on_sack,
            ch.InitChunk: self._on_init,
            ch.InitAckChunk: self._on_init_ack,
            ch.CookieEchoChunk: self._on_cookie_echo,
            ch.CookieAckChunk: lambda _c, now: self._on_cookie_ack(now),
            ch.HeartbeatChunk: lambda c, _now: self._reply(ch.HeartbeatAckChunk(c.info).encode()),
            ch.HeartbeatAckChunk: self._on_heartbeat_ack,
            ch.ReconfigChunk: self._on_reconfig,
            ch.AbortChunk: lambda c, _now: self._on_abort(c),
            ch.ShutdownChunk: self._on_shutdown,
            ch.ShutdownAckChunk: lambda _c, _now: self._on_shutdown_ack(),
            ch.ShutdownCompleteChunk: lambda _c, _now: self._on_shutdown_complete(),
            ch.ErrorChunk: self._on_error,
        }

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> AssociationState:
        return self._state

    @property
    def is_established(self) -> bool:
        return self._state is _S.ESTABLISHED

    @property
    def outbound_streams(self) -> int:
        """Streams we may send on (negotiated once established)."""
        return self._outbound_streams

    @property
    def inbound_streams(self) -> int:
        return self._inbound_streams

    @property
    def peer_supports_partial_reliability(self) -> bool:
        return self._peer_prsctp

    @property
    def stats(self) -> SctpStats:
        return SctpStats(
            srtt=self._rto.srtt,
            rttvar=self._rto.rttvar,
            rto=self._rto.rto,
            cwnd=self._cc.cwnd,
            ssthresh=self._cc.ssthresh,
            flight_size=self._rtx.flight,
            peer_rwnd=self._peer_rwnd,
            packets_sent=self._packets_sent,
            packets_received=self._packets_received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            messages_sent=self._messages_sent,
            messages_received=self._messages_received,
            retransmissions=self._rtx.retransmissions,
            fast_retransmissions=self._rtx.fast_retransmissions,
            t3_expirations=self._t3_expirations,
            abandoned_messages=self._rtx.abandoned_messages + self._queue.expired_messages,
            bad_checksums=self._bad_checksums,
            dropped_packets=self._dropped,
            duplicate_tsns=self._duplicate_tsns,
        )

    def buffered_amount(self, stream_id: int) -> int:
        """Bytes queued on ``stream_id`` by ``send`` and not yet put on the wire."""
        return self._queue.stream_buffered.get(stream_id, 0)

    @property
    def buffered_total(self) -> int:
        return self._queue.buffered

    def set_buffered_amount_low_threshold(self, stream_id: int, threshold: int) -> None:
        if threshold < 0:
            raise LocalProtocolError("negative threshold")
        self._queue.thresholds[stream_id] = threshold

    # ------------------------------------------------------------------ commands

    def connect(self, now: float) -> None:
        """Send INIT. Both ends may call it (WebRTC does): the INIT collision is resolved."""
        if self._state is not _S.CLOSED or self._terminated:
            raise LocalProtocolError(f"connect in state {self._state.value}")
        self._solo.append((0, self._init_chunk().encode()))
        self._state = _S.COOKIE_WAIT
        self._t1 = now + self.config.t1_initial
        self._t1_count = 0

    def send(
        self,
        stream_id: int,
        ppid: int,
        data: bytes,
        *,
        ordered: bool = True,
        max_retransmits: int | None = None,
        max_lifetime: float | None = None,
        now: float,
    ) -> None:
        """Queue one user message. ``max_lifetime`` is in seconds (PR-SCTP timed
        reliability); ``max_retransmits`` is the PR-SCTP retransmission limit.

        Raises :class:`SendBufferFull` when the message does not fit the send buffer."""
        if self._terminated or self._state not in _SEND_ALLOWED:
            raise LocalProtocolError(f"send in state {self._state.value}")
        if not 0 <= stream_id < self._outbound_streams:
            raise LocalProtocolError(f"stream {stream_id} out of range")
        if stream_id in self._resetting:
            raise LocalProtocolError(f"stream {stream_id} is being reset")
        size = len(data)
        if size == 0:
            raise LocalProtocolError("SCTP cannot send an empty message")
        if size > self.config.max_message_size:
            raise LocalProtocolError(f"message of {size} bytes exceeds the maximum")
        if not 0 <= ppid <= 0xFFFFFFFF:
            raise LocalProtocolError(f"ppid {ppid}")
        if max_retransmits is not None and max_retransmits < 0:
            raise LocalProtocolError("negative max_retransmits")
        if not self._queue.fits(size):
            raise SendBufferFull(f"send buffer full ({self._queue.buffered} bytes queued)")
        expires = None if max_lifetime is None else now + max(0.0, max_lifetime)
        self._queue.add(OutMessage(stream_id, ppid, bytes(data), ordered, max_retransmits, expires))

    def reset_streams(self, stream_ids: list[int] | tuple[int, ...], now: float) -> None:
        """Reset our outgoing direction of these streams (RFC 6525) once their queued data
        has been sent; :class:`StreamsReset` (``incoming=False``) reports success."""
        del now  # the request goes out from data_to_send, which has the time
        if self._state is not _S.ESTABLISHED:
            raise LocalProtocolError(f"reset_streams in state {self._state.value}")
        if not self._peer_reconfig:
            raise LocalProtocolError("the peer does not support stream reset (RE-CONFIG)")
        for sid in stream_ids:
            if not 0 <= sid < self._outbound_streams:
                raise LocalProtocolError(f"stream {sid} out of range")
        for sid in stream_ids:
            if sid not in self._resetting:
                self._resetting.add(sid)
                self._reset.pending[sid] = None

    def close(self, now: float) -> None:
        """Graceful SHUTDOWN (RFC 9260 §9.2): queued data is delivered first."""
        if self._terminated:
            return
        if self._state in _PRE_ESTABLISHED:
            self._terminate("closed before the association was established", False)
            return
        if self._state is _S.ESTABLISHED:
            self._state = _S.SHUTDOWN_PENDING
            self._check_shutdown(now)

    def abort(self, reason: str = "", now: float = 0.0) -> None:
        """Send ABORT (RFC 9260 §9.1) and close at once."""
        del now
        if self._terminated:
            return
        if self._peer_tag:
            cause = reason.encode("utf-8", "replace")[:256]
            self._solo.append(
                (self._peer_tag, ch.AbortChunk(((ch.CAUSE_USER_ABORT, cause),)).encode())
            )
        self._terminate(f"aborted: {reason}" if reason else "aborted", False)

    # ------------------------------------------------------------------ outputs

    def next_event(self) -> SctpEvent | None:
        if not self._events:
            return None
        event = self._events.popleft()
        if type(event) is DataReceived:
            self._rx_pending -= len(event.data)
            # Window update (RFC 9260 §6.2): tell the peer when a closed window reopened.
            if (
                self._last_advertised < self.config.receive_window // 2
                and self._advertised_rwnd() >= self.config.receive_window // 2
            ):
                self._sack_now = True
        return event

    def get_timer(self) -> float | None:
        if self._terminated:
            return None
        deadline: float | None = None
        for t in (
            self._t1,
            self._t2,
            self._t3,
            self._sack_due,
            self._hb_ack_deadline,
            self._reset.deadline,
        ):
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        if self._state is _S.ESTABLISHED and self._hb_ack_deadline is None:
            hb = self._last_rx_time + self.config.heartbeat_interval
            if deadline is None or hb < deadline:
                deadline = hb
        return deadline

    def handle_timer(self, now: float) -> None:
        if self._terminated:
            return
        if self._t1 is not None and now >= self._t1:
            self._on_t1(now)
        if self._t2 is not None and now >= self._t2:
            self._on_t2(now)
        if self._t3 is not None and now >= self._t3:
            self._on_t3(now)
        if self._sack_due is not None and now >= self._sack_due:
            self._sack_now = True
        if self._reset.deadline is not None and now >= self._reset.deadline:
            self._on_reconfig_timeout(now)
        if self._hb_ack_deadline is not None and now >= self._hb_ack_deadline:
            self._hb_ack_deadline = None
            self._hb_nonce = None
            self._rto.back_off()
            self._count_error("heartbeat unanswered")
        if (
            not self._terminated
            and self._state is _S.ESTABLISHED
            and self._hb_ack_deadline is None
            and now >= self._last_rx_time + self.config.heartbeat_interval
        ):
            self._send_heartbeat(now)

    def data_to_send(self, now: float) -> list[bytes]:
        """Every SCTP packet due now: one DTLS record each."""
        b = self._builder
        if (
            not self._control
            and not self._solo
            and not self._rtx.retransmit_count
            and (self._rtx.flight >= self._cc.cwnd or self._queue.empty)
            and not self._forward_tsn_due
            and not self._cookie_echo_due
            and not self._reset.pending
        ):
            # The per-packet common cases: nothing due, or only a SACK.
            if self._queue.empty:
                self._ack_credit = 0  # application-limited: acknowledgements free no burst
            if not self._sack_now and (self._sack_due is None or now < self._sack_due):
                return []
            if self._state is _S.ESTABLISHED:
                b.start(self.local_port, self.remote_port, self._peer_tag)
                self._append_sack(b)
                self._packets_sent += 1
                return [b.finish()]
        packets: list[bytes] = []
        for vtag, chunk in self._solo:
            b.start(self.local_port, self.remote_port, vtag)
            b.append(chunk)
            packets.append(b.finish())
        self._solo.clear()
        if self._terminated or self._state in (_S.CLOSED, _S.COOKIE_WAIT):
            return self._count_out(packets)
        if self._state in _DATA_SENDING:
            self._maybe_request_reset(now)
        if self._sack_due is not None and now >= self._sack_due:
            self._sack_now = True
        sending_data = self._state in _DATA_SENDING
        # Max.Burst (RFC 9260 §6.1 D) limits the packets one transmission opportunity sends
        # *beyond* what the acknowledgements since the last one freed: the ack clock itself is
        # not a burst. With a SACK every second packet (what the RFC assumes) this is the RFC's
        # flightsize + Max.Burst·MTU rule; with stretch SACKs (a SACK per received batch) the
        # literal rule would let a SACK of 16 packets release only 4, so the window never
        # fills and slow start (§7.2.1 "fully utilised") never grows it. From an idle start
        # (nothing in flight) cwnd alone limits, as it is at most the initial window then.
        burst_limited = self._rtx.flight > 0
        mtu = self.config.max_packet_size
        burst = self.config.max_burst + (self._ack_credit + mtu - 1) // mtu
        self._ack_credit = 0
        new_packets = 0
        fast_first = self._fast_rtx_pending
        self._fast_rtx_pending = False
        while True:
            b.start(self.local_port, self.remote_port, self._peer_tag)
            if self._cookie_echo_due and self._cookie_echo is not None:
                # RFC 9260 §6.10: COOKIE ECHO is the first chunk of its packet.
                b.append(self._cookie_echo)
                self._cookie_echo_due = False
            if self._sack_now or (
                self._sack_due is not None
                and (
                    self._control
                    or (
                        sending_data
                        and (
                            self._rtx.retransmit_count
                            or (self._rtx.flight < self._cc.cwnd and not self._queue.empty)
                        )
                    )
                )
            ):
                # A pending delayed SACK rides on whatever goes out now; control chunks come
                # before DATA in a packet (RFC 9260 §6.10).
                self._append_sack(b)
            if self._control:
                self._append_control(b)
            if self._forward_tsn_due:
                fwd = self._rtx.forward_tsn_chunk()
                if fwd is not None and len(fwd) <= b.room:
                    b.append(fwd)
                    self._forward_tsn_due = False
                elif fwd is None:
                    self._forward_tsn_due = False
            has_data = False
            if sending_data:
                if self._rtx.retransmit_count:
                    size = self._rtx.take_retransmissions(b, now, self._cc.cwnd, fast_first)
                    fast_first = False
                    if size:
                        has_data = True
                        self._peer_rwnd -= size
                        self._bytes_sent += size
                burst_left = not burst_limited or new_packets < burst
                if burst_left and self._append_new_data(b, now):
                    has_data = True
                    new_packets += 1
            if b.empty:
                break
            packets.append(b.finish())
            if has_data and self._t3 is None:
                self._t3 = now + self._rto.rto
        return self._count_out(packets)

    def _reply(self, chunk: bytes) -> None:
        """Queue an answer the peer asked for (HEARTBEAT ACK, ERROR, RE-CONFIG response). A
        peer that floods requests faster than we send gets the excess dropped: the queue is
        bounded like everything else the peer can make us hold."""
        if len(self._control) < _MAX_QUEUED_REPLIES:
            self._control.append(chunk)
        else:
            self._dropped += 1

    def _count_out(self, packets: list[bytes]) -> list[bytes]:
        self._packets_sent += len(packets)
        return packets

    # ------------------------------------------------------------------ packet assembly

    def _append_control(self, b: PacketBuilder) -> None:
        remaining: list[bytes] = []
        for chunk in self._control:
            if len(chunk) <= b.room and not remaining:
                b.append(chunk)
            else:
                remaining.append(chunk)
        self._control = remaining

    def _append_sack(self, b: PacketBuilder) -> None:
        rx = self._rx
        room_blocks = (b.room - _SACK_CHUNK_BASE) // 4
        if room_blocks < 0:
            return
        rwnd = self._advertised_rwnd()
        if not self._duplicates and not rx.has_gaps:
            b.append(_SACK_PLAIN.pack(ch.SACK, 0, 16, rx.cumulative & TSN_MASK, rwnd, 0, 0))
        else:
            dups = self._duplicates[: min(_MAX_DUPLICATES_REPORTED, room_blocks)]
            gaps = rx.gap_blocks(room_blocks - len(dups)) if rx.has_gaps else []
            b.append(
                ch.SackChunk(rx.cumulative & TSN_MASK, rwnd, tuple(gaps), tuple(dups)).encode()
            )
        if self._state is _S.SHUTDOWN_SENT and b.room >= 8:
            # RFC 9260 §9.2: in SHUTDOWN-SENT every SACK goes with a fresh SHUTDOWN.
            b.append(ch.ShutdownChunk(rx.cumulative & TSN_MASK).encode())
        self._last_advertised = rwnd
        self._duplicates.clear()
        self._sack_now = False
        self._sack_due = None
        self._data_packets_unacked = 0

    def _advertised_rwnd(self) -> int:
        used = self._inbound.buffered + self._rx_pending
        return max(0, self.config.receive_window - used)

    def _append_new_data(self, b: PacketBuilder, now: float) -> bool:
        """Fill the packet with new fragments while cwnd and the peer's window allow."""
        queue = self._queue
        rtx = self._rtx
        added = False
        cwnd = self._cc.cwnd
        while b.room >= 16 + _MIN_FRAGMENT or (added is False and b.room > 16):
            if rtx.flight >= cwnd:
                break
            if self._peer_rwnd <= 0 and rtx.flight > 0:
                break  # zero window: one chunk probes it when nothing is in flight
            message = queue.next_message(now)
            if message is None:
                break
            total = len(message.data)
            offset = message.offset
            budget = self._peer_rwnd
            if budget <= 0:
                budget = b.room  # zero-window probe: one chunk when nothing is in flight
            size = min(total - offset, (b.room - 16) & ~3, budget)
            if size <= 0:
                break
            if size < total - offset and size < _MIN_FRAGMENT and not b.empty:
                break
            flags = 0 if message.ordered else ch.DATA_FLAG_UNORDERED
            if offset == 0:
                flags |= ch.DATA_FLAG_BEGIN
                if message.ordered:
                    sid = message.stream_id
                    message.ssn = self._out_ssn.get(sid, 0)
                    self._out_ssn[sid] = (message.ssn + 1) & 0xFFFF
                message.first_tsn = self._next_tsn
            end = offset + size
            if end == total:
                flags |= ch.DATA_FLAG_END
            tsn = self._next_tsn
            self._next_tsn = tsn + 1
            payload = message.data[offset:end]
            b.append_data(
                flags, tsn & TSN_MASK, message.stream_id, message.ssn, message.ppid, payload
            )
            rtx.push(SentChunk(tsn, flags, message, payload, now))
            message.offset = end
            message.last_tsn = tsn
            if end == total:
                queue.current = None
                self._messages_sent += 1
            queue.consumed(message, size)
            self._peer_rwnd -= size
            self._bytes_sent += size
            added = True
        return added

    # ------------------------------------------------------------------ input

    def receive_data(self, packet: bytes, now: float) -> None:
        """Process one SCTP packet. A malformed packet raises a :class:`RemoteProtocolError`
        after being counted in :attr:`stats`; the association's state is unchanged."""
        if self._terminated:
            self._dropped += 1
            return
        if type(packet) is not bytes:
            packet = bytes(packet)
        if len(packet) < 16:
            self._dropped += 1
            raise TruncatedInput(f"SCTP packet of {len(packet)} bytes")
        src, dst, vtag = _COMMON_HEADER.unpack_from(packet, 0)
        if (
            crc32c_extend(crc32c(packet[:8] + _ZERO4), packet[12:])
            != _CHECKSUM.unpack_from(packet, 8)[0]
        ):
            self._bad_checksums += 1
            self._dropped += 1
            raise BadChecksum("SCTP CRC32c mismatch")
        try:
            chunks = ch.parse_chunks(packet)
        except ProtocolError:
            self._dropped += 1
            raise
        if dst != self.local_port or src != self.remote_port:
            self._dropped += 1
            return
        if not (vtag == self._local_tag and type(chunks[0]) is not ch.InitChunk) and not (
            self._tag_ok(vtag, chunks)
        ):
            self._dropped += 1
            return
        self._packets_received += 1
        self._last_rx_time = now
        had_gaps = self._rx.has_gaps
        data_seen = False
        handlers = self._handlers
        for chunk in chunks:
            if self._terminated:
                break
            kind = type(chunk)
            if kind is ch.DataChunk:
                if self._state in _DATA_RECEIVING:
                    self._on_data(chunk)  # type: ignore[arg-type]
                    data_seen = True
            elif kind is ch.ForwardTsnChunk:
                if self._state in _DATA_RECEIVING:
                    self._on_forward_tsn(chunk)  # type: ignore[arg-type]
                    data_seen = True
            elif kind is ch.UnknownChunk:
                if not self._on_unknown(chunk):  # type: ignore[arg-type]
                    break
            else:
                handlers[kind](chunk, now)
        if data_seen:
            self._data_packets_unacked += 1
            if (
                had_gaps
                or self._rx.has_gaps
                or self._duplicates
                or self._data_packets_unacked >= 2
                or self._state is _S.SHUTDOWN_SENT
            ):
                self._sack_now = True
            elif self._sack_due is None:
                self._sack_due = now + self.config.delayed_ack
        if self._deferred_reset is not None:
            self._maybe_perform_deferred_reset()
        if self._state is not _S.ESTABLISHED:
            self._check_shutdown(now)

    def _on_shutdown_complete(self) -> None:
        if self._state is _S.SHUTDOWN_ACK_SENT:
            self._terminate("shutdown", self._shutdown_by_peer)

    def _tag_ok(self, vtag: int, chunks: list[ch.Chunk]) -> bool:
        first = chunks[0]
        if type(first) is ch.InitChunk:
            # RFC 9260 §8.5.1: INIT travels alone with tag 0.
            return vtag == 0 and len(chunks) == 1
        if isinstance(first, (ch.AbortChunk, ch.ShutdownCompleteChunk)) and first.reflected:
            return self._peer_tag != 0 and vtag == self._peer_tag
        return vtag == self._local_tag

    # -- handshake

    def _init_params(self) -> ch.Params:
        return (
            (ch.PARAM_SUPPORTED_EXTENSIONS, _SUPPORTED_EXTENSIONS),
            (ch.PARAM_FORWARD_TSN_SUPPORTED, b""),
        )

    def _init_chunk(self) -> ch.InitChunk:
        cfg = self.config
        return ch.InitChunk(
            self._local_tag,
            cfg.receive_window,
            cfg.outbound_streams,
            cfg.inbound_streams,
            self._initial_tsn & TSN_MASK,
            self._init_params(),
        )

    @staticmethod
    def _peer_features(init: ch.InitChunk | ch.InitAckChunk) -> tuple[bool, bool]:
        exts = init.param(ch.PARAM_SUPPORTED_EXTENSIONS) or b""
        prsctp = init.param(ch.PARAM_FORWARD_TSN_SUPPORTED) is not None or (ch.FORWARD_TSN in exts)
        return prsctp, ch.RECONFIG in exts

    def _on_init(self, init: ch.InitChunk, now: float) -> None:
        if self._state not in _PRE_ESTABLISHED:
            # A restart (RFC 9260 §5.2.2) would need a new association object: WebRTC makes a
            # new DTLS connection instead. Count and ignore.
            self._dropped += 1
            return
        prsctp, reconfig = self._peer_features(init)
        cookie = seal_cookie(
            StateCookie(
                created=now,
                local_tag=self._local_tag,
                peer_tag=init.initiate_tag,
                local_initial_tsn=self._initial_tsn & TSN_MASK,
                peer_initial_tsn=init.initial_tsn,
                peer_a_rwnd=init.a_rwnd,
                peer_outbound_streams=init.outbound_streams,
                peer_inbound_streams=init.inbound_streams,
                peer_partial_reliability=prsctp,
                peer_reconfig=reconfig,
            ),
            self._cookie_key,
        )
        cfg = self.config
        # RFC 9260 §5.2.1: during a collision the INIT ACK repeats our INIT's parameters, which
        # is what we always do since our tag and initial TSN are fixed per association.
        ack = ch.InitAckChunk(
            self._local_tag,
            cfg.receive_window,
            cfg.outbound_streams,
            cfg.inbound_streams,
            self._initial_tsn & TSN_MASK,
            (*self._init_params(), (ch.PARAM_STATE_COOKIE, cookie)),
        )
        if len(self._solo) < _MAX_QUEUED_REPLIES:
            self._solo.append((init.initiate_tag, ack.encode()))

    def _on_init_ack(self, ack: ch.InitAckChunk, now: float) -> None:
        if self._state is not _S.COOKIE_WAIT:
            return
        cookie = ack.param(ch.PARAM_STATE_COOKIE)
        if cookie is None:
            self._dropped += 1
            return
        self._pending_init_ack = ack
        self._peer_tag = ack.initiate_tag
        self._cookie_echo = ch.CookieEchoChunk(cookie).encode()
        self._cookie_echo_due = True
        self._state = _S.COOKIE_ECHOED
        self._t1 = now + self.config.t1_initial
        self._t1_count = 0

    def _on_cookie_echo(self, echo: ch.CookieEchoChunk, now: float) -> None:
        try:
            cookie = open_cookie(echo.cookie, self._cookie_key, now, self.config.cookie_lifetime)
        except CookieExpired as exc:
            # RFC 9260 §5.2.6: report the staleness in microseconds to the cookie's owner.
            staleness = min(max(0, int(exc.staleness * 1_000_000)), TSN_MASK)
            error = ch.ErrorChunk(((ch.CAUSE_STALE_COOKIE, staleness.to_bytes(4, "big")),))
            if len(self._solo) < _MAX_QUEUED_REPLIES:
                self._solo.append((exc.peer_tag, error.encode()))
            self._dropped += 1
            return
        except RemoteProtocolError:
            self._dropped += 1
            return
        if cookie.local_tag != self._local_tag:
            self._dropped += 1
            return
        if self._state in _PRE_ESTABLISHED:
            self._establish(
                cookie.peer_tag,
                cookie.peer_initial_tsn,
                cookie.peer_a_rwnd,
                cookie.peer_outbound_streams,
                cookie.peer_inbound_streams,
                cookie.peer_partial_reliability,
                cookie.peer_reconfig,
                now,
            )
            self._control.append(ch.CookieAckChunk().encode())
        elif cookie.peer_tag == self._peer_tag:
            # RFC 9260 §5.2.4 case D: our COOKIE ACK was lost; answer again.
            self._control.append(ch.CookieAckChunk().encode())
        else:
            self._dropped += 1  # a restart: not supported (see _on_init)

    def _on_cookie_ack(self, now: float) -> None:
        ack = self._pending_init_ack
        if self._state is not _S.COOKIE_ECHOED or ack is None:
            return
        prsctp, reconfig = self._peer_features(ack)
        self._establish(
            ack.initiate_tag,
            ack.initial_tsn,
            ack.a_rwnd,
            ack.outbound_streams,
            ack.inbound_streams,
            prsctp,
            reconfig,
            now,
        )

    def _establish(
        self,
        peer_tag: int,
        peer_initial_tsn: int,
        peer_rwnd: int,
        peer_os: int,
        peer_mis: int,
        prsctp: bool,
        reconfig: bool,
        now: float,
    ) -> None:
        cfg = self.config
        self._peer_tag = peer_tag
        self._rx = ReceivedTsns(peer_initial_tsn - 1, max_ranges=cfg.max_tsn_window // 2)
        self._peer_req_expected = peer_initial_tsn
        self._outbound_streams = min(cfg.outbound_streams, peer_mis)
        self._inbound_streams = min(cfg.inbound_streams, peer_os)
        self._peer_prsctp = prsctp
        self._rtx.partial_reliability = prsctp
        self._peer_reconfig = reconfig
        self._peer_rwnd = peer_rwnd
        self._cc.ssthresh = peer_rwnd
        self._state = _S.ESTABLISHED
        self._t1 = None
        self._cookie_echo = None
        self._pending_init_ack = None
        self._last_rx_time = now
        self._events.append(
            AssociationEstablished(self._outbound_streams, self._inbound_streams, prsctp)
        )

    def _on_t1(self, now: float) -> None:
        self._t1_count += 1
        if self._t1_count > self.config.max_init_retransmits:
            self._terminate("handshake timed out", False)
            return
        cfg = self.config
        timeout = min(
            cfg.t1_initial * (2**self._t1_count), max(cfg.max_timer_backoff, cfg.t1_initial)
        )
        self._t1 = now + timeout
        if self._state is _S.COOKIE_WAIT:
            self._solo.append((0, self._init_chunk().encode()))
        elif self._state is _S.COOKIE_ECHOED:
            self._cookie_echo_due = True
        else:
            self._t1 = None

    # -- data

    def _deliver(self, event: DataReceived) -> None:
        self._rx_pending += len(event.data)
        self._messages_received += 1
        self._events.append(event)

    def _on_data(self, chunk: ch.DataChunk) -> None:
        rx = self._rx
        cum = rx.cumulative
        delta = (chunk.tsn - cum) & TSN_MASK  # unwrap() inlined: this runs per DATA chunk
        tsn = cum + delta if delta < 0x80000000 else cum + delta - 0x100000000
        if tsn <= cum or (delta != 1 and rx.contains(tsn)):
            self._duplicate_tsns += 1
            if len(self._duplicates) < _MAX_DUPLICATES_REPORTED:
                self._duplicates.append(chunk.tsn)
            return
        if tsn - cum > self.config.max_tsn_window:
            self._dropped += 1
            return
        size = len(chunk.payload)
        if chunk.stream_id >= self._inbound_streams:
            # RFC 9260 §6.5: report the invalid stream, but acknowledge the TSN.
            cause = chunk.stream_id.to_bytes(2, "big") + b"\x00\x00"
            self._reply(ch.ErrorChunk(((ch.CAUSE_INVALID_STREAM, cause),)).encode())
            rx.add(tsn)
            return
        window = self.config.receive_window
        held = self._inbound.buffered + self._rx_pending
        # RFC 9260 §6.2: drop what does not fit the window, except the chunk the peer is
        # waiting on (the next in sequence), which may free blocked data; a hard cap of twice
        # the window still holds against a peer that ignores our window.
        if held + size > window and (tsn != cum + 1 or held + size > 2 * window):
            self._dropped += 1
            return
        if not rx.can_add(tsn):
            self._dropped += 1
            return
        inbound = self._inbound
        if inbound.fragments_held >= self.config.max_tsn_window + inbound.max_fragments:
            # The window counts payload bytes, but every stored fragment or early message
            # costs ~200 bytes of objects: 1-byte fragments would turn 10 MiB into gigabytes.
            # An honest peer never gets here (items above the cumulative TSN are bounded by
            # max_tsn_window, below it only one message can be unfinished); the TSN stays
            # unacknowledged, so it would be sent again.
            self._dropped += 1
            return
        rx.add(tsn)
        self._bytes_received += size
        try:
            self._inbound.add(
                tsn, chunk.flags, chunk.stream_id, chunk.ssn, chunk.ppid, chunk.payload
            )
        except MalformedInput as exc:
            logger.debug("dropping malformed message: %s", exc)
            self._dropped += 1

    def _on_forward_tsn(self, chunk: ch.ForwardTsnChunk) -> None:
        rx = self._rx
        new_cum = unwrap(chunk.new_cumulative_tsn, rx.cumulative)
        if new_cum <= rx.cumulative:
            self._sack_now = True  # RFC 3758 §3.6: answer an old FORWARD TSN with a SACK
            return
        if new_cum - rx.cumulative > self.config.max_tsn_window:
            self._dropped += 1
            return
        rx.advance_to(new_cum)
        self._inbound.forward(new_cum, chunk.streams)
        self._sack_now = True

    # -- SACK, retransmission, PR-SCTP

    def _on_sack(self, sack: ch.SackChunk, now: float) -> None:
        if self._state not in _SACK_RECEIVING:
            return
        rtx = self._rtx
        cum = unwrap(sack.cumulative_tsn, rtx.cum_acked)
        if cum < rtx.cum_acked or cum >= self._next_tsn:
            return  # stale (reordered) SACK, or one acking what we never sent
        cum_advanced = cum > rtx.cum_acked
        flight_before = rtx.flight
        acked_bytes, rtt, lost = rtx.on_sack(cum, sack.gaps, now)
        cc = self._cc
        if rtt is not None:
            self._rto.measure(rtt)
        if cum_advanced:
            self._errors = 0
            cc.maybe_exit_recovery(cum)
        if lost:
            self._fast_rtx_pending = True
            cc.on_fast_retransmit(rtx.sent[-1].tsn if rtx.sent else cum)
        cc.on_ack(acked_bytes, flight_before, cum_advanced)
        self._ack_credit += acked_bytes
        self._peer_rwnd = sack.a_rwnd - rtx.flight
        if not rtx.sent:
            self._t3 = None
        elif cum_advanced:
            self._t3 = now + self._rto.rto
        if rtx.partial_reliability and rtx.sent and rtx.advance_peer_ack():
            self._forward_tsn_due = True

    def _on_abandon(self, message: OutMessage) -> None:
        if self._queue.current is message:
            self._queue.drop_current()
        self._forward_tsn_due = True

    def _on_t3(self, now: float) -> None:
        self._t3_expirations += 1
        self._rto.back_off()
        self._cc.on_timeout()
        rtx = self._rtx
        if not rtx.sent:
            self._t3 = None
            return
        rtx.mark_all(now)
        self._count_error("T3-rtx")
        if self._terminated:
            return
        if rtx.partial_reliability and rtx.advance_peer_ack():
            self._forward_tsn_due = True
        self._t3 = now + self._rto.rto

    def _count_error(self, what: str) -> None:
        self._errors += 1
        if self._errors > self.config.max_retransmissions:
            self.abort(f"peer unreachable ({what})")

    # -- heartbeats

    def _send_heartbeat(self, now: float) -> None:
        nonce = self._random(8)
        self._hb_nonce = nonce
        self._hb_ack_deadline = now + self._rto.rto
        self._control.append(ch.HeartbeatChunk(_HEARTBEAT_INFO.pack(nonce, now)).encode())

    def _on_heartbeat_ack(self, chunk: ch.HeartbeatAckChunk, now: float) -> None:
        if len(chunk.info) != _HEARTBEAT_INFO.size or self._hb_nonce is None:
            return
        nonce, sent_at = _HEARTBEAT_INFO.unpack(chunk.info)
        if nonce != self._hb_nonce:
            return
        self._hb_nonce = None
        self._hb_ack_deadline = None
        self._errors = 0
        self._rto.measure(now - sent_at)

    # -- stream reset (RFC 6525)

    def _maybe_request_reset(self, now: float) -> None:
        requester = self._reset
        if requester.busy or not requester.pending:
            return
        ready = [s for s in requester.pending if self._queue.stream_idle(s)]
        if not ready:
            return
        self._send_reset_request(ready[: self.config.max_reset_streams_per_request], now)

    def _send_reset_request(self, streams: list[int], now: float) -> None:
        request = self._reset.make_request(
            streams,
            (self._peer_req_expected - 1) & TSN_MASK,
            (self._next_tsn - 1) & TSN_MASK,
            now,
            self._rto.rto,
        )
        self._control.append(ch.ReconfigChunk((request.encode(),)).encode())

    def _on_reconfig_timeout(self, now: float) -> None:
        requester = self._reset
        request = requester.in_flight
        if request is not None:
            # No answer: the same request again (RFC 6525 §5.1.1).
            requester.retransmits += 1
            requester.deadline = now + self._rto.rto
            self._control.append(ch.ReconfigChunk((request.encode(),)).encode())
            self._count_error("RE-CONFIG")
        elif requester.retry is not None:
            # The peer said "in progress": ask again with a new request sequence number, as
            # dcSCTP (Chrome, Firefox) expects; it keeps answering "in progress" to the old one.
            streams = list(requester.retry.stream_ids)
            requester.retry = None
            self._send_reset_request(streams, now)
        else:
            requester.deadline = None

    def _on_reconfig(self, chunk: ch.ReconfigChunk, now: float) -> None:
        if self._state not in _SACK_RECEIVING:
            return
        try:
            params = decode_reconfig(chunk.params)
        except ProtocolError:
            self._dropped += 1
            return
        for param in params:
            if isinstance(param, OutgoingResetRequest):
                self._on_reset_request(param)
            elif isinstance(param, ReconfigResponse):
                self._on_reset_response(param, now)
            else:
                assert isinstance(param, OtherReconfigParam)
                self._respond(param.request_seq, RESULT_DENIED)

    def _respond(self, seq: int, result: int) -> None:
        self._reply(ch.ReconfigChunk((ReconfigResponse(seq, result).encode(),)).encode())

    def _on_reset_request(self, req: OutgoingResetRequest) -> None:
        """The peer resets its outgoing streams (RFC 6525 §5.2.2). As in dcSCTP, a request with
        the next sequence number is processed (and its number used up) even when the answer is
        "in progress"; a repeat of the last one gets the last answer again (§5.2.1)."""
        expected = self._peer_req_expected & TSN_MASK
        if req.request_seq == (expected - 1) & TSN_MASK:
            self._respond(req.request_seq, self._peer_last_result)
            return
        if req.request_seq != expected:
            self._respond(req.request_seq, RESULT_ERROR_BAD_SEQUENCE)
            return
        self._peer_req_expected += 1
        last = unwrap(req.last_tsn, self._rx.cumulative)
        if (req.stream_ids, last) == self._last_incoming_reset:
            # dcSCTP asking again (new number) for a reset we already did after answering
            # "in progress": nothing new to do or report.
            self._peer_last_result = RESULT_PERFORMED
        elif last <= self._rx.cumulative:
            self._last_incoming_reset = (req.stream_ids, last)
            self._perform_incoming_reset(req)
        else:
            # Data sent before the reset is still missing: reset once it has arrived and
            # say "in progress" meanwhile.
            self._deferred_reset = req
            self._deferred_last_tsn = last
            self._peer_last_result = RESULT_IN_PROGRESS
        self._respond(req.request_seq, self._peer_last_result)

    def _perform_incoming_reset(self, req: OutgoingResetRequest) -> None:
        # No list means every stream (RFC 6525 §4.1); only streams holding state need a reset,
        # and walking all 65535 ids per request let one packet cost the better part of a second.
        self._inbound.reset(req.stream_ids or self._inbound.stream_ids())
        self._peer_last_result = RESULT_PERFORMED
        self._deferred_reset = None
        self._events.append(StreamsReset(tuple(req.stream_ids), True))

    def _maybe_perform_deferred_reset(self) -> None:
        req = self._deferred_reset
        if req is not None and self._deferred_last_tsn <= self._rx.cumulative:
            self._last_incoming_reset = (req.stream_ids, self._deferred_last_tsn)
            self._perform_incoming_reset(req)
            # Unasked, so that a sender repeating the same request (aiortc) finishes now; one
            # that asks again with a new number (dcSCTP) ignores it and gets "performed" then.
            self._respond(req.request_seq, RESULT_PERFORMED)

    def _on_reset_response(self, resp: ReconfigResponse, now: float) -> None:
        requester = self._reset
        request = requester.in_flight or requester.retry
        if request is None or resp.response_seq != request.request_seq:
            return
        if resp.result == RESULT_IN_PROGRESS:
            if requester.in_flight is not None:
                requester.in_flight = None
                requester.retry = request
                requester.deadline = now + self._rto.rto
            return
        # Includes a late "performed" for a request the peer had called "in progress".
        requester.in_flight = requester.retry = None
        requester.deadline = None
        self._errors = 0
        for sid in request.stream_ids:
            self._resetting.discard(sid)
        if resp.result in (RESULT_PERFORMED, RESULT_NOTHING_TO_DO):
            for sid in request.stream_ids:
                self._out_ssn.pop(sid, None)
            self._events.append(StreamsReset(request.stream_ids, False))
        else:
            self._events.append(StreamsResetFailed(request.stream_ids, resp.result))

    # -- shutdown, abort, errors

    def _outstanding(self) -> bool:
        return bool(self._rtx.sent) or not self._queue.empty

    def _check_shutdown(self, now: float) -> None:
        if self._terminated:
            return
        state = self._state
        if state is _S.SHUTDOWN_PENDING and not self._outstanding():
            self._state = _S.SHUTDOWN_SENT
            self._control.append(ch.ShutdownChunk(self._rx.cumulative & TSN_MASK).encode())
            self._t2 = now + self._rto.rto
            self._t2_count = 0
        elif state is _S.SHUTDOWN_RECEIVED and not self._outstanding():
            self._state = _S.SHUTDOWN_ACK_SENT
            self._control.append(ch.ShutdownAckChunk().encode())
            self._t2 = now + self._rto.rto
            self._t2_count = 0

    def _on_shutdown(self, chunk: ch.ShutdownChunk, now: float) -> None:
        state = self._state
        if state in (_S.ESTABLISHED, _S.SHUTDOWN_PENDING, _S.SHUTDOWN_RECEIVED):
            if state is not _S.SHUTDOWN_RECEIVED:
                self._shutdown_by_peer = True
            self._state = _S.SHUTDOWN_RECEIVED
            self._on_sack(
                ch.SackChunk(chunk.cumulative_tsn, self._peer_rwnd + self._rtx.flight), now
            )
        elif state is _S.SHUTDOWN_SENT:
            self._state = _S.SHUTDOWN_ACK_SENT
            self._control.append(ch.ShutdownAckChunk().encode())
            self._t2 = now + self._rto.rto

    def _on_shutdown_ack(self) -> None:
        if self._state in (_S.SHUTDOWN_SENT, _S.SHUTDOWN_ACK_SENT):
            self._solo.append((self._peer_tag, ch.ShutdownCompleteChunk().encode()))
            self._terminate("shutdown", self._shutdown_by_peer)

    def _on_t2(self, now: float) -> None:
        self._t2_count += 1
        self._rto.back_off()
        if self._t2_count > self.config.max_retransmissions:
            self.abort("shutdown timed out")
            return
        self._t2 = now + self._rto.rto
        if self._state is _S.SHUTDOWN_SENT:
            self._control.append(ch.ShutdownChunk(self._rx.cumulative & TSN_MASK).encode())
        elif self._state is _S.SHUTDOWN_ACK_SENT:
            self._control.append(ch.ShutdownAckChunk().encode())
        else:
            self._t2 = None

    def _on_abort(self, chunk: ch.AbortChunk) -> None:
        if self._state is _S.CLOSED and not self._peer_tag:
            return
        reason = "peer aborted"
        for code, value in chunk.causes:
            if code == ch.CAUSE_USER_ABORT and value:
                reason += ": " + value.decode("utf-8", "replace")
                break
            reason += f" (cause {code})"
            break
        self._terminate(reason, True)

    def _on_error(self, chunk: ch.ErrorChunk, now: float) -> None:
        for code, _value in chunk.causes:
            if code == ch.CAUSE_STALE_COOKIE and self._state is _S.COOKIE_ECHOED:
                # RFC 9260 §5.2.6: start over with a fresh INIT.
                self._state = _S.COOKIE_WAIT
                self._cookie_echo = None
                self._pending_init_ack = None
                self._solo.append((0, self._init_chunk().encode()))
                self._t1 = now + self.config.t1_initial
            else:
                logger.debug("peer reported SCTP error cause %d", code)

    def _on_unknown(self, chunk: ch.UnknownChunk) -> bool:
        """Apply the unknown chunk type's action bits (RFC 9260 §3.2); False = stop."""
        action = chunk.chunk_type >> 6
        if action in (1, 3):
            raw = chunk.encode()
            self._reply(
                ch.ErrorChunk(
                    ((ch.CAUSE_UNRECOGNIZED_CHUNK, raw[: 4 + len(chunk.value)]),)
                ).encode()
            )
        return action >= 2

    def _terminate(self, reason: str, by_peer: bool) -> None:
        if self._terminated:
            return
        self._terminated = True
        self._state = _S.CLOSED
        self._t1 = self._t2 = self._t3 = self._sack_due = self._hb_ack_deadline = None
        self._reset.deadline = None
        self._queue.clear()
        self._rtx.clear()
        self._control.clear()
        self._events.append(AssociationClosed(reason, by_peer))

    def _buffered_low(self, stream_id: int) -> None:
        self._events.append(BufferedAmountLow(stream_id))
