"""DCEP message codec (RFC 8832 §5)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.webrtc import dcep
from zmesh.sansio.wire import MalformedInput, ProtocolError, TruncatedInput


def test_open_layout_matches_rfc() -> None:
    msg = dcep.DataChannelOpen.for_channel(
        "chat", "json", ordered=False, max_retransmits=3, max_packet_lifetime=None
    )
    raw = msg.encode()
    # type 0x03, channel type 0x81, priority 256, reliability 3, label len 4, protocol len 4
    assert raw == bytes.fromhex("0381 0100 00000003 0004 0004") + b"chatjson"
    assert dcep.parse_dcep(raw) == msg
    assert msg.max_retransmits == 3 and msg.max_packet_lifetime is None and not msg.ordered


def test_channel_types() -> None:
    timed = dcep.DataChannelOpen.for_channel(
        "", "", ordered=True, max_retransmits=None, max_packet_lifetime=1500
    )
    assert timed.channel_type == 0x02 and timed.max_packet_lifetime == 1500 and timed.ordered
    reliable = dcep.DataChannelOpen.for_channel(
        "x", "", ordered=False, max_retransmits=None, max_packet_lifetime=None
    )
    assert reliable.channel_type == 0x80 and reliable.reliability == 0
    with pytest.raises(MalformedInput):
        dcep.DataChannelOpen.for_channel(
            "", "", ordered=True, max_retransmits=1, max_packet_lifetime=1
        )


def test_ack() -> None:
    assert dcep.DataChannelAck().encode() == b"\x02"
    assert dcep.parse_dcep(b"\x02") == dcep.DataChannelAck()
    with pytest.raises(MalformedInput):
        dcep.parse_dcep(b"\x02\x00")


def test_malformed() -> None:
    with pytest.raises(TruncatedInput):
        dcep.parse_dcep(b"")
    with pytest.raises(MalformedInput):
        dcep.parse_dcep(b"\x07")
    with pytest.raises(TruncatedInput):
        dcep.parse_dcep(b"\x03\x00\x01\x00\x00\x00\x00\x00\x00\x05\x00\x00abc")
    with pytest.raises(MalformedInput):  # trailing bytes
        dcep.parse_dcep(b"\x03\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00\x00ab")
    with pytest.raises(MalformedInput):  # unknown channel type
        dcep.parse_dcep(b"\x03\x05\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    with pytest.raises(MalformedInput):  # label not UTF-8
        dcep.parse_dcep(b"\x03\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00\x00\xff")


@settings(max_examples=200)
@given(
    st.text(max_size=40),
    st.text(max_size=40),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 0xFFFFFFFF)),
    st.booleans(),
    st.integers(0, 0xFFFF),
)
def test_open_round_trip(
    label: str, protocol: str, ordered: bool, param: int | None, timed: bool, priority: int
) -> None:
    msg = dcep.DataChannelOpen.for_channel(
        label,
        protocol,
        ordered=ordered,
        max_retransmits=None if timed else param,
        max_packet_lifetime=param if timed else None,
        priority=priority,
    )
    assert dcep.parse_dcep(msg.encode()) == msg


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        dcep.parse_dcep(data)


@settings(max_examples=200)
@given(st.binary(max_size=60))
def test_open_prefixed_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        dcep.parse_dcep(b"\x03" + data)
