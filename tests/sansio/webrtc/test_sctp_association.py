"""SCTP association state machine: two ends back to back in virtual time (sctp.loopback)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zmesh.sansio.webrtc.sctp import (
    AssociationClosed,
    AssociationEstablished,
    AssociationState,
    BadChecksum,
    BufferedAmountLow,
    DataReceived,
    SctpAssociation,
    SctpConfig,
    SendBufferFull,
    StreamsReset,
)
from zmesh.sansio.webrtc.sctp import chunks as ch
from zmesh.sansio.webrtc.sctp.loopback import Loopback
from zmesh.sansio.webrtc.sctp.packet import with_checksum
from zmesh.sansio.wire import LocalProtocolError, ProtocolError


def _rng_source(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def make_pair(
    *,
    seed: int = 1,
    latency: float = 0.01,
    config: SctpConfig | None = None,
    a_to_b: Callable[[bytes], bytes | None] | None = None,
    b_to_a: Callable[[bytes], bytes | None] | None = None,
    random_a: Callable[[int], bytes] | None = None,
) -> tuple[SctpAssociation, SctpAssociation, Loopback]:
    a = SctpAssociation(is_client=True, random=random_a or _rng_source(seed), config=config)
    b = SctpAssociation(is_client=False, random=_rng_source(seed + 1000), config=config)
    return a, b, Loopback(a, b, latency=latency, a_to_b=a_to_b, b_to_a=b_to_a)


def established_pair(**kwargs: object) -> tuple[SctpAssociation, SctpAssociation, Loopback]:
    a, b, lb = make_pair(**kwargs)  # type: ignore[arg-type]
    a.connect(lb.now)
    b.connect(lb.now)
    assert lb.run(lambda: a.is_established and b.is_established, timeout=30)
    lb.events["a"].clear()
    lb.events["b"].clear()
    return a, b, lb


def received(lb: Loopback, side: str = "b") -> list[DataReceived]:
    return [e for e in lb.events[side] if isinstance(e, DataReceived)]


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def chunk_types(packet: bytes) -> list[type]:
    return [type(c) for c in ch.parse_chunks(packet)]


# ---------------------------------------------------------------- handshake


def test_one_sided_connect() -> None:
    a, b, lb = make_pair()
    a.connect(0.0)
    assert a.state is AssociationState.COOKIE_WAIT
    assert lb.run(lambda: a.is_established and b.is_established)
    assert lb.now == pytest.approx(0.04)  # INIT, INIT ACK, COOKIE ECHO, COOKIE ACK
    assert isinstance(lb.events["a"][0], AssociationEstablished)
    assert lb.events["b"][0] == AssociationEstablished(65535, 65535, True)


def test_init_collision_both_sides_connect() -> None:
    a, b, lb = make_pair()
    a.connect(0.0)
    b.connect(0.0)
    assert lb.run(lambda: a.is_established and b.is_established)
    # Each side established exactly once, with the other's tag.
    assert [type(e) for e in lb.events["a"]] == [AssociationEstablished]
    assert [type(e) for e in lb.events["b"]] == [AssociationEstablished]
    a.send(0, 51, b"x", now=lb.now)
    b.send(1, 51, b"y", now=lb.now)
    lb.run(lambda: bool(received(lb, "a")) and bool(received(lb, "b")))
    assert received(lb, "b")[0].data == b"x" and received(lb, "a")[0].data == b"y"


def test_init_collision_with_skew() -> None:
    a, b, lb = make_pair(latency=0.05)
    a.connect(0.0)
    lb.run(timeout=0.03)  # a's INIT is in flight when b starts
    b.connect(lb.now)
    assert lb.run(lambda: a.is_established and b.is_established)


def test_handshake_retransmits_lost_init() -> None:
    dropped = []

    def drop_first(packet: bytes) -> bytes | None:
        if not dropped:
            dropped.append(packet)
            return None
        return packet

    a, b, lb = make_pair(a_to_b=drop_first)
    a.connect(0.0)
    assert lb.run(lambda: a.is_established and b.is_established)
    assert chunk_types(dropped[0]) == [ch.InitChunk]
    assert lb.now > 1.0  # T1-init (1 s) fired


def test_handshake_gives_up() -> None:
    a, _b, lb = make_pair(a_to_b=lambda p: None)
    a.connect(0.0)
    lb.run(timeout=1000)
    assert lb.events["a"] == [AssociationClosed("handshake timed out", False)]
    assert a.state is AssociationState.CLOSED


def test_data_queued_before_establishment_is_sent() -> None:
    a, _b, lb = make_pair()
    a.send(3, 53, b"early", now=0.0)
    a.connect(0.0)
    lb.run(lambda: bool(received(lb)))
    assert received(lb)[0] == DataReceived(3, 53, b"early", True)


def test_forged_cookie_is_dropped() -> None:
    a, b, lb = make_pair()

    def tamper(packet: bytes) -> bytes | None:
        if ch.CookieEchoChunk in chunk_types(packet):
            raw = bytearray(packet)
            raw[30] ^= 0xFF  # inside the cookie body: the MAC no longer matches
            return with_checksum(raw)
        return packet

    lb._manglers["a"] = tamper
    a.connect(0.0)
    lb.run(timeout=0.5)
    assert not b.is_established
    assert b.stats.dropped_packets >= 1


# ---------------------------------------------------------------- data transfer


@pytest.mark.parametrize("size", [1, 2, 1159, 1160, 1161, 5000, 65536, 262144])
def test_message_sizes(size: int) -> None:
    a, _b, lb = established_pair()
    data = payload(size, size)
    a.send(7, 53, data, now=lb.now)
    assert lb.run(lambda: bool(received(lb)))
    assert received(lb) == [DataReceived(7, 53, data, True)]


def test_many_messages_ordered_per_stream_and_unordered() -> None:
    a, _b, lb = established_pair()
    sent: dict[int, list[bytes]] = {0: [], 2: []}
    for i in range(200):
        data = payload(1 + (i * 37) % 3000, i)
        sid = 0 if i % 2 else 2
        sent[sid].append(data)
        a.send(sid, 53, data, now=lb.now)
    unordered = [payload(100, 1000 + i) for i in range(20)]
    for data in unordered:
        a.send(4, 53, data, ordered=False, now=lb.now)
    assert lb.run(lambda: len(received(lb)) == 220)
    for sid, msgs in sent.items():
        assert [e.data for e in received(lb) if e.stream_id == sid] == msgs
    got_unordered = [e for e in received(lb) if e.stream_id == 4]
    assert sorted(e.data for e in got_unordered) == sorted(unordered)
    assert not any(e.ordered for e in got_unordered)


def test_small_messages_are_bundled() -> None:
    a, _b, lb = established_pair()
    for i in range(50):
        a.send(0, 51, b"m%d" % i, now=lb.now)
    before = lb.packets["a"]
    assert lb.run(lambda: len(received(lb)) == 50)
    assert lb.packets["a"] - before <= 3


def test_bidirectional_and_sack_piggybacking() -> None:
    a, b, lb = established_pair()
    for i in range(100):
        a.send(0, 53, payload(1000, i), now=lb.now)
        b.send(1, 53, payload(1000, 500 + i), now=lb.now)
    assert lb.run(lambda: len(received(lb, "a")) == 100 and len(received(lb, "b")) == 100)


def test_delayed_ack_single_packet() -> None:
    a, b, lb = established_pair(latency=0.0)
    out: list[bytes] = []
    lb._manglers["b"] = lambda p: (out.append(p), p)[1]
    a.send(0, 53, b"one", now=lb.now)
    assert lb.run(lambda: b.stats.bytes_received == 3)
    start = lb.now
    assert not out  # no SACK yet: delayed
    assert b.get_timer() == pytest.approx(start + 0.2)
    lb.run(lambda: bool(out))
    assert lb.now == pytest.approx(start + 0.2)
    assert chunk_types(out[0]) == [ch.SackChunk]


def test_every_second_packet_is_acked_at_once() -> None:
    a, _b, lb = established_pair(latency=0.0)
    sacks: list[float] = []

    def watch(packet: bytes) -> bytes:
        if ch.SackChunk in chunk_types(packet):
            sacks.append(lb.now)
        return packet

    lb._manglers["b"] = watch
    start = lb.now
    a.send(0, 53, payload(2200), now=lb.now)  # two full packets
    assert lb.run(lambda: bool(sacks))
    assert sacks[0] == start  # no 200 ms delay on the second packet


def test_tsn_wrap_around() -> None:
    calls = iter([b"\x11\x22\x33\x44", b"\xff\xff\xff\xf0"])
    rest = _rng_source(9)

    def source(n: int) -> bytes:
        return next(calls, None) or rest(n)

    a, b, lb = make_pair(random_a=source)
    a.connect(0.0)
    assert lb.run(lambda: a.is_established and b.is_established)
    msgs = [payload(3000, i) for i in range(30)]  # 90 TSNs across the wrap
    for m in msgs:
        a.send(0, 53, m, now=lb.now)
    assert lb.run(lambda: len(received(lb)) == 30)
    assert [e.data for e in received(lb)] == msgs


# ---------------------------------------------------------------- loss and retransmission


def lossy(rate: float, seed: int, skip: int = 0) -> Callable[[bytes], bytes | None]:
    rng = random.Random(seed)
    count = [0]

    def mangle(packet: bytes) -> bytes | None:
        count[0] += 1
        if count[0] > skip and rng.random() < rate:
            return None
        return packet

    return mangle


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_reliable_transfer_under_loss(rate: float) -> None:
    a, _b, lb = established_pair(seed=3)
    lb._manglers["a"] = lossy(rate, 1)
    lb._manglers["b"] = lossy(rate, 2)
    msgs = [payload(1 + (i * 7919) % 20000, i) for i in range(60)]
    for m in msgs:
        a.send(1, 53, m, now=lb.now)
    assert lb.run(lambda: len(received(lb)) == 60, timeout=300)
    assert [e.data for e in received(lb)] == msgs
    assert a.stats.retransmissions > 0


def test_fast_retransmit_recovers_single_loss_without_timeout() -> None:
    a, _b, lb = established_pair()
    count = [0]

    def drop_fifth_data(packet: bytes) -> bytes | None:
        if ch.DataChunk in chunk_types(packet):
            count[0] += 1
            if count[0] == 5:
                return None
        return packet

    lb._manglers["a"] = drop_fifth_data
    start = lb.now
    for i in range(20):
        a.send(0, 53, payload(1100, i), now=lb.now)
    assert lb.run(lambda: len(received(lb)) == 20)
    assert a.stats.fast_retransmissions == 1
    assert a.stats.t3_expirations == 0
    assert lb.now - start < 0.2  # well under one RTO
    assert a.stats.cwnd < 10 * 1188  # halved on entering fast recovery


def test_t3_timeout_retransmits_tail_loss() -> None:
    a, _b, lb = established_pair()
    dropped = [False]

    def drop_only_data(packet: bytes) -> bytes | None:
        if not dropped[0] and ch.DataChunk in chunk_types(packet):
            dropped[0] = True
            return None
        return packet

    lb._manglers["a"] = drop_only_data
    start = lb.now
    a.send(0, 53, b"tail", now=lb.now)
    assert lb.run(lambda: bool(received(lb)))
    assert a.stats.t3_expirations == 1
    assert lb.now - start >= 1.0  # RTO.Initial before any RTT sample
    assert a.stats.cwnd == 1188


def test_association_aborts_after_too_many_retransmissions() -> None:
    a, _b, lb = established_pair()
    lb._manglers["a"] = lambda p: None
    a.send(0, 53, b"lost", now=lb.now)
    lb.run(lambda: any(isinstance(e, AssociationClosed) for e in lb.events["a"]), timeout=2000)
    closed = [e for e in lb.events["a"] if isinstance(e, AssociationClosed)]
    assert closed and "unreachable" in closed[0].reason


# ---------------------------------------------------------------- PR-SCTP


def test_unreliable_messages_abandoned_with_forward_tsn() -> None:
    a, _b, lb = established_pair()
    count = [0]
    seen_forward = []

    def drop_some(packet: bytes) -> bytes | None:
        kinds = chunk_types(packet)
        if ch.ForwardTsnChunk in kinds:
            seen_forward.append(packet)
        if ch.DataChunk in kinds:
            count[0] += 1
            if count[0] % 3 == 0:
                return None
        return packet

    lb._manglers["a"] = drop_some
    for i in range(30):
        a.send(2, 53, b"u%d" % i + bytes(1100), ordered=True, max_retransmits=0, now=lb.now)
    a.send(2, 53, b"reliable-end", now=lb.now)
    assert lb.run(lambda: any(e.data == b"reliable-end" for e in received(lb)), timeout=60)
    got = [e.data[:4] for e in received(lb)]
    assert 15 <= len(got) < 31  # some abandoned, the rest in order
    indices = [int(g[1:].rstrip(b"\x00").decode()) for g in got[:-1]]
    assert indices == sorted(indices)
    assert a.stats.abandoned_messages >= 5
    assert seen_forward
    lb.run(timeout=2)
    assert a.stats.flight_size == 0


def test_lifetime_expiry_drops_unsent_and_unacked() -> None:
    a, _b, lb = established_pair()
    lb._manglers["a"] = lambda p: None if ch.DataChunk in chunk_types(p) else p
    a.send(0, 53, b"expires", ordered=False, max_lifetime=0.05, now=lb.now)
    lb.run(timeout=3)
    assert a.stats.abandoned_messages == 1
    lb._manglers["a"] = None
    a.send(0, 53, b"after", now=lb.now)
    assert lb.run(lambda: bool(received(lb)))
    assert [e.data for e in received(lb)] == [b"after"]


def test_fragmented_unreliable_message_abandoned_whole() -> None:
    a, b, lb = established_pair()
    count = [0]

    def drop_second_data(packet: bytes) -> bytes | None:
        if ch.DataChunk in chunk_types(packet):
            count[0] += 1
            if count[0] == 2:
                return None
        return packet

    lb._manglers["a"] = drop_second_data
    a.send(0, 53, payload(10_000), ordered=False, max_retransmits=0, now=lb.now)
    a.send(0, 53, b"next", ordered=False, now=lb.now)
    assert lb.run(lambda: any(e.data == b"next" for e in received(lb)), timeout=30)
    lb.run(timeout=2)
    assert [e.data for e in received(lb)] == [b"next"]
    assert b.stats.messages_received == 1


# ---------------------------------------------------------------- bad input


def test_bad_checksum_dropped_and_counted() -> None:
    a, b, lb = established_pair()
    a.send(0, 53, b"hello", now=lb.now)
    packet = a.data_to_send(lb.now)[0]
    broken = bytearray(packet)
    broken[-1] ^= 1
    before = b.stats
    with pytest.raises(BadChecksum):
        b.receive_data(bytes(broken), lb.now)
    assert b.stats.bad_checksums == 1 and b.stats.dropped_packets == before.dropped_packets + 1
    assert b.next_event() is None
    b.receive_data(packet, lb.now)
    assert b.next_event() == DataReceived(0, 53, b"hello", True)


def test_wrong_verification_tag_dropped() -> None:
    a, b, lb = established_pair()
    a.send(0, 53, b"hello", now=lb.now)
    packet = bytearray(a.data_to_send(lb.now)[0])
    packet[4:8] = b"\x00\x00\x00\x01"
    b.receive_data(with_checksum(packet), lb.now)
    assert b.next_event() is None and b.stats.dropped_packets == 1


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=200))
def test_random_packets_raise_only_protocol_errors(body: bytes) -> None:
    a, b, lb = established_pair(seed=77)
    header = bytes.fromhex("13881388") + b._local_tag.to_bytes(4, "big") + bytes(4)
    state = b.state
    with contextlib.suppress(ProtocolError):
        b.receive_data(with_checksum(header + body), lb.now)
    assert b.state in (state, AssociationState.CLOSED, AssociationState.SHUTDOWN_RECEIVED)
    while b.next_event() is not None:
        pass
    b.data_to_send(lb.now)
    if b.is_established:
        # Whatever the packet did, the association still carries data.
        a.send(0, 53, b"still alive", now=lb.now)
        assert lb.run(lambda: DataReceived(0, 53, b"still alive", True) in lb.events["b"])


def test_unknown_chunk_actions() -> None:
    _a, b, lb = established_pair()
    header = bytes.fromhex("13881388") + b._local_tag.to_bytes(4, "big") + bytes(4)
    data = ch.DataChunk(3, 0, 0, 0, 53, b"x")
    # 0x40: stop processing the packet and report it.
    pkt = header + ch.UnknownChunk(0x40, 0, b"zz").encode() + data.encode()
    b.receive_data(with_checksum(pkt), lb.now)
    assert b.next_event() is None
    out = b.data_to_send(lb.now)
    assert any(ch.ErrorChunk in chunk_types(p) for p in out)
    # 0x80: skip it and go on.
    pkt = header + ch.UnknownChunk(0x80, 0, b"zz").encode()
    b.receive_data(with_checksum(pkt), lb.now)
    assert b.state is AssociationState.ESTABLISHED


# ---------------------------------------------------------------- back-pressure


def test_send_buffer_full_and_buffered_amount_low() -> None:
    config = SctpConfig(send_buffer_size=300_000, buffered_amount_low_threshold=100_000)
    a, _b, lb = established_pair(config=config)
    a.send(5, 53, payload(262_144), now=lb.now)
    with pytest.raises(SendBufferFull):
        a.send(5, 53, payload(50_000), now=lb.now)
    assert a.buffered_amount(5) == 262_144
    lb.run(lambda: any(isinstance(e, BufferedAmountLow) for e in lb.events["a"]))
    assert a.buffered_amount(5) <= 100_000
    a.send(5, 53, payload(50_000), now=lb.now)
    assert lb.run(lambda: len(received(lb)) == 2)


def test_send_argument_checks() -> None:
    a, _b, lb = established_pair()
    with pytest.raises(LocalProtocolError):
        a.send(0, 53, b"", now=lb.now)
    with pytest.raises(LocalProtocolError):
        a.send(70000, 53, b"x", now=lb.now)
    with pytest.raises(LocalProtocolError):
        a.send(0, 53, bytes(262_145), now=lb.now)
    with pytest.raises(LocalProtocolError):
        a.connect(lb.now)


def test_receive_window_is_bounded_and_reopens() -> None:
    config = SctpConfig(receive_window=300_000)
    a, b, lb = established_pair(config=config)
    drained: list[DataReceived] = []
    hold = [True]

    def on_event(side: str, event: object) -> None:
        lb.events[side].append(event)

    # Do not drain b's events: its window fills and a must stop sending.
    lb._on_event = on_event
    original_next = b.next_event
    b.next_event = lambda: None if hold[0] else original_next()  # type: ignore[method-assign]
    for i in range(4):
        a.send(0, 53, payload(200_000, i), now=lb.now)
    lb.run(timeout=5)
    assert b._advertised_rwnd() < 300_000 - 190_000
    assert b._inbound.buffered + b._rx_pending <= 2 * 300_000
    hold[0] = False
    while (event := b.next_event()) is not None:
        if isinstance(event, DataReceived):
            drained.append(event)
    assert lb.run(lambda: len(drained) + len(received(lb)) == 4, timeout=60)


# ---------------------------------------------------------------- stream reset, close


def test_stream_reset_resets_ssn_both_ways() -> None:
    a, _b, lb = established_pair()
    for i in range(3):
        a.send(4, 53, b"before%d" % i, now=lb.now)
    a.reset_streams([4], lb.now)
    with pytest.raises(LocalProtocolError):
        a.send(4, 53, b"during", now=lb.now)
    assert lb.run(lambda: any(isinstance(e, StreamsReset) for e in lb.events["a"]))
    assert StreamsReset((4,), True) in lb.events["b"]
    assert StreamsReset((4,), False) in lb.events["a"]
    # The reset came after the data: all of it was delivered first.
    assert [e.data for e in received(lb)] == [b"before0", b"before1", b"before2"]
    a.send(4, 53, b"after", now=lb.now)  # SSN 0 again: b must accept it in order
    assert lb.run(lambda: len(received(lb)) == 4)


def test_stream_reset_waits_for_lost_data() -> None:
    a, _b, lb = established_pair()
    count = [0]

    def drop_first_data(packet: bytes) -> bytes | None:
        if ch.DataChunk in chunk_types(packet):
            count[0] += 1
            if count[0] == 1:
                return None
        return packet

    lb._manglers["a"] = drop_first_data
    a.send(4, 53, b"lost-once", now=lb.now)
    a.reset_streams([4], lb.now)
    assert lb.run(lambda: StreamsReset((4,), False) in lb.events["a"], timeout=10)
    assert [e.data for e in received(lb)] == [b"lost-once"]
    b_events = lb.events["b"]
    assert b_events.index(StreamsReset((4,), True)) > b_events.index(received(lb)[0])


def test_graceful_shutdown_delivers_queued_data() -> None:
    a, b, lb = established_pair()
    msgs = [payload(5000, i) for i in range(10)]
    for m in msgs:
        a.send(0, 53, m, now=lb.now)
    a.close(lb.now)
    assert a.state is AssociationState.SHUTDOWN_PENDING
    with pytest.raises(LocalProtocolError):
        a.send(0, 53, b"late", now=lb.now)
    assert lb.run(
        lambda: (
            any(isinstance(e, AssociationClosed) for e in lb.events["a"])
            and any(isinstance(e, AssociationClosed) for e in lb.events["b"])
        )
    )
    assert [e.data for e in received(lb)] == msgs
    assert lb.events["a"][-1] == AssociationClosed("shutdown", False)
    assert lb.events["b"][-1] == AssociationClosed("shutdown", True)
    assert a.get_timer() is None and b.get_timer() is None


def test_both_sides_shut_down_at_once() -> None:
    a, b, lb = established_pair()
    a.close(lb.now)
    b.close(lb.now)
    assert lb.run(
        lambda: (
            any(isinstance(e, AssociationClosed) for e in lb.events["a"])
            and any(isinstance(e, AssociationClosed) for e in lb.events["b"])
        )
    )
    assert a.state is b.state is AssociationState.CLOSED


def test_abort() -> None:
    a, _b, lb = established_pair()
    a.abort("bye", lb.now)
    assert lb.events["a"] == [] and a.next_event() == AssociationClosed("aborted: bye", False)
    lb.run(lambda: bool(lb.events["b"]))
    assert lb.events["b"] == [AssociationClosed("peer aborted: bye", True)]


# ---------------------------------------------------------------- heartbeats, stats


def test_heartbeat_when_idle_measures_rtt() -> None:
    a, _b, lb = established_pair(latency=0.03)
    lb.run(timeout=31)
    assert a.stats.srtt is not None
    assert a.stats.srtt == pytest.approx(0.06, abs=0.01)


def test_heartbeats_detect_dead_peer() -> None:
    _a, _b, lb = established_pair()
    lb._manglers["b"] = lambda p: None
    lb.run(lambda: any(isinstance(e, AssociationClosed) for e in lb.events["a"]), timeout=5000)
    assert any(isinstance(e, AssociationClosed) for e in lb.events["a"])


def test_stats_and_rtt() -> None:
    a, b, lb = established_pair(latency=0.025)
    for i in range(20):
        a.send(0, 53, payload(1000, i), now=lb.now)
    lb.run(lambda: len(received(lb)) == 20)
    lb.run(timeout=1)
    stats = a.stats
    assert stats.messages_sent == 20 and b.stats.messages_received == 20
    assert stats.bytes_sent == 20_000 and b.stats.bytes_received == 20_000
    assert stats.srtt is not None and 0.045 <= stats.srtt <= 0.3
    assert stats.rto >= 0.4
    assert stats.flight_size == 0


def _iter_events(a: SctpAssociation) -> Iterator[object]:
    while (event := a.next_event()) is not None:
        yield event


def test_reset_requires_established() -> None:
    a, _b, _lb = make_pair()
    with pytest.raises(LocalProtocolError):
        a.reset_streams([1], 0.0)
    assert list(_iter_events(a)) == []


def test_handshake_and_data_packet_sizes() -> None:
    """Pins the sizes quoted in docs/wire/sctp.md."""
    a, b, lb = make_pair(latency=0.0)
    seen: list[tuple[str, int, list[type]]] = []

    def tap(side: str) -> Callable[[bytes], bytes]:
        def record(packet: bytes) -> bytes:
            seen.append((side, len(packet), chunk_types(packet)))
            return packet

        return record

    lb._manglers["a"] = tap("a")
    lb._manglers["b"] = tap("b")
    a.connect(0.0)
    assert lb.run(lambda: a.is_established and b.is_established)
    assert seen[:4] == [
        ("a", 44, [ch.InitChunk]),
        ("b", 128, [ch.InitAckChunk]),
        ("a", 96, [ch.CookieEchoChunk]),
        ("b", 16, [ch.CookieAckChunk]),
    ]
    seen.clear()
    a.send(0, 53, bytes(100_000), now=lb.now)
    assert lb.run(lambda: bool(received(lb)))
    data_packets = [n for side, n, kinds in seen if side == "a" and ch.DataChunk in kinds]
    assert max(data_packets) == 1188 and len(data_packets) == -(-100_000 // 1160)
    assert ("b", 28, [ch.SackChunk]) in seen


@pytest.mark.parametrize("lost", [ch.InitAckChunk, ch.CookieEchoChunk, ch.CookieAckChunk])
def test_handshake_recovers_from_each_lost_packet(lost: type) -> None:
    dropped: list[bytes] = []

    def drop_once(packet: bytes) -> bytes | None:
        if not dropped and lost in chunk_types(packet):
            dropped.append(packet)
            return None
        return packet

    a, b, lb = make_pair(a_to_b=drop_once, b_to_a=drop_once)
    a.connect(0.0)
    assert lb.run(lambda: a.is_established and b.is_established, timeout=10)
    assert dropped and 1.0 <= lb.now < 3.0


def test_stale_cookie_restarts_the_handshake() -> None:
    a, b, _ = make_pair()
    a.connect(0.0)
    (init,) = a.data_to_send(0.0)
    b.receive_data(init, 0.0)
    (init_ack,) = b.data_to_send(0.0)
    a.receive_data(init_ack, 0.0)
    (echo,) = a.data_to_send(0.0)
    b.receive_data(echo, 100.0)  # 100 s later: older than Valid.Cookie.Life
    assert not b.is_established
    (error,) = b.data_to_send(100.0)
    assert chunk_types(error) == [ch.ErrorChunk]
    cause = ch.parse_chunks(error)[0].causes[0]  # type: ignore[union-attr]
    assert cause[0] == ch.CAUSE_STALE_COOKIE
    a.receive_data(error, 100.0)
    assert a.state is AssociationState.COOKIE_WAIT
    lb = Loopback(a, b)
    lb.now = 100.0
    assert lb.run(lambda: a.is_established and b.is_established)


def test_abort_with_reflected_tag_is_accepted() -> None:
    _a, b, lb = established_pair()
    abort = ch.AbortChunk(((ch.CAUSE_PROTOCOL_VIOLATION, b"x"),), reflected=True).encode()
    header = bytes.fromhex("13881388") + b._peer_tag.to_bytes(4, "big") + bytes(4)
    b.receive_data(with_checksum(header + abort), lb.now)
    event = b.next_event()
    assert isinstance(event, AssociationClosed) and event.by_peer


def test_blackout_recovers_large_window() -> None:
    a, _b, lb = established_pair(latency=0.02)
    blackout = (0.0, 0.0)

    def link(packet: bytes) -> bytes | None:
        return None if blackout[0] <= lb.now < blackout[1] else packet

    lb._manglers["a"] = link
    lb._manglers["b"] = link
    msgs = [payload(16_384, i) for i in range(128)]
    for m in msgs:
        a.send(0, 53, m, now=lb.now)
    lb.run(lambda: len(received(lb)) >= 20)
    blackout = (lb.now, lb.now + 2.0)
    assert lb.run(lambda: len(received(lb)) == 128, timeout=120)
    assert [e.data for e in received(lb)] == msgs
    assert a.stats.t3_expirations >= 1 and a.stats.retransmissions >= 10


def test_collision_with_one_init_lost() -> None:
    dropped: list[bytes] = []

    def drop_first_init(packet: bytes) -> bytes | None:
        if not dropped and ch.InitChunk in chunk_types(packet):
            dropped.append(packet)
            return None
        return packet

    a, b, lb = make_pair(a_to_b=drop_first_init)
    a.connect(0.0)
    b.connect(0.0)
    assert lb.run(lambda: a.is_established and b.is_established)
    assert dropped and lb.now < 0.1  # b's INIT carried the handshake; no T1 wait
    assert a.get_timer() == pytest.approx(lb.now + 30, abs=0.1)  # only the heartbeat left
    lb.run(timeout=5)
    assert [type(e) for e in lb.events["a"]] == [AssociationEstablished]
    assert [type(e) for e in lb.events["b"]] == [AssociationEstablished]


PATIENT = SctpConfig(max_retransmissions=1000)

message_plan = st.lists(
    st.tuples(
        st.integers(0, 3),  # stream
        st.integers(1, 9000),  # size
        st.booleans(),  # ordered
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_plan, st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.1, 0.3]))
def test_reliable_delivery_invariant(
    plan: list[tuple[int, int, bool]], seed: int, loss: float
) -> None:
    """Whatever the messages and the loss: every message arrives exactly once, intact, and
    ordered messages in per-stream order. (The give-up policy is tested elsewhere: here the
    association never declares the peer dead.)"""
    a, _b, lb = established_pair(seed=seed % 1000, config=PATIENT)
    lb._manglers["a"] = lossy(loss, seed)
    lb._manglers["b"] = lossy(loss, seed + 1)
    sent = []
    for i, (stream, size, ordered) in enumerate(plan):
        data = i.to_bytes(2, "big") + payload(size, seed + i)  # unique per message
        sent.append((stream, data, ordered))
        a.send(stream, 53, data, ordered=ordered, now=lb.now)
    assert lb.run(lambda: len(received(lb)) >= len(plan), timeout=600)
    lb.run(timeout=2)
    got = received(lb)
    assert sorted((e.stream_id, e.data) for e in got) == sorted((s, d) for s, d, _ in sent)
    for stream in range(4):
        want = [d for s, d, o in sent if s == stream and o]
        assert [e.data for e in got if e.stream_id == stream and e.ordered] == want


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_plan, st.integers(0, 2**32 - 1), st.sampled_from([0.1, 0.3]), st.integers(0, 2))
def test_partial_reliability_invariant(
    plan: list[tuple[int, int, bool]], seed: int, loss: float, max_rtx: int
) -> None:
    """Unreliable messages arrive at most once and intact, ordered ones in order, and the
    sender ends with nothing in flight (everything acked or skipped by FORWARD TSN)."""
    a, _b, lb = established_pair(seed=seed % 1000, config=PATIENT)
    lb._manglers["a"] = lossy(loss, seed)
    lb._manglers["b"] = lossy(loss, seed + 1)
    sent = []
    for i, (stream, size, ordered) in enumerate(plan):
        data = i.to_bytes(2, "big") + payload(size, seed + i)  # unique per message
        sent.append((stream, data, ordered))
        a.send(stream, 53, data, ordered=ordered, max_retransmits=max_rtx, now=lb.now)
    lb._manglers["a"] = lossy(loss, seed)
    lb.run(lambda: a.stats.flight_size == 0 and a.buffered_total == 0, timeout=600)
    lb._manglers["a"] = lb._manglers["b"] = None
    lb.run(timeout=5)
    assert a.stats.flight_size == 0
    got = received(lb)
    by_data = {(s, d) for s, d, _ in sent}
    assert all((e.stream_id, e.data) in by_data for e in got)
    assert len({(e.stream_id, e.data) for e in got}) == len(got)  # no duplicates
    for stream in range(4):
        order = [d for s, d, o in sent if s == stream and o]
        delivered = [e.data for e in got if e.stream_id == stream and e.ordered]
        positions = [order.index(d) for d in delivered]
        assert positions == sorted(positions)
    # The association still works reliably afterwards.
    a.send(0, 53, b"after", now=lb.now)
    assert lb.run(lambda: DataReceived(0, 53, b"after", True) in lb.events["b"])


def _to(b: SctpAssociation, *chunks: ch.Chunk) -> bytes:
    header = bytes.fromhex("13881388") + b._local_tag.to_bytes(4, "big") + bytes(4)
    return with_checksum(header + b"".join(c.encode() for c in chunks))


def _responses(packets: list[bytes]) -> list[tuple[int, int]]:
    from zmesh.sansio.webrtc.sctp.streams_reset import ReconfigResponse, decode_reconfig

    out = []
    for packet in packets:
        for chunk in ch.parse_chunks(packet):
            if isinstance(chunk, ch.ReconfigChunk):
                for param in decode_reconfig(chunk.params):
                    if isinstance(param, ReconfigResponse):
                        out.append((param.response_seq, param.result))
    return out


def test_incoming_reset_dcsctp_style_retries() -> None:
    """dcSCTP answers "in progress" by asking again with a new request number; the reset is
    done once, when the missing data arrives, and reported once."""
    from zmesh.sansio.webrtc.sctp.streams_reset import OutgoingResetRequest

    _a, b, lb = established_pair()
    now = lb.now
    seq = b._peer_req_expected & 0xFFFFFFFF
    cum = b._rx.cumulative & 0xFFFFFFFF
    missing = (cum + 1) & 0xFFFFFFFF

    def request(n: int) -> ch.ReconfigChunk:
        return ch.ReconfigChunk((OutgoingResetRequest(n, 0, missing, (4,)).encode(),))

    b.receive_data(_to(b, request(seq)), now)
    assert _responses(b.data_to_send(now)) == [(seq, 6)]  # in progress
    b.receive_data(_to(b, request(seq + 1)), now)  # dcSCTP: new number
    assert _responses(b.data_to_send(now)) == [(seq + 1, 6)]
    b.receive_data(_to(b, ch.DataChunk(3, missing, 4, 0, 53, b"late")), now)
    assert b.next_event() == DataReceived(4, 53, b"late", True)
    assert b.next_event() == StreamsReset((4,), True)
    assert _responses(b.data_to_send(now)) == [(seq + 1, 1)]  # performed, unasked
    b.receive_data(_to(b, request(seq + 2)), now)  # asking again: nothing new to report
    assert _responses(b.data_to_send(now)) == [(seq + 2, 1)]
    assert b.next_event() is None
    b.receive_data(_to(b, request(seq + 2)), now)  # a retransmission: the same answer
    b.receive_data(_to(b, request(seq + 9)), now)  # out of sequence
    assert _responses(b.data_to_send(now)) == [(seq + 2, 1), (seq + 9, 5)]


def test_outgoing_reset_asks_again_after_in_progress() -> None:
    from zmesh.sansio.webrtc.sctp.streams_reset import ReconfigResponse, decode_reconfig

    a, _b, lb = established_pair()
    sent: list[int] = []

    def watch_requests(packet: bytes) -> bytes:
        for chunk in ch.parse_chunks(packet):
            if isinstance(chunk, ch.ReconfigChunk):
                sent.extend(
                    p.request_seq
                    for p in decode_reconfig(chunk.params)
                    if not isinstance(p, ReconfigResponse)
                )
        return packet

    def first_answer_in_progress(packet: bytes) -> bytes | None:
        for chunk in ch.parse_chunks(packet):
            if isinstance(chunk, ch.ReconfigChunk) and len(sent) == 1:
                # Play a dcSCTP peer that could not reset yet: "in progress" instead.
                (answer,) = decode_reconfig(chunk.params)
                assert isinstance(answer, ReconfigResponse)
                reply = ReconfigResponse(answer.response_seq, 6).encode()
                a.receive_data(_to(a, ch.ReconfigChunk((reply,))), lb.now)
                return None
        return packet

    lb._manglers["a"] = watch_requests
    lb._manglers["b"] = first_answer_in_progress
    a.reset_streams([2], lb.now)
    assert lb.run(lambda: StreamsReset((2,), False) in lb.events["a"], timeout=5)
    assert len(sent) == 2 and sent[1] == (sent[0] + 1) & 0xFFFFFFFF  # asked again, renumbered
    assert lb.events["b"].count(StreamsReset((2,), True)) == 1  # reset once, reported once
