"""STUN codec: Chrome's attribute order, integrity and fingerprint, hostile input."""

from __future__ import annotations

import contextlib
import struct

import pytest
from aioice import stun as aioice_stun
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.webrtc import stun
from zmesh.sansio.wire import MalformedInput, ProtocolError, TruncatedInput

TID = bytes(range(12))


def attribute_types(data: bytes) -> list[int]:
    types, pos = [], 20
    while pos < len(data):
        attr_type, length = struct.unpack_from("!HH", data, pos)
        types.append(attr_type)
        pos += 4 + length + (-length % 4)
    return types


def test_binding_request_has_chrome_attribute_order() -> None:
    data = stun.binding_request(TID, username="abcd:efgh", key=b"k" * 24, priority=1853824767,
                                controlling=True, tie_breaker=7, use_candidate=True)
    assert attribute_types(data) == [0x0006, 0xC057, 0x802A, 0x0025, 0x0024, 0x0008, 0x8028]
    message = stun.parse_stun(data)
    assert message.attributes["USERNAME"] == "abcd:efgh"
    assert message.attributes["PRIORITY"] == 1853824767
    assert message.attributes["ICE-CONTROLLING"] == 7
    assert message.check_message_integrity(b"k" * 24)
    assert not message.check_message_integrity(b"x" * 24)


def test_aioice_reads_what_we_write_and_we_read_aioice() -> None:
    ours = stun.binding_success(TID, ("192.0.2.7", 4242), key=b"secret")
    parsed = aioice_stun.parse_message(ours)
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == ("192.0.2.7", 4242)
    assert parsed.check_message_integrity(b"secret")
    theirs = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST, TID,
                                 {"USERNAME": "a:b", "PRIORITY": 5})
    theirs.add_message_integrity(b"pw")
    message = stun.parse_stun(bytes(theirs))
    assert message.check_message_integrity(b"pw")


def test_error_response_round_trip() -> None:
    data = stun.binding_error(TID, 487, "Role Conflict", key=b"pw")
    message = stun.parse_stun(data)
    assert message.error_code == 487
    assert message.message_class == stun.StunClass.ERROR


def test_bad_fingerprint_is_rejected() -> None:
    data = bytearray(stun.binding_success(TID, ("127.0.0.1", 1), key=None))
    data[-1] ^= 1
    with pytest.raises(MalformedInput):
        stun.parse_stun(bytes(data))


def test_framing_errors() -> None:
    good = stun.binding_success(TID, ("127.0.0.1", 1), key=None)
    with pytest.raises(TruncatedInput):
        stun.parse_stun(good[:-4])
    with pytest.raises(MalformedInput):
        stun.parse_stun(b"\xc0" + good[1:])
    with pytest.raises(MalformedInput):
        stun.parse_stun(good[:4] + b"\x00\x00\x00\x00" + good[8:])
    # an attribute that claims more bytes than the message holds
    overrun = good[:20] + struct.pack("!HH", 0x0006, 200) + b"abcd"
    overrun = overrun[:2] + struct.pack("!H", len(overrun) - 20) + overrun[4:]
    with pytest.raises(TruncatedInput):
        stun.parse_stun(overrun)


def test_demux() -> None:
    assert stun.looks_like_stun(stun.binding_success(TID, ("127.0.0.1", 1), key=None))
    assert not stun.looks_like_stun(b"\x16\xfe\xfd" + bytes(30))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        stun.parse_stun(data)


@settings(max_examples=200)
@given(st.binary(min_size=0, max_size=120))
def test_random_bodies_after_valid_header(body: bytes) -> None:
    body = body + bytes(-len(body) % 4)
    data = struct.pack("!HHI12s", 0x0001, len(body), stun.MAGIC_COOKIE, TID) + body
    with contextlib.suppress(ProtocolError):
        stun.parse_stun(data)


@settings(max_examples=100)
@given(username=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789+/:", min_size=1,
                        max_size=40),
       priority=st.integers(0, 2**32 - 1), tie=st.integers(0, 2**64 - 1),
       controlling=st.booleans(), use=st.booleans(), tid=st.binary(min_size=12, max_size=12))
def test_request_round_trip(username: str, priority: int, tie: int, controlling: bool,
                            use: bool, tid: bytes) -> None:
    data = stun.binding_request(tid, username=username, key=b"pw", priority=priority,
                                controlling=controlling, tie_breaker=tie, use_candidate=use)
    message = stun.parse_stun(data)
    assert message.transaction_id == tid
    assert message.attributes["USERNAME"] == username
    assert message.attributes["PRIORITY"] == priority
    role = "ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"
    assert message.attributes[role] == tie
    assert ("USE-CANDIDATE" in message.attributes) == use
    assert message.check_message_integrity(b"pw")


def test_error_code_out_of_range_is_rejected() -> None:
    value = struct.pack("!HBB", 0, 4, 150) + b"x"  # 4/150: "number" must be below 100
    data = stun.encode_stun(stun.StunMethod.BINDING, stun.StunClass.ERROR, TID,
                            [(stun.Attr.ERROR_CODE, value)])
    with pytest.raises(MalformedInput, match="ERROR-CODE"):
        stun.parse_stun(data)
