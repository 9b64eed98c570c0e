"""Retransmission timeout and congestion control (RFC 9260 §6.3.1, §7.2).

:class:`RtoEstimator` keeps SRTT/RTTVAR and the RTO with exponential back-off.
:class:`CongestionController` is RFC 9260's single-path Reno: slow start, congestion avoidance
with ``partial_bytes_acked``, fast recovery (§7.2.4) and the T3 collapse (§7.2.3). The initial
window is ``initial_cwnd_packets`` MTUs (10, like Chrome/dcSCTP; the RFC says
min(4 MTU, max(2 MTU, 4380 B))), and a cwnd never falls below ``min_cwnd_packets`` MTUs
except after a T3 timeout, which collapses it to one MTU as the RFC requires.

Slow start (§7.2.1) grows cwnd only while the window is *fully utilised* (flight size at the
SACK within one MTU of cwnd) and the cumulative TSN advanced, by at most the lesser of the bytes
newly acknowledged and ``L`` MTUs, where the RFC bounds ``L`` by Max.Burst (``increase_limit``
here, default Max.Burst = 4). ``L = 1`` (the RFC's SHOULD) starves slow start when the peer
acknowledges every *batch* of packets rather than every second packet (a stretch SACK of 16
packets would then grow cwnd by one MTU), so we use the RFC's upper bound, as RFC 3465
byte counting does for TCP; it still protects against ACK splitting (a split SACK acknowledges
fewer bytes, so it cannot grow cwnd faster than an honest one).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CongestionController", "RtoEstimator"]

_ALPHA: Final = 0.125  # RFC 9260 RTO.Alpha
_BETA: Final = 0.25  # RFC 9260 RTO.Beta


class RtoEstimator:
    """SRTT/RTTVAR/RTO. ``max_backoff`` caps how far timeouts double the RTO (Chrome caps it at
    3 s for WebRTC; RFC 9260 only at RTO.Max), but never below the measured RTO itself."""

    __slots__ = ("_base", "max_backoff", "rto", "rto_max", "rto_min", "rttvar", "srtt")

    def __init__(
        self, initial: float, minimum: float, maximum: float, max_backoff: float | None = None
    ) -> None:
        self.rto = initial
        self._base = initial  # the RTO before any back-off
        self.rto_min = minimum
        self.rto_max = maximum
        self.max_backoff = maximum if max_backoff is None else max_backoff
        self.srtt: float | None = None
        self.rttvar = 0.0

    def measure(self, rtt: float) -> None:
        """Fold one RTT measurement in (RFC 9260 §6.3.1 C1-C3)."""
        if rtt < 0:
            return
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt
        self.rto = self._base = min(max(self.srtt + 4 * self.rttvar, self.rto_min), self.rto_max)

    def back_off(self) -> None:
        """Double the RTO on a timeout (RFC 9260 §6.3.3 E2), within the back-off cap."""
        cap = min(self.rto_max, max(self.max_backoff, self._base))
        self.rto = min(self.rto * 2, cap)


class CongestionController:
    __slots__ = (
        "cwnd",
        "fast_recovery_exit",
        "increase_limit",
        "min_cwnd",
        "mtu",
        "partial_bytes_acked",
        "ssthresh",
    )

    def __init__(self, mtu: int, initial_packets: int, min_packets: int, ssthresh: int,
                 increase_limit_packets: int = 1) -> None:
        self.mtu = mtu
        self.increase_limit = max(1, increase_limit_packets) * mtu
        self.cwnd = initial_packets * mtu
        self.min_cwnd = min_packets * mtu
        self.ssthresh = ssthresh  # RFC 9260 §7.2.1: the peer's a_rwnd
        self.partial_bytes_acked = 0
        self.fast_recovery_exit: int | None = None  # unwrapped TSN, None outside recovery

    @property
    def in_fast_recovery(self) -> bool:
        return self.fast_recovery_exit is not None

    def on_ack(self, acked_bytes: int, flight_before: int, cum_advanced: bool) -> None:
        """New data acknowledged (RFC 9260 §7.2.1, §7.2.2)."""
        if acked_bytes <= 0 or self.fast_recovery_exit is not None:
            return
        if self.cwnd <= self.ssthresh:
            # Slow start: only when the window was in full use and the cum ack moved.
            if cum_advanced and flight_before + self.mtu >= self.cwnd:
                self.cwnd += min(acked_bytes, self.increase_limit)
            return
        self.partial_bytes_acked += acked_bytes
        if self.partial_bytes_acked >= self.cwnd and flight_before + self.mtu >= self.cwnd:
            self.partial_bytes_acked -= self.cwnd
            self.cwnd += self.mtu

    def maybe_exit_recovery(self, cumulative: int) -> None:
        if self.fast_recovery_exit is not None and cumulative >= self.fast_recovery_exit:
            self.fast_recovery_exit = None

    def on_fast_retransmit(self, highest_outstanding: int) -> None:
        """Loss seen through three miss indications (RFC 9260 §7.2.4)."""
        if self.fast_recovery_exit is not None:
            return
        self.ssthresh = max(self.cwnd // 2, self.min_cwnd)
        self.cwnd = self.ssthresh
        self.partial_bytes_acked = 0
        self.fast_recovery_exit = highest_outstanding

    def on_timeout(self) -> None:
        """T3-rtx expired (RFC 9260 §7.2.3)."""
        self.ssthresh = max(self.cwnd // 2, self.min_cwnd)
        self.cwnd = self.mtu
        self.partial_bytes_acked = 0
        self.fast_recovery_exit = None

    def on_idle(self, rto_expired: bool) -> None:
        """No data sent for an RTO (RFC 9260 §7.2.1): fall back to the initial window."""
        if rto_expired:
            self.cwnd = min(self.cwnd, max(self.min_cwnd, 4 * self.mtu))
