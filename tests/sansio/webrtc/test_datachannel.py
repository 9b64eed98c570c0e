"""Data channels over two back-to-back associations (RFC 8831 / RFC 8832)."""

from __future__ import annotations

import random

import pytest

from zmesh.sansio.webrtc import dcep
from zmesh.sansio.webrtc.datachannel import (
    AssociationClosed,
    AssociationEstablished,
    BufferedAmountLow,
    ChannelClosed,
    ChannelOpened,
    ChannelState,
    DataChannel,
    DataChannelEndpoint,
    MessageReceived,
)
from zmesh.sansio.webrtc.sctp import SctpAssociation, SctpConfig
from zmesh.sansio.webrtc.sctp import chunks as ch
from zmesh.sansio.webrtc.sctp.loopback import Loopback
from zmesh.sansio.wire import LocalProtocolError


def endpoints(
    seed: int = 1, config: SctpConfig | None = None, latency: float = 0.01
) -> tuple[DataChannelEndpoint, DataChannelEndpoint, Loopback]:
    ra, rb = random.Random(seed), random.Random(seed + 1)
    a = DataChannelEndpoint(
        SctpAssociation(is_client=True, random=ra.randbytes, config=config), is_dtls_client=True
    )
    b = DataChannelEndpoint(
        SctpAssociation(is_client=False, random=rb.randbytes, config=config),
        is_dtls_client=False,
    )
    return a, b, Loopback(a, b, latency=latency)


def connected(**kwargs: object) -> tuple[DataChannelEndpoint, DataChannelEndpoint, Loopback]:
    a, b, lb = endpoints(**kwargs)  # type: ignore[arg-type]
    a.connect(0.0)
    b.connect(0.0)
    assert lb.run(lambda: a.association.is_established and b.association.is_established, timeout=10)
    return a, b, lb


def of_type(lb: Loopback, side: str, kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in lb.events[side] if isinstance(e, kind)]


def test_in_band_channel_open_and_messages() -> None:
    a, b, lb = connected()
    chan = a.create_channel("chat", protocol="json", now=lb.now)
    assert chan.id % 2 == 0 and a.state(chan.id) is ChannelState.OPEN
    a.send(chan.id, "hello", lb.now)
    a.send(chan.id, b"\x00\x01", lb.now)
    a.send(chan.id, "", lb.now)
    a.send(chan.id, b"", lb.now)
    assert lb.run(lambda: len(of_type(lb, "b", MessageReceived)) == 4)
    opened = of_type(lb, "b", ChannelOpened)
    assert opened == [ChannelOpened(DataChannel(chan.id, "chat", "json"))]
    assert [e.data for e in of_type(lb, "b", MessageReceived)] == ["hello", b"\x00\x01", "", b""]
    # b answers on the same channel; a sees the ACK and the reply.
    b.send(chan.id, "pong", lb.now)
    assert lb.run(lambda: bool(of_type(lb, "a", MessageReceived)))
    assert of_type(lb, "a", MessageReceived) == [MessageReceived(chan.id, "pong")]
    assert of_type(lb, "a", ChannelOpened) == [ChannelOpened(chan)]


def test_channels_created_before_the_association() -> None:
    a, b, lb = endpoints()
    chan = a.create_channel("early", now=0.0)
    assert a.state(chan.id) is ChannelState.CONNECTING
    with pytest.raises(LocalProtocolError):
        a.send(chan.id, "too early", 0.0)
    a.connect(0.0)
    b.connect(0.0)
    assert lb.run(lambda: bool(of_type(lb, "b", ChannelOpened)))
    assert [type(e) for e in lb.events["a"]][:2] == [AssociationEstablished, ChannelOpened]


def test_stream_id_parity_by_dtls_role() -> None:
    a, b, lb = connected()
    ids_a = [a.create_channel(f"a{i}", now=lb.now).id for i in range(3)]
    ids_b = [b.create_channel(f"b{i}", now=lb.now).id for i in range(3)]
    assert ids_a == [0, 2, 4] and ids_b == [1, 3, 5]
    assert lb.run(
        lambda: (
            len(of_type(lb, "a", ChannelOpened)) == 6 and len(of_type(lb, "b", ChannelOpened)) == 6
        )
    )


