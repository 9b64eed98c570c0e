"""WebRTC data channels on one SCTP association, sans-IO (RFC 8831, RFC 8832).

:class:`DataChannelEndpoint` owns the channel bookkeeping on top of an
:class:`~zmesh.sansio.webrtc.sctp.SctpAssociation`:

- stream ids: the DTLS client takes even ids, the DTLS server odd ones (RFC 8832 §6);
- in-band channels: DATA_CHANNEL_OPEN / DATA_CHANNEL_ACK with PPID 50 (RFC 8832 §6); the opener
  may send as soon as OPEN is queued, ordered until the ACK (or any data) arrives;
- negotiated channels: the application picks the id on both sides, no DCEP (RFC 8831 §6.5);
- messages: strings with PPID 51 (56 when empty), binary with PPID 53 (57 when empty), an empty
  message travelling as one zero byte (RFC 8831 §6.6);
- reliability: ordered/unordered, ``max_retransmits`` or ``max_packet_lifetime`` (ms) mapped
  to PR-SCTP per message (RFC 8831 §6.1);
- closing: reset our outgoing stream; when the peer resets its side we reset ours too; the
  channel is closed when both directions are reset (RFC 8831 §6.7).

It passes the association's sans-IO surface through (``receive_data``, ``data_to_send``,
``get_timer``, ``handle_timer``) and translates its events into channel events.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass
from typing import TypeAlias

from zmesh.sansio.wire import LocalProtocolError, ProtocolError

from . import dcep
from .sctp import (
    AssociationClosed,
    AssociationEstablished,
    DataReceived,
    SctpAssociation,
    SctpEvent,
    StreamsReset,
    StreamsResetFailed,
)
from .sctp import BufferedAmountLow as StreamBufferedAmountLow

__all__ = [
    "AssociationClosed",
    "AssociationEstablished",
    "BufferedAmountLow",
    "ChannelClosed",
    "ChannelOpened",
    "ChannelState",
    "DataChannel",
    "DataChannelEndpoint",
    "DataChannelEvent",
    "MessageReceived",
]

logger = logging.getLogger(__name__)


class ChannelState(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class DataChannel:
    """A channel's fixed parameters (its changing state: :meth:`DataChannelEndpoint.state`)."""

    id: int
    label: str
    protocol: str = ""
    ordered: bool = True
    max_retransmits: int | None = None
    max_packet_lifetime: int | None = None  # milliseconds, as in the WebRTC API
    negotiated: bool = False
    priority: int = 256


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    channel: DataChannel


@dataclass(frozen=True, slots=True)
class MessageReceived:
    channel_id: int
    data: bytes | str


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    channel_id: int


@dataclass(frozen=True, slots=True)
class BufferedAmountLow:
    """The channel's queued bytes fell to its low-water mark: ``send`` has room again."""

    channel_id: int


DataChannelEvent: TypeAlias = (
    ChannelOpened
    | MessageReceived
    | ChannelClosed
    | BufferedAmountLow
    | AssociationEstablished
    | AssociationClosed
)


class _Channel:
    __slots__ = ("awaiting_ack", "in_reset", "info", "out_reset", "out_reset_requested", "state")

    def __init__(self, info: DataChannel, state: ChannelState, awaiting_ack: bool) -> None:
        self.info = info
        self.state = state
        self.awaiting_ack = awaiting_ack
        self.out_reset_requested = False
        self.out_reset = False
        self.in_reset = False


