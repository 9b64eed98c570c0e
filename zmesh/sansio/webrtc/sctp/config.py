"""Tunable SCTP parameters (RFC 9260 §16 protocol parameters, Chrome's dcSCTP defaults).

Defaults follow Chrome's dcSCTP options (libwebrtc ``net/dcsctp/public/dcsctp_options.h``, see
``shared/research/webrtc.md`` §5) where they exist, and RFC 9260 §16 otherwise. Where we deviate
from the RFC the field comment says why; ``docs/wire/sctp.md`` lists the profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from zmesh.sansio.wire import LocalProtocolError

__all__ = ["MAX_MESSAGE_SIZE", "SctpConfig"]

MAX_MESSAGE_SIZE: Final = 262_144  # Chrome's a=max-message-size


@dataclass(frozen=True)
class SctpConfig:
    """Association parameters. Times are in seconds, sizes in bytes."""

    #: Largest SCTP packet we send: what fits a 1200-byte DTLS-protected UDP datagram budget
    #: (Chrome uses 1191, aiortc 1189). A parameter so the DTLS layer can set its own figure.
    max_packet_size: int = 1188
    #: Receive window we advertise and the bound on bytes held for reassembly and delivery
    #: (Chrome: 5 MiB).
    receive_window: int = 5 * 1024 * 1024
    #: Bound on bytes queued by ``send`` and not yet put on the wire (back-pressure point).
    send_buffer_size: int = 4 * 1024 * 1024
    #: A stream's BufferedAmountLow fires when its queued bytes fall to this level or below.
    buffered_amount_low_threshold: int = 0
    #: Largest user message we accept to send or reassemble.
    max_message_size: int = MAX_MESSAGE_SIZE
    #: Streams announced in INIT (OS / MIS). dcSCTP announces 65535 both ways.
    outbound_streams: int = 65535
    inbound_streams: int = 65535
    #: RTO (RFC 9260 §6.3): initial 1 s as the RFC says; minimum 0.4 s like Chrome (the RFC's
    #: 1 s minimum makes every timeout-recovered loss cost a full second on a LAN); max 60 s.
    rto_initial: float = 1.0
    rto_min: float = 0.4
    rto_max: float = 60.0
    #: Timeouts double the RTO up to this (or the measured RTO if larger): Chrome caps its
    #: back-off at 3 s for WebRTC so that a burst of loss does not stall a channel for a
    #: minute; the RFC's cap is rto_max. Also caps the T1 (handshake) back-off.
    max_timer_backoff: float = 3.0
    #: T1-init / T1-cookie start value (RFC 9260 §16: RTO.Initial).
    t1_initial: float = 1.0
    max_init_retransmits: int = 8  # RFC 9260 Max.Init.Retransmits
    max_retransmissions: int = 10  # RFC 9260 Association.Max.Retrans
    #: Idle heartbeat interval (RFC 9260 HB.interval, Chrome 30 s).
    heartbeat_interval: float = 30.0
    #: Delayed SACK (RFC 9260 §6.2: at most 200 ms, and at least every second packet).
    delayed_ack: float = 0.2
    #: Congestion control (RFC 9260 §7.2 with the larger initial window Chrome uses).
    initial_cwnd_packets: int = 10
    min_cwnd_packets: int = 4
    max_burst: int = 4
    #: Valid life of a State Cookie (RFC 9260 §16 Valid.Cookie.Life).
    cookie_lifetime: float = 60.0
    #: How far ahead of the cumulative TSN a DATA chunk may be and still be kept; bounds the
    #: gap-tracking state a peer can create (the SACK's 16-bit gap offsets allow 65535).
    max_tsn_window: int = 32_768
    #: Most stream ids one RE-CONFIG request carries (keeps it well inside one packet).
    max_reset_streams_per_request: int = 128

    def __post_init__(self) -> None:
        if not 256 <= self.max_packet_size <= 65_535:
            raise LocalProtocolError(f"max_packet_size {self.max_packet_size}")
        if self.receive_window < 2 * self.max_packet_size:
            raise LocalProtocolError("receive_window smaller than two packets")
        if self.receive_window < self.max_message_size:
            raise LocalProtocolError("receive_window must hold one whole message")
        if not 1 <= self.outbound_streams <= 65_535 or not 1 <= self.inbound_streams <= 65_535:
            raise LocalProtocolError("stream counts must be 1..65535")
        if not 0 < self.rto_min <= self.rto_initial <= self.rto_max:
            raise LocalProtocolError("need 0 < rto_min <= rto_initial <= rto_max")
        if not 0 < self.max_tsn_window <= 65_535:
            raise LocalProtocolError("max_tsn_window must be 1..65535")

    @property
    def max_data_payload(self) -> int:
        """User bytes in a DATA chunk that fills a packet alone (header 12 + chunk 16)."""
        return (self.max_packet_size - 12 - 16) & ~3
