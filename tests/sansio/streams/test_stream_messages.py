"""STREAM payload codec: exact bytes, every defect raises ProtocolError, round trips."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.streams import (
    Begin,
    Connected,
    Data,
    End,
    Message,
    Reset,
    ResetReason,
    Sendme,
    encode_message,
    parse_message,
)
from zmesh.sansio.wire import LocalProtocolError, MalformedInput, ProtocolError, TruncatedInput

# Byte layouts pinned here are the ones docs/wire/streams.md shows.
KNOWN = [
    (Begin(1, "example.org", 443), bytes.fromhex("010001 03 0b") + b"example.org" + b"\x01\xbb"),
    (Begin(0x1234, "192.0.2.7", 80), bytes.fromhex("011234 01 c0000207 0050")),
    (
        Begin(2, "2001:db8::1", 8080),
        bytes.fromhex("010002 04 20010db8000000000000000000000001 1f90"),
    ),
    (Connected(7), bytes.fromhex("020007")),
    (Data(7, b"hi"), bytes.fromhex("030007") + b"hi"),
    (End(7), bytes.fromhex("040007")),
    (Reset(7, ResetReason.CONNECTION_REFUSED), bytes.fromhex("050007 05")),
    (Sendme(0, 131072), bytes.fromhex("060000 00020000")),
    (Sendme(9, 32768), bytes.fromhex("060009 00008000")),
]


@pytest.mark.parametrize(("msg", "wire"), KNOWN)
def test_known_encodings(msg: Message, wire: bytes) -> None:
    assert encode_message(msg) == wire
    assert parse_message(wire) == msg


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"", TruncatedInput),
        (b"\x07\x00\x01", MalformedInput),  # unknown type
        (bytes.fromhex("010000 01 7f000001 0050"), MalformedInput),  # BEGIN on stream 0
        (bytes.fromhex("010001 01 7f000001 0000"), MalformedInput),  # port 0
        (bytes.fromhex("010001 02 7f000001 0050"), MalformedInput),  # unknown ATYP
        (bytes.fromhex("010001 03 07") + b"1.2.3.4" + b"\x00\x50", MalformedInput),  # IP as name
        (bytes.fromhex("010001 03 04") + b"a b." + b"\x00\x50", MalformedInput),  # bad chars
        (bytes.fromhex("010001 03 00 0050"), MalformedInput),  # empty name
        (bytes.fromhex("010001 03 05") + b"a..bc" + b"\x00\x50", MalformedInput),  # empty label
        (bytes.fromhex("010001 01 7f0000"), TruncatedInput),
        (bytes.fromhex("030001"), MalformedInput),  # empty DATA
        (bytes.fromhex("030000 41"), MalformedInput),  # DATA on stream 0
        (bytes.fromhex("040001 00"), MalformedInput),  # END with a body
        (bytes.fromhex("050001 07"), MalformedInput),  # unknown reason
        (bytes.fromhex("060001 00000000"), MalformedInput),  # zero credit
        (bytes.fromhex("060001 80000000"), MalformedInput),  # credit ≥ 2**31
        (bytes.fromhex("060001 0000"), TruncatedInput),
    ],
)
def test_defects_raise(wire: bytes, error: type[ProtocolError]) -> None:
    with pytest.raises(error):
        parse_message(wire)


@pytest.mark.parametrize(
    "msg",
    [
        Begin(0, "example.org", 80),
        Begin(1, "example.org", 0),
        Begin(1, "bad host", 80),
        Begin(1, "fe80::1%eth0", 80),
        Data(1, b""),
        Sendme(1, 0),
    ],
)
def test_encoding_bad_fields_is_a_local_error(msg: Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode_message(msg)


_label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
_hostname = (
    st.lists(_label, min_size=1, max_size=5)
    .map(".".join)
    .filter(lambda h: not h.replace(".", "").isdigit())
)
_sid = st.integers(1, 0xFFFF)
_messages = st.one_of(
    st.builds(Begin, _sid, _hostname, st.integers(1, 0xFFFF)),
    st.builds(Begin, _sid, st.ip_addresses().map(str), st.integers(1, 0xFFFF)),
    st.builds(Connected, _sid),
    st.builds(Data, _sid, st.binary(min_size=1, max_size=64)),
    st.builds(End, _sid),
    st.builds(Reset, _sid, st.sampled_from(ResetReason)),
    st.builds(Sendme, st.integers(0, 0xFFFF), st.integers(1, 0x7FFF_FFFF)),
)


@settings(max_examples=300)
@given(_messages)
def test_round_trip(msg: Message) -> None:
    assert parse_message(encode_message(msg)) == msg


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_protocol_errors(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except ProtocolError:
        return
    # One canonical encoding per message: whatever parses re-encodes to the same bytes.
    assert encode_message(msg) == data


@settings(max_examples=300)
@given(_messages, st.data())
def test_mutated_messages_only_raise_protocol_errors(msg: Message, data: st.DataObject) -> None:
    wire = bytearray(encode_message(msg))
    pos = data.draw(st.integers(0, len(wire) - 1))
    wire[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    with contextlib.suppress(ProtocolError):
        parse_message(bytes(wire[:cut]))
