"""Cell framing and relay-message codec (zmesh/sansio/onion/cells.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.onion.cells import (
    BODY_SIZE,
    CELL_SIZE,
    DATA_SIZE,
    MAX_RELAY_PAYLOAD,
    CellCommand,
    DestroyReason,
    RelayKind,
    encode_cell,
    encode_create_body,
    encode_destroy_body,
    encode_relay_message,
    parse_cell,
    parse_create_body,
    parse_destroy_body,
    parse_relay_message,
)
from zmesh.sansio.wire import (
    LocalProtocolError,
    MalformedInput,
    OversizedInput,
    ProtocolError,
    TruncatedInput,
)


def test_sizes_are_the_documented_ones() -> None:
    assert (CELL_SIZE, BODY_SIZE, DATA_SIZE, MAX_RELAY_PAYLOAD) == (1024, 1019, 971, 968)


@given(
    circuit_id=st.integers(1, 0xFFFF_FFFF),
    command=st.sampled_from([c for c in CellCommand if c is not CellCommand.PADDING]),
    body=st.binary(max_size=BODY_SIZE),
)
@settings(max_examples=60)
def test_cell_round_trip(circuit_id: int, command: CellCommand, body: bytes) -> None:
    cell = encode_cell(circuit_id, command, body)
    assert len(cell) == CELL_SIZE
    parsed = parse_cell(cell)
    assert (parsed.circuit_id, parsed.command) == (circuit_id, command)
    assert bytes(parsed.body) == body + bytes(BODY_SIZE - len(body))


def test_cell_framing_rules() -> None:
    with pytest.raises(TruncatedInput):
        parse_cell(bytes(CELL_SIZE - 1))
    with pytest.raises(OversizedInput):
        parse_cell(bytes(CELL_SIZE + 1))
    with pytest.raises(MalformedInput):
        parse_cell(encode_cell(1, CellCommand.RELAY, b"")[:4] + b"\x09" + bytes(BODY_SIZE))
    with pytest.raises(MalformedInput):  # circuit 0 is for link padding only
        parse_cell(encode_cell(0, CellCommand.RELAY, b""))
    with pytest.raises(MalformedInput):
        parse_cell(encode_cell(7, CellCommand.PADDING, b""))
    assert parse_cell(encode_cell(0, CellCommand.PADDING, b"x")).command is CellCommand.PADDING
    with pytest.raises(LocalProtocolError):
        encode_cell(1, CellCommand.RELAY, bytes(BODY_SIZE + 1))


@given(st.binary(min_size=0, max_size=CELL_SIZE + 8))
@settings(max_examples=200)
def test_random_cells_raise_only_protocol_errors(data: bytes) -> None:
    try:
        parsed = parse_cell(data)
    except ProtocolError:
        return
    for parse in (
        lambda: parse_destroy_body(parsed.body),
        lambda: parse_relay_message(parsed.body[:DATA_SIZE]),
        lambda: parse_create_body(parsed.body, 378),
    ):
        with contextlib.suppress(ProtocolError):
            parse()


@given(kind=st.sampled_from(list(RelayKind)), payload=st.binary(max_size=MAX_RELAY_PAYLOAD))
@settings(max_examples=60)
def test_relay_message_round_trip(kind: RelayKind, payload: bytes) -> None:
    plain = encode_relay_message(kind, payload)
    assert len(plain) == DATA_SIZE
    assert parse_relay_message(plain) == (kind, payload)


def test_relay_message_rejects_bad_fields() -> None:
    good = encode_relay_message(RelayKind.STREAM, b"abc")
    with pytest.raises(MalformedInput):
        parse_relay_message(b"\x77" + good[1:])
    with pytest.raises(MalformedInput):  # length beyond the maximum
        parse_relay_message(good[:1] + b"\xff\xff" + good[3:])
    with pytest.raises(MalformedInput):  # fill must stay zero
        parse_relay_message(good[:-1] + b"\x01")
    with pytest.raises(MalformedInput):
        parse_relay_message(good[:-1])
    with pytest.raises(LocalProtocolError):
        encode_relay_message(RelayKind.STREAM, bytes(MAX_RELAY_PAYLOAD + 1))


def test_create_and_destroy_bodies() -> None:
    header = bytes(range(256)) + bytes(122)
    body = encode_create_body(41, header, lambda n: b"\xaa" * n)
    assert len(body) == BODY_SIZE
    epoch, view = parse_create_body(memoryview(body), len(header))
    assert (epoch, bytes(view)) == (41, header)
    with pytest.raises(TruncatedInput):
        parse_create_body(memoryview(body[:100]), len(header))
    for reason in DestroyReason:
        cell = encode_cell(5, CellCommand.DESTROY, encode_destroy_body(reason))
        assert parse_destroy_body(parse_cell(cell).body) is reason
    with pytest.raises(MalformedInput):
        parse_destroy_body(memoryview(b"\x63" + bytes(10)))
    with pytest.raises(MalformedInput):
        parse_destroy_body(memoryview(b"\x00\x01"))
