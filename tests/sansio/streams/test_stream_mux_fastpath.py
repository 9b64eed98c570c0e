"""StreamMux's DATA fast paths (receive: append to a buffered stream; send: inlined encoding)
agree with the general path: same bytes, same windows, same errors, state intact on error."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.streams import (
    Data,
    DataReceived,
    EndReceived,
    Role,
    StreamMux,
    encode_message,
)
from zmesh.sansio.streams.messages import End
from zmesh.sansio.wire import MalformedInput, OversizedInput, ProtocolError

MAX = 968  # what the runtime uses: one relay message per stream message


def _open_pair(**kw: Any) -> tuple[StreamMux, StreamMux, list[int]]:
    client = StreamMux(Role.CLIENT, max_message_size=MAX, **kw)
    exit_ = StreamMux(Role.EXIT, max_message_size=MAX, **kw)
    ids = [client.open_stream("example.org", 80 + i) for i in range(2)]
    for m in client.messages_to_send():
        exit_.receive_message(m)
    while exit_.next_event() is not None:
        pass
    for sid in ids:
        exit_.accept(sid)
    for m in exit_.messages_to_send():
        client.receive_message(m)
    while client.next_event() is not None:
        pass
    return client, exit_, ids


def _state(mux: StreamMux) -> tuple[object, ...]:
    return (
        {k: copy.copy(v) for k, v in mux._streams.items()},
        dict(mux._unconsumed),
        {k: bytes(v) for k, v in mux._rx_buffers.items()},
        list(mux._events),
        mux._circ_recv_window,
    )


def test_send_encodes_exactly_like_encode_message() -> None:
    _client, exit_, (sid, _) = _open_pair()
    data = bytes(range(256)) * 10
    assert exit_.send(sid, data) == len(data)
    chunk = MAX - 3
    expected = [
        encode_message(Data(sid, data[i : i + chunk])) for i in range(0, len(data), chunk)
    ]
    assert exit_.messages_to_send() == expected


def test_consecutive_data_coalesce_into_one_event() -> None:
    client, exit_, (sid, other) = _open_pair()
    exit_.send(sid, b"a" * 3000)
    exit_.send(other, b"b" * 10)
    exit_.send(sid, b"c" * 5)
    for m in exit_.messages_to_send():
        client.receive_message(m)
    got = []
    while (e := client.next_event()) is not None:
        got.append(e)
    assert got == [DataReceived(sid, b"a" * 3000 + b"c" * 5), DataReceived(other, b"b" * 10)]
    assert client._circ_recv_window == client.circuit_window - 3015


def test_window_overrun_on_the_fast_path_changes_nothing() -> None:
    client, _exit, (sid, _) = _open_pair(stream_window=2000, circuit_window=4000)
    client.receive_message(encode_message(Data(sid, b"x" * 965)))  # buffered: fast path next
    client.receive_message(encode_message(Data(sid, b"y" * 965)))
    before = _state(client)
    with pytest.raises(OversizedInput):
        client.receive_message(encode_message(Data(sid, b"z" * 71)))  # 2001 > 2000
    assert _state(client) == before
    assert client.next_event() == DataReceived(sid, b"x" * 965 + b"y" * 965)


def test_data_after_end_is_refused_with_bytes_buffered() -> None:
    client, _exit, (sid, _) = _open_pair()
    client.receive_message(encode_message(Data(sid, b"x")))
    client.receive_message(encode_message(End(sid)))
    before = _state(client)
    with pytest.raises(MalformedInput):
        client.receive_message(encode_message(Data(sid, b"y")))
    assert _state(client) == before
    assert [client.next_event(), client.next_event()] == [
        DataReceived(sid, b"x"),
        EndReceived(sid),
    ]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.binary(min_size=1, max_size=2000), st.booleans()),
        max_size=12,
    )
)
def test_delivered_bytes_equal_sent_bytes(steps: list[tuple[int, bytes, bool]]) -> None:
    client, exit_, ids = _open_pair()
    sent = {sid: b"" for sid in ids}
    got = {sid: b"" for sid in ids}
    for which, data, drain in steps:
        sid = ids[which]
        sent[sid] += data[: exit_.send(sid, data)]
        for m in exit_.messages_to_send():
            client.receive_message(m)
        while drain and (e := client.next_event()) is not None:
            assert isinstance(e, DataReceived)
            got[e.stream_id] += e.data
            client.consumed(e.stream_id, len(e.data))
        for m in client.messages_to_send():  # SENDMEs
            exit_.receive_message(m)
    while (e := client.next_event()) is not None:
        assert isinstance(e, DataReceived)
        got[e.stream_id] += e.data
    assert got == sent


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=MAX + 2), st.integers(0, 3))
def test_hostile_data_raises_only_protocol_errors(payload: bytes, sid_pick: int) -> None:
    client, _exit, ids = _open_pair(stream_window=3000, circuit_window=5000)
    client.receive_message(encode_message(Data(ids[0], b"q")))  # a buffer: the fast path is on
    # A DATA header naming a live stream, an unknown one, or stream 0, then random bytes.
    sid = [*ids, 0, 999][sid_pick]
    message = bytes((3, sid >> 8, sid & 0xFF)) + payload
    before = _state(client)
    try:
        client.receive_message(message)
    except ProtocolError:
        assert _state(client) == before


def _message(kind: int, sid: int, n: int) -> bytes:
    if kind == 0:
        return encode_message(Data(sid, bytes([sid]) * max(n, 1)))
    if kind == 1:
        return encode_message(End(sid))
    return bytes([3, 0, sid]) + bytes(n)  # DATA framing with possibly unknown stream / size


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 4), st.integers(0, MAX)),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 64),
)
def test_receive_messages_equals_one_by_one(
    spec: list[tuple[int, int, int]], window_kib: int
) -> None:
    # The run entry point (one call per run of STREAM messages) must leave exactly the state,
    # events and error of feeding the same payloads one by one.
    kw = {"stream_window": window_kib * 1024, "circuit_window": 64 * 1024}
    batch_client, _, ids = _open_pair(**kw)
    single_client, _, _ = _open_pair(**kw)
    payloads = [_message(kind, ids[sid % 2] if sid < 4 else sid, n) for kind, sid, n in spec]
    batch_error: type[BaseException] | None = None
    try:
        batch_client.receive_messages(payloads)
    except ProtocolError as exc:
        batch_error = type(exc)
    single_error: type[BaseException] | None = None
    for p in payloads:
        try:
            single_client.receive_message(p)
        except ProtocolError as exc:
            single_error = type(exc)
            break
    assert batch_error == single_error
    assert _state(batch_client) == _state(single_client)
