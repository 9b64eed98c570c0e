"""Hostile fragment patterns against SCTP reassembly (review findings).

Stored fragments cost about 200 bytes of Python objects each whatever their payload, and the
receive window counts payload bytes only, so a peer sending 1-byte DATA fragments that never
finish a message could make us hold millions of them; and a fragment that joins a long
unfinished chain made reassembly walk the whole chain each time (quadratic CPU).
"""

from __future__ import annotations

import pytest

from zmesh.sansio.webrtc.sctp import DataReceived, SctpConfig, StreamsReset
from zmesh.sansio.webrtc.sctp import chunks as ch
from zmesh.sansio.webrtc.sctp.packet import with_checksum
from zmesh.sansio.webrtc.sctp.reassembly import InboundStreams
from zmesh.sansio.webrtc.sctp.streams_reset import OutgoingResetRequest
from zmesh.sansio.wire import MalformedInput

from .test_sctp_association import established_pair

_BEGIN, _MIDDLE, _END = ch.DATA_FLAG_BEGIN, 0, ch.DATA_FLAG_END


def test_stored_fragments_are_capped_on_an_association() -> None:
    _a, b, lb = established_pair()
    header = bytes.fromhex("13881388") + b._local_tag.to_bytes(4, "big") + bytes(4)
    tsn = b._rx.cumulative + 1
    sent = 3 * b.config.max_tsn_window
    for start in range(0, sent, 60):
        body = b"".join(
            ch.DataChunk(_BEGIN if i == 0 else _MIDDLE, (tsn + i) & 0xFFFFFFFF, 1, 0, 51,
                         b"x").encode()
            for i in range(start, min(start + 60, sent))
        )
        b.receive_data(with_checksum(header + body), lb.now)
    held = b._inbound.fragments_held
    assert held <= 2 * b.config.max_tsn_window
    # The TSNs beyond the cap were not acknowledged, so an honest peer would retransmit them.
    assert b._rx.cumulative - tsn + 1 == held


def test_a_chain_longer_than_any_valid_message_is_discarded() -> None:
    got: list[DataReceived] = []
    streams = InboundStreams(got.append, max_message_size=SctpConfig().max_message_size)
    streams.add(0, _BEGIN, 1, 0, 51, b"x")
    tsn = 1
    for _ in range(5_000):
        streams.add(tsn, _MIDDLE, 1, 0, 51, b"x")
        tsn += 1
    # Out-of-order pairs: each second fragment joins the chain; the walk stops at the first
    # gap on either side instead of going back over the whole chain each time.
    for _ in range(200):
        streams.add(tsn + 1, _MIDDLE, 1, 0, 51, b"x")
        streams.add(tsn, _MIDDLE, 1, 0, 51, b"x")
        tsn += 2
    held = streams.fragments_held
    assert held == 5_401 == streams.buffered
    # An END after a chain longer than any valid message: refused, and the walked part freed.
    with pytest.raises(MalformedInput):
        streams.add(tsn, _END, 1, 0, 51, b"x")
    assert streams.fragments_held == held + 1 - (streams.max_fragments + 1)
    assert streams.buffered == streams.fragments_held  # 1 byte each: accounting intact
    # A normal message on another stream still gets through afterwards.
    streams.add(tsn + 1, _BEGIN, 2, 0, 51, b"he")
    streams.add(tsn + 2, _END, 2, 0, 51, b"llo")
    assert got == [DataReceived(2, 51, b"hello", True)]


def test_reset_of_all_streams_costs_the_streams_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Outgoing SSN Reset Request with no stream list resets every stream (RFC 6525 §4.1).
    Walking all 65535 possible ids per request cost ~10 ms, and one packet carries ~70
    requests; only streams that hold state need resetting."""
    a, b, lb = established_pair()
    a.send(3, 51, b"before", now=lb.now)
    assert lb.run(lambda: DataReceived(3, 51, b"before", True) in lb.events["b"])
    seen: list[int] = []
    original = InboundStreams.reset

    def counting(self: InboundStreams, stream_ids: tuple[int, ...]) -> None:
        seen.append(len(stream_ids))
        original(self, stream_ids)

    monkeypatch.setattr(InboundStreams, "reset", counting)
    header = bytes.fromhex("13881388") + b._local_tag.to_bytes(4, "big") + bytes(4)
    last = b._rx.cumulative & 0xFFFFFFFF
    requests = tuple(
        OutgoingResetRequest(b._peer_req_expected + i, 0, (last - i) & 0xFFFFFFFF, ()).encode()
        for i in range(2)
    )
    b.receive_data(with_checksum(header + ch.ReconfigChunk(requests).encode()), lb.now)
    assert seen and max(seen) <= 1
    events = []
    while (event := b.next_event()) is not None:
        events.append(event)
    assert StreamsReset((), True) in events


def test_forward_tsn_drops_only_fragments_at_or_below_it() -> None:
    """FORWARD TSN finds stale fragments through a TSN-ordered heap instead of scanning every
    stored fragment (6.4 ms per 8-byte chunk with 30 000 held: /tmp figure in the review)."""
    got: list[DataReceived] = []
    streams = InboundStreams(got.append, max_message_size=SctpConfig().max_message_size)
    for tsn in range(10, 40):
        streams.add(tsn, _BEGIN if tsn % 3 == 0 else _MIDDLE, tsn % 4, 0, 51, b"ab")
    streams.add(100, _BEGIN, 7, 0, 51, b"hel")
    held = streams.fragments_held
    streams.forward(24, ())
    assert streams.fragments_held == held - 15 and streams.buffered == 2 * (held - 16) + 3
    streams.forward(24, ())  # idempotent
    streams.forward(60, ())
    assert streams.fragments_held == 1 and streams.buffered == 3
    streams.add(101, _END, 7, 0, 51, b"lo")
    assert got == [DataReceived(7, 51, b"hello", True)]
    assert streams.fragments_held == 0 == streams.buffered