def test_negotiated_channel() -> None:
    a, b, lb = connected()
    ca = a.create_channel("neg", negotiated_id=7, ordered=False, now=lb.now)
    cb = b.create_channel("neg", negotiated_id=7, ordered=False, now=lb.now)
    assert ca.negotiated and cb.negotiated and ca.id == cb.id == 7
    with pytest.raises(LocalProtocolError):
        a.create_channel("dup", negotiated_id=7, now=lb.now)
    a.send(7, b"raw", lb.now)
    assert lb.run(lambda: bool(of_type(lb, "b", MessageReceived)))
    assert of_type(lb, "b", MessageReceived) == [MessageReceived(7, b"raw")]
    # No DCEP travelled: the peer never reported the channel as opened in-band.
    assert of_type(lb, "b", ChannelOpened) == [ChannelOpened(cb)]


def test_hundred_channels_opened_and_closed() -> None:
    a, b, lb = connected()
    chans = [a.create_channel(f"c{i}", now=lb.now) for i in range(100)]
    for c in chans:
        a.send(c.id, f"hello {c.id}", lb.now)
    assert lb.run(lambda: len(of_type(lb, "b", MessageReceived)) == 100)
    assert sorted(e.data for e in of_type(lb, "b", MessageReceived)) == sorted(
        f"hello {c.id}" for c in chans
    )
    for c in chans:
        a.close_channel(c.id, lb.now)
    assert lb.run(
        lambda: (
            len(of_type(lb, "a", ChannelClosed)) == 100
            and len(of_type(lb, "b", ChannelClosed)) == 100
        )
    )
    assert a.channels == [] and b.channels == []
    # Ids are free again, and SSNs restart at 0 on the reused streams.
    again = a.create_channel("again", now=lb.now)
    assert again.id == 0
    a.send(again.id, "second life", lb.now)
    assert lb.run(lambda: MessageReceived(0, "second life") in lb.events["b"])


def test_both_sides_close_the_same_channel() -> None:
    a, b, lb = connected()
    chan = a.create_channel("x", now=lb.now)
    assert lb.run(lambda: bool(of_type(lb, "b", ChannelOpened)))
    a.close_channel(chan.id, lb.now)
    b.close_channel(chan.id, lb.now)
    assert lb.run(
        lambda: (
            of_type(lb, "a", ChannelClosed) == [ChannelClosed(chan.id)]
            and of_type(lb, "b", ChannelClosed) == [ChannelClosed(chan.id)]
        )
    )
    with pytest.raises(LocalProtocolError):
        a.send(chan.id, "closed", lb.now)


def test_peer_close_delivers_pending_messages_first() -> None:
    a, _b, lb = connected()
    chan = a.create_channel("x", now=lb.now)
    for i in range(20):
        a.send(chan.id, b"%d" % i + bytes(3000), lb.now)
    a.close_channel(chan.id, lb.now)
    assert lb.run(lambda: bool(of_type(lb, "b", ChannelClosed)))
    assert len(of_type(lb, "b", MessageReceived)) == 20
    b_events = lb.events["b"]
    assert isinstance(b_events[-1], ChannelClosed)


def test_unreliable_unordered_channel_under_loss() -> None:
    a, _b, lb = connected(seed=5)
    chan = a.create_channel("lossy", ordered=False, max_retransmits=0, now=lb.now)
    assert lb.run(lambda: bool(of_type(lb, "b", ChannelOpened)))
    assert lb.run(lambda: not a._channels[chan.id].awaiting_ack)  # ACK arrived
    rng = random.Random(3)
    lb._manglers["a"] = lambda p: (
        None if ch.DataChunk in [type(c) for c in ch.parse_chunks(p)] and rng.random() < 0.3 else p
    )
    for i in range(100):
        a.send(chan.id, b"%03d" % i + bytes(500), lb.now)
        lb.run(timeout=0.005)
    lb.run(timeout=5)
    got = of_type(lb, "b", MessageReceived)
    assert 40 <= len(got) < 100
    assert a.association.stats.abandoned_messages > 0
    assert a.association.stats.flight_size == 0  # everything acked or forwarded past


