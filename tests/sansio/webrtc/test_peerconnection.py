"""The sans-IO peer connection: offer/answer, ICE, DTLS and the SCTP hand-off, in one process."""

from __future__ import annotations

import importlib.util
import random as pyrandom
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from zmesh.sansio.webrtc.peerconnection import (
    ConnectionState,
    ConnectionStateChanged,
    LocalCandidate,
    PeerConnection,
)
from zmesh.sansio.webrtc.sdp import SessionDescription
from zmesh.sansio.wire import LocalProtocolError

A = ("127.0.0.1", 40001)
B = ("127.0.0.1", 40002)
HAVE_DATACHANNEL = importlib.util.find_spec("zmesh.sansio.webrtc.datachannel") is not None


def rng(seed: int) -> Callable[[int], bytes]:
    r = pyrandom.Random(seed)
    return lambda n: bytes(r.getrandbits(8) for _ in range(n))


@dataclass(frozen=True)
class AssociationEstablished:
    pass


@dataclass(frozen=True)
class Got:
    data: bytes


class EchoSctp:
    """Stands in for the SCTP endpoint: says hello once, records what arrives."""

    def __init__(self, is_client: bool, random: Any, now: float) -> None:
        self.out = [b"hello from " + (b"client" if is_client else b"server")]
        self.events: list[Any] = [AssociationEstablished()]

    def receive_data(self, data: bytes, now: float) -> None:
        self.events.append(Got(data))

    def data_to_send(self, now: float) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def next_event(self) -> Any:
        return self.events.pop(0) if self.events else None


def run(a: PeerConnection, b: PeerConnection, until: float, now: float = 0.0,
        drop: Callable[[bytes], bool] = lambda d: False) -> float:
    while now <= until:
        moved = True
        while moved:
            moved = False
            for src, dst_pc, pc in ((A, b, a), (B, a, b)):
                for data, _dst in pc.datagrams_to_send(now):
                    moved = True
                    if not drop(data):
                        dst_pc.receive_datagram(data, src, now)
        timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
        if not timers or (a.state is b.state is ConnectionState.CONNECTED and now > 1.0):
            break
        now = max(now, min(timers))
        a.handle_timer(now)
        b.handle_timer(now)
    return now


def negotiate(factory: Any = EchoSctp) -> tuple[PeerConnection, PeerConnection]:
    a = PeerConnection(random=rng(1), sctp_factory=factory)
    b = PeerConnection(random=rng(2), sctp_factory=factory)
    a.add_host_address(A)
    b.add_host_address(B)
    a.create_offer(0.0)
    a.finish_gathering()
    offer = a.current_local_description().to_sdp()
    b.set_remote_description(SessionDescription.parse(offer, "offer"), 0.0)
    b.finish_gathering()
    answer = b.create_answer(0.0).to_sdp()
    a.set_remote_description(SessionDescription.parse(answer, "answer"), 0.0)
    return a, b


def drain(pc: PeerConnection) -> list[Any]:
    out = []
    while (event := pc.next_event()) is not None:
        out.append(event)
    return out


def test_offer_answer_roles() -> None:
    a, b = negotiate()
    assert a.ice is not None and a.ice.controlling
    assert b.ice is not None and not b.ice.controlling
    assert a.local_description is not None and a.local_description.setup == "actpass"
    assert b.local_description is not None and b.local_description.setup == "active"
    assert b.dtls is not None and b.dtls.is_client  # the answerer sends the ClientHello
    assert a.dtls is not None and not a.dtls.is_client


def test_connects_and_carries_sctp_packets_both_ways() -> None:
    a, b = negotiate()
    run(a, b, 10.0)
    assert a.state is b.state is ConnectionState.CONNECTED
    got_a, got_b = drain(a), drain(b)
    assert Got(b"hello from client") in got_a  # b is the DTLS client
    assert Got(b"hello from server") in got_b
    assert any(isinstance(e, LocalCandidate) and e.candidate is None for e in got_a)
    assert a.dropped == {} and b.dropped == {}


def test_tampered_fingerprint_fails_the_connection() -> None:
    a = PeerConnection(random=rng(1), sctp_factory=EchoSctp)
    b = PeerConnection(random=rng(2), sctp_factory=EchoSctp)
    a.add_host_address(A)
    b.add_host_address(B)
    offer = a.create_offer(0.0).to_sdp()
    forged = offer.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 00:00:00:")
    forged = forged.replace("00:00:00:" + offer.split("sha-256 ")[1][:9], "00:00:00:")
    b.set_remote_description(SessionDescription.parse(forged, "offer"), 0.0)
    answer = b.create_answer(0.0).to_sdp()
    a.set_remote_description(SessionDescription.parse(answer, "answer"), 0.0)
    run(a, b, 5.0)
    assert b.state is ConnectionState.FAILED
    reasons = [e.reason for e in drain(b) if isinstance(e, ConnectionStateChanged)]
    assert any("fingerprint" in r for r in reasons)


def test_datagrams_from_strangers_are_dropped() -> None:
    a, b = negotiate()
    run(a, b, 10.0)
    a.receive_datagram(b"\x17\xfe\xfd" + bytes(40), ("127.0.0.1", 9), 11.0)
    a.receive_datagram(b"\x80" + bytes(20), B, 11.0)
    a.receive_datagram(b"\x00\x01\x00\x10\x21\x12\xa4\x42" + bytes(12), B, 11.0)
    assert a.dropped["dtls-from-unknown-address"] == 1
    assert a.dropped["not-stun-or-dtls"] == 1
    assert a.dropped["malformed-stun"] == 1
    assert a.state is ConnectionState.CONNECTED


