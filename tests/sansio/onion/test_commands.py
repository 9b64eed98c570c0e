"""Sphinx routing commands: encodings byte for byte, round trips, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.onion.commands import (
    CellAead,
    CircuitSetup,
    Command,
    NextNodeHop,
    NodeDelay,
    Recipient,
    SURBReply,
    decode_commands,
    encode_commands,
)
from zmesh.sansio.wire import LocalProtocolError, MalformedInput, ProtocolError, TruncatedInput

commands_strategy: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        NextNodeHop, st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32)
    ),
    st.builds(Recipient, st.binary(min_size=32, max_size=32)),
    st.builds(SURBReply, st.binary(min_size=16, max_size=16)),
    st.builds(NodeDelay, st.integers(0, 0xFFFFFFFF)),
    st.builds(
        CircuitSetup,
        st.binary(min_size=32, max_size=32),
        st.booleans(),
        st.sampled_from(CellAead),
        st.binary(min_size=4, max_size=4),
    ),
)


def test_katzenpost_encodings() -> None:
    # Byte layouts from Katzenpost core/sphinx/commands (NodeDelay 0xdeadbabe appears in its
    # vectors as 80deadbabe).
    assert NodeDelay(0xDEADBABE).encode() == bytes.fromhex("80deadbabe")
    assert NextNodeHop(b"\x11" * 32, b"\x22" * 32).encode() == b"\x01" + b"\x11" * 32 + b"\x22" * 32
    assert Recipient(b"\x33" * 32).encode() == b"\x02" + b"\x33" * 32
    assert SURBReply(b"\x44" * 16).encode() == b"\x03" + b"\x44" * 16


def test_circuit_setup_layout() -> None:
    setup = CircuitSetup(b"\x55" * 32, is_exit=True, aead=CellAead.AES_256_GCM, circuit_tag=b"WXYZ")
    encoded = setup.encode()
    assert len(encoded) == CircuitSetup.LENGTH == 38
    assert encoded[0] == 0x10
    assert encoded[1:33] == b"\x55" * 32
    assert encoded[33] == 0b011  # exit bit 0, AEAD 1 in bits 1-2
    assert encoded[34:] == b"WXYZ"
    relay = CircuitSetup(b"\x55" * 32, False, CellAead.CHACHA20_POLY1305, b"WXYZ")
    assert relay.encode()[33] == 0


@pytest.mark.parametrize("flags", [0x08, 0x80, 0x04, 0x06, 0x05])
def test_circuit_setup_rejects_reserved_flags(flags: int) -> None:
    # 0x04 / 0x06 are AEAD values 2 and 3 (unassigned); 0x08.. are reserved bits.
    body = b"\x10" + b"\x00" * 32 + bytes((flags,)) + b"tag!"
    with pytest.raises(MalformedInput):
        decode_commands(body)


def test_terminator_and_padding() -> None:
    slot = encode_commands([NodeDelay(5), SURBReply(b"s" * 16)], 40)
    assert len(slot) == 40
    assert decode_commands(slot) == [NodeDelay(5), SURBReply(b"s" * 16)]
    assert decode_commands(bytes(40)) == []
    assert decode_commands(b"") == []
    # A slot filled exactly needs no terminator (Katzenpost FromBytes treats the end as null).
    assert decode_commands(NodeDelay(7).encode()) == [NodeDelay(7)]


def test_trailing_garbage_after_terminator() -> None:
    with pytest.raises(MalformedInput):
        decode_commands(NodeDelay(1).encode() + b"\x00\x00\x01")


def test_unknown_code() -> None:
    with pytest.raises(MalformedInput):
        decode_commands(b"\x04" + bytes(40))


def test_truncated_command() -> None:
    with pytest.raises(TruncatedInput):
        decode_commands(NextNodeHop(b"a" * 32, b"b" * 32).encode()[:-1])
    with pytest.raises(TruncatedInput):
        decode_commands(b"\x80")


def test_encode_overflow_and_bad_fields() -> None:
    with pytest.raises(LocalProtocolError):
        encode_commands([Recipient(b"r" * 32)], 32)
    with pytest.raises(LocalProtocolError):
        NextNodeHop(b"short", b"m" * 32)
    with pytest.raises(LocalProtocolError):
        NodeDelay(1 << 32)
    with pytest.raises(LocalProtocolError):
        CircuitSetup(b"k" * 32, False, CellAead.AES_256_GCM, b"toolong")


@settings(max_examples=200, deadline=None)
@given(st.lists(commands_strategy, max_size=4), st.integers(0, 20))
def test_round_trip(commands: list[Command], extra: int) -> None:
    size = sum(len(c.encode()) for c in commands) + extra
    assert decode_commands(encode_commands(commands, size)) == commands


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    try:
        commands = decode_commands(data)
    except ProtocolError:
        return
    # Whatever parsed must re-encode to a prefix of the input followed by zeros only.
    encoded = b"".join(c.encode() for c in commands)
    assert data.startswith(encoded)
    assert not any(data[len(encoded) :])
