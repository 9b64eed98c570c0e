"""SCTP congestion control (RFC 9260 §7.2.1 slow start) and Max.Burst (§6.1 D) with stretch
SACKs: the controller alone, then two associations driven by hand."""

from __future__ import annotations

import random

from zmesh.sansio.webrtc.sctp import SctpAssociation, SctpConfig
from zmesh.sansio.webrtc.sctp.congestion import CongestionController

MTU = 1188


def test_slow_start_grows_by_acked_bytes_up_to_l_mtus_when_window_is_full() -> None:
    cc = CongestionController(MTU, 10, 4, 5 << 20, increase_limit_packets=4)
    start = cc.cwnd
    cc.on_ack(16 * MTU, flight_before=start, cum_advanced=True)  # a stretch SACK
    assert cc.cwnd == start + 4 * MTU  # capped at L = Max.Burst MTUs
    cc.on_ack(2 * MTU, flight_before=cc.cwnd, cum_advanced=True)
    assert cc.cwnd == start + 6 * MTU  # the bytes acknowledged, when fewer


def test_slow_start_does_not_grow_an_underused_window() -> None:
    cc = CongestionController(MTU, 10, 4, 5 << 20, increase_limit_packets=4)
    start = cc.cwnd
    cc.on_ack(4 * MTU, flight_before=start - 3 * MTU, cum_advanced=True)  # not fully utilised
    cc.on_ack(4 * MTU, flight_before=start, cum_advanced=False)  # cum ack did not move
    assert cc.cwnd == start


def test_default_l_is_one_mtu() -> None:
    cc = CongestionController(MTU, 10, 4, 5 << 20)
    start = cc.cwnd
    cc.on_ack(16 * MTU, flight_before=start, cum_advanced=True)
    assert cc.cwnd == start + MTU


def _pair() -> tuple[SctpAssociation, SctpAssociation]:
    a = SctpAssociation(is_client=True, random=random.Random(1).randbytes)
    b = SctpAssociation(is_client=False, random=random.Random(2).randbytes)
    a.connect(0.0)
    b.connect(0.0)
    for _ in range(10):
        for packet in a.data_to_send(0.0):
            b.receive_data(packet, 0.0)
        for packet in b.data_to_send(0.0):
            a.receive_data(packet, 0.0)
    assert a.is_established and b.is_established
    while a.next_event() is not None:
        pass
    while b.next_event() is not None:
        pass
    return a, b


def test_a_stretch_sack_releases_what_it_acknowledged_plus_max_burst() -> None:
    a, b = _pair()
    burst = a.config.max_burst
    assert burst == SctpConfig().max_burst == 4
    for _ in range(40):
        a.send(1, 53, bytes(60_000), now=0.01)
    first = a.data_to_send(0.01)
    assert len(first) >= 10  # the initial window: nothing in flight, cwnd limits
    for packet in first:
        b.receive_data(packet, 0.02)  # the whole flight before b answers: one SACK
    sacks = b.data_to_send(0.02)
    assert len(sacks) == 1
    cwnd_before = a.stats.cwnd
    a.receive_data(sacks[0], 0.03)
    assert a.stats.flight_size == 0 and a.stats.cwnd == cwnd_before + burst * MTU
    second = a.data_to_send(0.03)
    assert len(second) > len(first)  # the grown window, all freed by the SACK
    assert a.stats.flight_size < a.stats.cwnd + MTU  # RFC 9260 §6.1 B: one packet over at most
    # Seven packets acknowledged while the rest stay in flight: the SACK's own seven plus
    # Max.Burst may go (the literal flightsize + Max.Burst rule would allow only four).
    for packet in second[:7]:
        b.receive_data(packet, 0.04)
    sack = b.data_to_send(0.04)
    assert len(sack) == 1
    a.receive_data(sack[0], 0.05)
    third = a.data_to_send(0.05)
    assert burst < len(third) <= 7 + burst
    assert a.stats.flight_size < a.stats.cwnd + MTU  # RFC 9260 §6.1 B: one packet over at most
    # No acknowledgement since: the next opportunity may send Max.Burst packets at most.
    assert len(a.data_to_send(0.06)) <= burst
