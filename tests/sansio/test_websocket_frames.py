"""The cell link's RFC 6455 frame codec against wsproto, both roles, and hostile input."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    Request,
)

from zmesh.sansio.websocket_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    BinaryMessage,
    CloseFrame,
    FrameDecoder,
    PingFrame,
    PongFrame,
    encode_close_payload,
    encode_frame,
)
from zmesh.sansio.wire import LocalProtocolError, MalformedInput, OversizedInput, ProtocolError

LIMIT = 64 * 1024


def _open_pair() -> tuple[WSConnection, WSConnection]:
    server = WSConnection(ConnectionType.SERVER)
    client = WSConnection(ConnectionType.CLIENT)
    server.receive_data(client.send(Request(host="h", target="/")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    next(client.events())
    return client, server


def _decode_all(decoder: FrameDecoder, data: bytes, step: int) -> list[object]:
    out: list[object] = []
    for i in range(0, len(data), step):
        decoder.receive_data(data[i : i + step])
        while (event := decoder.next_event()) is not None:
            out.append(event)
    return out


@pytest.mark.parametrize("sender", ["client", "server"])
@pytest.mark.parametrize("step", [1, 7, 1000, 1 << 20])
def test_decodes_what_wsproto_sends(sender: str, step: int) -> None:
    client, server = _open_pair()
    ws = client if sender == "client" else server
    payloads = [b"", b"x", os.urandom(125), os.urandom(126), os.urandom(65535), os.urandom(65536)]
    wire = b"".join(ws.send(Message(data=p)) for p in payloads)
    wire += ws.send(Ping(b"ping")) + ws.send(Pong(b"pong"))
    # A fragmented message with a Ping between its fragments (§5.4 allows it).
    wire += ws.send(Message(data=b"first-", message_finished=False)) + ws.send(Ping(b"mid"))
    wire += ws.send(Message(data=b"second", message_finished=True))
    wire += ws.send(CloseConnection(code=1000, reason="bye é"))
    decoder = FrameDecoder(expect_masked=sender == "client", max_message=LIMIT + 1, max_buffer=1 << 21)
    events = _decode_all(decoder, wire, step)
    assert events == [
        *(BinaryMessage(p) for p in payloads),
        PingFrame(b"ping"),
        PongFrame(b"pong"),
        PingFrame(b"mid"),
        BinaryMessage(b"first-second"),
        CloseFrame(1000, "bye é"),
    ]


@pytest.mark.parametrize("role", ["client", "server"])
@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70000])
def test_wsproto_decodes_what_we_send(role: str, n: int) -> None:
    client, server = _open_pair()
    receiver = server if role == "client" else client
    key = os.urandom(4) if role == "client" else None
    payload = os.urandom(n)
    wire = encode_frame(OP_BINARY, payload, key) + encode_frame(OP_PING, b"p", key)
    wire += encode_frame(OP_PONG, b"q", key) + encode_frame(OP_CLOSE, encode_close_payload(1001, "x"), key)
    receiver.receive_data(wire)
    events = list(receiver.events())
    assert isinstance(events[0], BytesMessage) and events[0].data == payload
    assert isinstance(events[1], Ping) and events[1].payload == b"p"
    assert isinstance(events[2], Pong) and events[2].payload == b"q"
    assert isinstance(events[3], CloseConnection) and events[3].code == 1001
    if key is None:  # unmasked server frames: exactly wsproto's bytes
        assert encode_frame(OP_BINARY, payload, None) == server.send(BytesMessage(data=payload))


def _frame(b0: int, b1: int, rest: bytes = b"") -> bytes:
    return bytes((b0, b1)) + rest


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (_frame(0x81, 0x80, bytes(4)), MalformedInput),  # text
        (_frame(0xC2, 0x80, bytes(4)), MalformedInput),  # RSV1
        (_frame(0x82, 0x00), MalformedInput),  # unmasked from a client
        (_frame(0x80, 0x80, bytes(4)), MalformedInput),  # continuation without a message
        (_frame(0x83, 0x80, bytes(4)), MalformedInput),  # reserved opcode
        (_frame(0x09, 0x80, bytes(4)), MalformedInput),  # fragmented Ping
        (_frame(0x89, 0xFE, b"\x00\x7e" + bytes(4)), OversizedInput),  # 126-byte Ping
        (_frame(0x82, 0xFE, b"\x00\x05" + bytes(4)), MalformedInput),  # non-minimal 16-bit
        (_frame(0x82, 0xFF, bytes(8) + bytes(4)), MalformedInput),  # non-minimal 64-bit
        (_frame(0x82, 0xFF, b"\x80" + bytes(7) + bytes(4)), MalformedInput),  # top bit
        (_frame(0x82, 0xFF, b"\x00\x00\x00\x00\x00\x02\x00\x00" + bytes(4)), OversizedInput),
        (_frame(0x88, 0x81, bytes(4) + b"\x03"), MalformedInput),  # 1-byte Close
        (_frame(0x88, 0x84, bytes(4) + b"\x03\xe8\xff\xfe"), MalformedInput),  # bad UTF-8
        (_frame(0x02, 0x81, bytes(4) + b"a") + _frame(0x82, 0x81, bytes(4) + b"b"), MalformedInput),
    ],
)
def test_hostile_frames_are_refused(wire: bytes, error: type[ProtocolError]) -> None:
    decoder = FrameDecoder(expect_masked=True, max_message=LIMIT, max_buffer=4 * LIMIT)
    with pytest.raises(error):
        _decode_all(decoder, wire, len(wire))


def test_masked_frame_from_a_server_is_refused() -> None:
    decoder = FrameDecoder(expect_masked=False, max_message=LIMIT, max_buffer=4 * LIMIT)
    decoder.receive_data(encode_frame(OP_BINARY, b"abc", b"\x01\x02\x03\x04"))
    with pytest.raises(MalformedInput):
        decoder.next_event()


def test_buffer_bound() -> None:
    decoder = FrameDecoder(expect_masked=False, max_message=100, max_buffer=200)
    decoder.receive_data(bytes(150))
    with pytest.raises(OversizedInput):
        decoder.receive_data(bytes(51))
    with pytest.raises(LocalProtocolError):
        FrameDecoder(expect_masked=False, max_message=100, max_buffer=100)
    with pytest.raises(LocalProtocolError):
        encode_frame(OP_PING, bytes(126), None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.booleans(), st.integers(1, 64))
def test_random_bytes_only_raise_protocol_errors(data: bytes, masked: bool, step: int) -> None:
    decoder = FrameDecoder(expect_masked=masked, max_message=1024, max_buffer=8192)
    try:
        _decode_all(decoder, data, step)
    except ProtocolError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8), st.booleans(), st.integers(1, 5000))
def test_round_trip(payloads: list[bytes], masked: bool, step: int) -> None:
    wire = b"".join(encode_frame(OP_BINARY, p, os.urandom(4) if masked else None) for p in payloads)
    decoder = FrameDecoder(expect_masked=masked, max_message=3000, max_buffer=16384)
    assert _decode_all(decoder, wire, step) == [BinaryMessage(p) for p in payloads]