class DataChannelEndpoint:
    """Data channels over one SCTP association (see the module docstring)."""

    def __init__(
        self,
        association: SctpAssociation,
        *,
        is_dtls_client: bool,
        remote_max_message_size: int | None = None,
    ) -> None:
        self.association = association
        self.is_dtls_client = is_dtls_client
        #: The peer's SDP ``a=max-message-size`` (RFC 8841 §6; 0 = no limit); None = ours.
        self.remote_max_message_size = remote_max_message_size
        self._channels: dict[int, _Channel] = {}
        self._events: deque[DataChannelEvent] = deque()
        self._parity = 0 if is_dtls_client else 1
        self._now = 0.0  # the latest time a driver gave us (for replies sent from next_event)
        self.dropped_messages = 0

    # ------------------------------------------------------------------ queries

    def channel(self, channel_id: int) -> DataChannel:
        return self._get(channel_id).info

    def state(self, channel_id: int) -> ChannelState:
        chan = self._channels.get(channel_id)
        return ChannelState.CLOSED if chan is None else chan.state

    @property
    def channels(self) -> list[DataChannel]:
        return [c.info for c in self._channels.values()]

    def buffered_amount(self, channel_id: int) -> int:
        return self.association.buffered_amount(channel_id)

    def set_buffered_amount_low_threshold(self, channel_id: int, threshold: int) -> None:
        self.association.set_buffered_amount_low_threshold(channel_id, threshold)

    def _get(self, channel_id: int) -> _Channel:
        chan = self._channels.get(channel_id)
        if chan is None:
            raise LocalProtocolError(f"no data channel {channel_id}")
        return chan

    # ------------------------------------------------------------------ commands

    def connect(self, now: float) -> None:
        self.association.connect(now)

    def close(self, now: float) -> None:
        self.association.close(now)

    def abort(self, reason: str = "", now: float = 0.0) -> None:
        self.association.abort(reason, now)

    def _free_id(self) -> int:
        limit = self.association.outbound_streams
        for sid in range(self._parity, limit, 2):
            if sid not in self._channels:
                return sid
        raise LocalProtocolError("no free data channel id")

    def create_channel(
        self,
        label: str,
        *,
        protocol: str = "",
        ordered: bool = True,
        max_retransmits: int | None = None,
        max_packet_lifetime: int | None = None,
        negotiated_id: int | None = None,
        priority: int = 256,
        now: float,
    ) -> DataChannel:
        """Open a channel. ``negotiated_id`` given: a pre-negotiated channel with that id (the
        peer creates the same); otherwise an in-band DCEP channel with an id of our parity."""
        if max_retransmits is not None and max_packet_lifetime is not None:
            raise LocalProtocolError("give max_retransmits or max_packet_lifetime, not both")
        if (max_retransmits is not None and not 0 <= max_retransmits <= 0xFFFFFFFF) or (
            max_packet_lifetime is not None and not 0 <= max_packet_lifetime <= 0xFFFFFFFF
        ):
            raise LocalProtocolError("reliability parameter out of range")
        if len(label.encode("utf-8")) > 0xFFFF or len(protocol.encode("utf-8")) > 0xFFFF:
            raise LocalProtocolError("label or protocol longer than 65535 bytes")
        if negotiated_id is not None:
            if not 0 <= negotiated_id < self.association.outbound_streams:
                raise LocalProtocolError(f"channel id {negotiated_id} out of range")
            if negotiated_id in self._channels:
                raise LocalProtocolError(f"channel id {negotiated_id} is in use")
            sid = negotiated_id
        else:
            sid = self._free_id()
        info = DataChannel(
            sid,
            label,
            protocol,
            ordered,
            max_retransmits,
            max_packet_lifetime,
            negotiated_id is not None,
            priority,
        )
        established = self.association.is_established
        if negotiated_id is None:
            # RFC 8832 §6: OPEN goes first on the stream, ordered and reliable.
            opener = dcep.DataChannelOpen.for_channel(
                label,
                protocol,
                ordered=ordered,
                max_retransmits=max_retransmits,
                max_packet_lifetime=max_packet_lifetime,
                priority=priority,
            )
            self.association.send(sid, dcep.PPID_DCEP, opener.encode(), now=now)
        chan = _Channel(
            info,
            ChannelState.OPEN if established else ChannelState.CONNECTING,
            awaiting_ack=negotiated_id is None,
        )
        self._channels[sid] = chan
        if established:
            self._events.append(ChannelOpened(info))
        return info

    def send(self, channel_id: int, data: bytes | str, now: float) -> None:
        """Send one message; raises :class:`~.sctp.SendBufferFull` when the buffer is full."""
        chan = self._get(channel_id)
        if chan.state is not ChannelState.OPEN:
            raise LocalProtocolError(f"channel {channel_id} is {chan.state.value}")
        if isinstance(data, str):
            payload = data.encode("utf-8")
            ppid = dcep.PPID_STRING if payload else dcep.PPID_STRING_EMPTY
        else:
            payload = bytes(data)
            ppid = dcep.PPID_BINARY if payload else dcep.PPID_BINARY_EMPTY
        limit = self.remote_max_message_size
        if limit and len(payload) > limit:
            raise LocalProtocolError(f"message of {len(payload)} bytes exceeds the peer's limit")
        if not payload:
            payload = b"\x00"  # RFC 8831 §6.6: an empty message is sent as one zero byte
        info = chan.info
        lifetime = None if info.max_packet_lifetime is None else info.max_packet_lifetime / 1000
        self.association.send(
            channel_id,
            ppid,
            payload,
            # Until the peer has acknowledged OPEN, keep order so OPEN arrives first.
            ordered=info.ordered or chan.awaiting_ack,
            max_retransmits=info.max_retransmits,
            max_lifetime=lifetime,
            now=now,
        )

    def close_channel(self, channel_id: int, now: float) -> None:
        """Close by resetting our outgoing stream; ChannelClosed follows once both directions
        are reset."""
        chan = self._get(channel_id)
        if chan.state in (ChannelState.CLOSING, ChannelState.CLOSED):
            return
        if not self.association.is_established:
            if chan.info.negotiated:
                self._closed(channel_id)
            else:
                # Its OPEN is already queued: reset the stream once the association is up.
                chan.state = ChannelState.CLOSING
            return
        chan.state = ChannelState.CLOSING
        self._request_reset(chan, now)

    def _request_reset(self, chan: _Channel, now: float) -> None:
        if not chan.out_reset_requested:
            chan.out_reset_requested = True
            self.association.reset_streams([chan.info.id], now)

    def _closed(self, channel_id: int) -> None:
        chan = self._channels.pop(channel_id, None)
        if chan is not None:
            chan.state = ChannelState.CLOSED
            self._events.append(ChannelClosed(channel_id))

    # ------------------------------------------------------------------ sans-IO pass-through

    def receive_data(self, packet: bytes, now: float) -> None:
        self._now = now
        self.association.receive_data(packet, now)

    def data_to_send(self, now: float) -> list[bytes]:
        self._now = now
        return self.association.data_to_send(now)

    def get_timer(self) -> float | None:
        return self.association.get_timer()

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.association.handle_timer(now)

    def next_event(self) -> DataChannelEvent | None:
        # Association events are translated one at a time, only when the application asks:
        # undrained messages stay in the association, where they count against the receive
        # window we advertise (that is the receive-side bound).
        while not self._events:
            event = self.association.next_event()
            if event is None:
                return None
            self._translate(event, self._now)
        return self._events.popleft()

    # ------------------------------------------------------------------ event translation

    def _translate(self, event: SctpEvent, now: float) -> None:
        """Turn one association event into channel events (and DCEP replies)."""
        if isinstance(event, DataReceived):
            self._on_message(event, now)
        elif isinstance(event, StreamBufferedAmountLow):
            if event.stream_id in self._channels:
                self._events.append(BufferedAmountLow(event.stream_id))
        elif isinstance(event, StreamsReset):
            self._on_streams_reset(event, now)
        elif isinstance(event, StreamsResetFailed):
            for sid in event.stream_ids:
                self._closed(sid)
        elif isinstance(event, AssociationEstablished):
            self._events.append(event)
            for chan in list(self._channels.values()):
                if chan.state is ChannelState.CONNECTING:
                    chan.state = ChannelState.OPEN
                    self._events.append(ChannelOpened(chan.info))
                elif chan.state is ChannelState.CLOSING and not chan.out_reset_requested:
                    try:
                        self._request_reset(chan, now)
                    except LocalProtocolError:  # the peer cannot reset streams
                        self._closed(chan.info.id)
        else:
            assert isinstance(event, AssociationClosed)
            for sid in list(self._channels):
                self._closed(sid)
            self._events.append(event)

    def _on_message(self, event: DataReceived, now: float) -> None:
        sid = event.stream_id
        ppid = event.ppid
        chan = self._channels.get(sid)
        if ppid == dcep.PPID_DCEP:
            self._on_dcep(event, chan, now)
            return
        if chan is None or chan.state is ChannelState.CLOSED:
            self.dropped_messages += 1
            return
        chan.awaiting_ack = False  # RFC 8832 §6: user data implies the peer saw OPEN
        data: bytes | str
        if ppid == dcep.PPID_STRING:
            try:
                data = event.data.decode("utf-8")
            except UnicodeDecodeError:
                self.dropped_messages += 1
                return
        elif ppid == dcep.PPID_BINARY:
            data = event.data
        elif ppid == dcep.PPID_STRING_EMPTY:
            data = ""
        elif ppid == dcep.PPID_BINARY_EMPTY:
            data = b""
        else:
            self.dropped_messages += 1
            return
        self._events.append(MessageReceived(sid, data))

    def _on_dcep(self, event: DataReceived, chan: _Channel | None, now: float) -> None:
        sid = event.stream_id
        try:
            message = dcep.parse_dcep(event.data)
        except ProtocolError as exc:
            logger.debug("bad DCEP message on stream %d: %s", sid, exc)
            self.dropped_messages += 1
            return
        if isinstance(message, dcep.DataChannelAck):
            if chan is not None:
                chan.awaiting_ack = False
            return
        if chan is not None or sid % 2 == self._parity:
            # RFC 8832 §6: the peer must use the other parity and a free stream.
            logger.debug("refusing DATA_CHANNEL_OPEN on stream %d", sid)
            self.dropped_messages += 1
            return
        info = DataChannel(
            sid,
            message.label,
            message.protocol,
            message.ordered,
            message.max_retransmits,
            message.max_packet_lifetime,
            False,
            message.priority,
        )
        self._channels[sid] = _Channel(info, ChannelState.OPEN, awaiting_ack=False)
        try:
            self.association.send(sid, dcep.PPID_DCEP, dcep.DataChannelAck().encode(), now=now)
        except LocalProtocolError as exc:
            logger.debug("could not acknowledge channel %d: %s", sid, exc)
        self._events.append(ChannelOpened(info))

    def _on_streams_reset(self, event: StreamsReset, now: float) -> None:
        for sid in event.stream_ids:
            chan = self._channels.get(sid)
            if chan is None:
                continue
            if event.incoming:
                chan.in_reset = True
                if not chan.out_reset_requested:
                    # The peer closed the channel: close our direction too (RFC 8831 §6.7).
                    chan.state = ChannelState.CLOSING
                    try:
                        self._request_reset(chan, now)
                    except LocalProtocolError:
                        self._closed(sid)
                        continue
            else:
                chan.out_reset = True
            if chan.in_reset and chan.out_reset:
                self._closed(sid)