def test_misuse_raises_local_errors() -> None:
    pc = PeerConnection(random=rng(3), sctp_factory=EchoSctp)
    with pytest.raises(LocalProtocolError):
        pc.create_answer(0.0)
    with pytest.raises(LocalProtocolError):
        pc.channels()


@pytest.mark.skipif(not HAVE_DATACHANNEL, reason="datachannel.py not in the tree yet")
def test_real_data_channels_between_two_of_our_peers() -> None:
    a, b = negotiate_default()
    now = run(a, b, 20.0)
    assert a.state is b.state is ConnectionState.CONNECTED
    drain(a)
    drain(b)
    channel = a.create_channel("chat", now=now)
    cid = int(getattr(channel, "id", getattr(channel, "channel_id", -1)))
    payload = bytes(range(256)) * 1024  # 256 KiB
    a.send(cid, payload, now)
    a.send(cid, "text", now)
    received: list[Any] = []
    for _ in range(400):
        now = step(a, b, now)
        received += [e for e in drain(b) if type(e).__name__ == "MessageReceived"]
        if len(received) >= 2:
            break
    assert [r.data for r in received] == [payload, "text"]


def negotiate_default() -> tuple[PeerConnection, PeerConnection]:
    a = PeerConnection(random=rng(1))
    b = PeerConnection(random=rng(2))
    a.add_host_address(A)
    b.add_host_address(B)
    a.create_offer(0.0)
    a.finish_gathering()
    b.set_remote_description(a.current_local_description(), 0.0)
    b.finish_gathering()
    a.set_remote_description(b.create_answer(0.0), 0.0)
    return a, b


def step(a: PeerConnection, b: PeerConnection, now: float) -> float:
    for src, dst_pc, pc in ((A, b, a), (B, a, b)):
        for data, _dst in pc.datagrams_to_send(now):
            dst_pc.receive_datagram(data, src, now)
    timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
    if timers and min(timers) <= now + 0.01:
        now = max(now, min(timers))
        a.handle_timer(now)
        b.handle_timer(now)
    return now + 0.001


def test_ice_restart_keeps_dtls_and_reconnects() -> None:
    a, b = negotiate()
    now = run(a, b, 10.0)
    assert a.state is b.state is ConnectionState.CONNECTED
    assert a.ice is not None and b.ice is not None
    old = (a.ice.local_ufrag, b.ice.local_ufrag)
    dtls_a, dtls_b = a.dtls, b.dtls
    offer = a.restart_ice(now)
    b.set_remote_description(SessionDescription.parse(offer.to_sdp(), "offer"), now)
    answer = b.create_answer(now)
    a.set_remote_description(SessionDescription.parse(answer.to_sdp(), "answer"), now)
    assert (a.ice.local_ufrag, b.ice.local_ufrag) != old
    drain(a)
    drain(b)
    end = now + 3.0
    while now < end:
        now = step(a, b, now)
    assert a.dtls is dtls_a and b.dtls is dtls_b
    # a pair of the new checklist was nominated and selected on both sides
    assert a.ice.selected in a.ice.pairs and b.ice.selected in b.ice.pairs
    assert a.state is b.state is ConnectionState.CONNECTED


def _connected_with_channel() -> tuple[PeerConnection, PeerConnection, int, float]:
    a, b = negotiate_default()
    now = 0.0
    for _ in range(3000):
        now = step(a, b, now)
        if a.state is b.state is ConnectionState.CONNECTED:
            break
    channel = a.create_channel("bulk", now=now)
    for _ in range(200):
        now = step(a, b, now)
        if any(type(e).__name__ == "ChannelOpened" for e in drain(b)):
            break
    drain(a)
    return a, b, int(channel.id), now


def test_a_batch_of_datagrams_is_acknowledged_by_one_sack() -> None:
    """RFC 9260 §6.2 with per-batch delay: feeding 30 DATA packets before asking for output
    yields one SACK that acknowledges all of them (not one per second packet)."""
    a, b, channel_id, now = _connected_with_channel()
    a.send(channel_id, bytes(30 * 1100), now)  # more than the initial window of 10 packets
    burst = a.datagrams_to_send(now)
    association_a = a.sctp.association  # type: ignore[union-attr]
    association_b = b.sctp.association  # type: ignore[union-attr]
    assert len(burst) >= 10 and association_a.stats.flight_size > 0
    sent_before = association_b.stats.packets_sent
    for data, _ in burst:
        b.receive_datagram(data, A, now)
    assert association_b.stats.packets_sent == sent_before  # nothing built during the batch
    replies = b.datagrams_to_send(now)
    assert len(replies) == 1 and association_b.stats.packets_sent == sent_before + 1
    flight_before = association_a.stats.flight_size
    a.receive_datagram(replies[0][0], B, now)
    assert association_a.stats.flight_size == 0 < flight_before  # all acknowledged at once


def test_datagram_by_datagram_keeps_the_every_second_packet_rule() -> None:
    a, b, channel_id, now = _connected_with_channel()
    a.send(channel_id, bytes(10 * 1100), now)
    burst = a.datagrams_to_send(now)
    association_b = b.sctp.association  # type: ignore[union-attr]
    sent_before = association_b.stats.packets_sent
    sacks = 0
    for data, _ in burst:
        b.receive_datagram(data, A, now)
        sacks += len(b.datagrams_to_send(now))
    assert association_b.stats.packets_sent - sent_before == sacks == len(burst) // 2