def test_timed_channel_parameters_reach_the_peer() -> None:
    a, _b, lb = connected()
    a.create_channel("timed", max_packet_lifetime=250, ordered=False, now=lb.now)
    assert lb.run(lambda: bool(of_type(lb, "b", ChannelOpened)))
    info = of_type(lb, "b", ChannelOpened)[0].channel
    assert info.max_packet_lifetime == 250 and info.max_retransmits is None
    assert not info.ordered


def test_refuses_open_with_our_parity() -> None:
    a, b, lb = connected()
    # b (DTLS server, odd ids) receives an OPEN on an odd stream from a: refused.
    opener = dcep.DataChannelOpen.for_channel(
        "bad", "", ordered=True, max_retransmits=None, max_packet_lifetime=None
    )
    a.association.send(3, dcep.PPID_DCEP, opener.encode(), now=lb.now)
    a.association.send(3, dcep.PPID_BINARY, b"data", now=lb.now)
    lb.run(timeout=1)
    assert of_type(lb, "b", ChannelOpened) == []
    assert b.dropped_messages == 2


def test_buffered_amount_low_for_channels() -> None:
    config = SctpConfig(send_buffer_size=600_000)
    a, _b, lb = connected(config=config)
    chan = a.create_channel("bulk", now=lb.now)
    a.set_buffered_amount_low_threshold(chan.id, 1000)
    a.send(chan.id, bytes(250_000), lb.now)
    assert a.buffered_amount(chan.id) >= 250_000
    assert lb.run(lambda: BufferedAmountLow(chan.id) in lb.events["a"])
    assert a.buffered_amount(chan.id) <= 1000


def test_association_close_closes_channels() -> None:
    a, _b, lb = connected()
    chans = [a.create_channel(f"c{i}", now=lb.now) for i in range(3)]
    a.close(lb.now)
    assert lb.run(lambda: bool(of_type(lb, "b", AssociationClosed)))
    assert sorted(e.channel_id for e in of_type(lb, "a", ChannelClosed)) == [c.id for c in chans]
    assert isinstance(lb.events["a"][-1], AssociationClosed)


def test_argument_checks() -> None:
    a, _b, lb = connected()
    with pytest.raises(LocalProtocolError):
        a.create_channel("x", max_retransmits=1, max_packet_lifetime=1, now=lb.now)
    with pytest.raises(LocalProtocolError):
        a.send(42, "no such channel", lb.now)

    def check() -> None:
        return a.create_channel("x", negotiated_id=70000, now=lb.now)

    with pytest.raises(LocalProtocolError):
        check()


def test_remote_max_message_size_is_enforced() -> None:
    a, _b, lb = connected()
    a.remote_max_message_size = 65_536
    chan = a.create_channel("limited", now=lb.now)
    a.send(chan.id, bytes(65_536), lb.now)
    with pytest.raises(LocalProtocolError):
        a.send(chan.id, bytes(65_537), lb.now)


def test_closing_a_channel_before_the_association_is_up() -> None:
    a, b, lb = endpoints()
    early = a.create_channel("early", now=0.0)
    a.close_channel(early.id, 0.0)
    neg = a.create_channel("neg", negotiated_id=10, now=0.0)
    a.close_channel(neg.id, 0.0)
    assert a.state(neg.id) is ChannelState.CLOSED
    a.connect(0.0)
    b.connect(0.0)
    # The queued OPEN still reaches b, and the reset that follows closes it on both sides.
    assert lb.run(
        lambda: (
            ChannelClosed(early.id) in lb.events["a"] and ChannelClosed(early.id) in lb.events["b"]
        )
    )
