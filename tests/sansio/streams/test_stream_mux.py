"""StreamMux: two ends wired back to back, flow control, bounds, hostile input."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.streams import (
    Begin,
    BeginRequested,
    Data,
    DataReceived,
    EndReceived,
    ResetReason,
    Role,
    Sendme,
    SendWindowOpened,
    StreamConnected,
    StreamEvent,
    StreamMux,
    StreamReset,
    StreamState,
    encode_message,
    parse_message,
)
from zmesh.sansio.wire import (
    LocalProtocolError,
    MalformedInput,
    OversizedInput,
    ProtocolError,
)

MAX = 960


def make_pair(**kw: Any) -> tuple[StreamMux, StreamMux]:
    return StreamMux(Role.CLIENT, max_message_size=MAX, **kw), StreamMux(
        Role.EXIT, max_message_size=MAX, **kw
    )


def deliver(src: StreamMux, dst: StreamMux) -> list[bytes]:
    msgs = src.messages_to_send()
    for m in msgs:
        assert len(m) <= src.max_message_size
        dst.receive_message(m)
    return msgs


def events(mux: StreamMux) -> list[StreamEvent]:
    out = []
    while (e := mux.next_event()) is not None:
        out.append(e)
    return out


def snapshot(mux: StreamMux) -> dict[str, Any]:
    return copy.deepcopy(mux.__dict__)


def open_connected(client: StreamMux, exit_: StreamMux, host: str = "example.org") -> int:
    sid = client.open_stream(host, 443)
    deliver(client, exit_)
    assert events(exit_) == [BeginRequested(sid, host, 443)]
    exit_.accept(sid)
    deliver(exit_, client)
    assert events(client) == [StreamConnected(sid)]
    return sid


def test_begin_carries_the_hostname_unresolved() -> None:
    client, _ = make_pair()
    sid = client.open_stream("Example.ORG", 443)
    (wire,) = client.messages_to_send()
    assert parse_message(wire) == Begin(sid, "Example.ORG", 443)
    assert wire[3] == 0x03  # ATYP domain: the client resolved nothing


def test_ip_literals_travel_as_addresses() -> None:
    client, exit_ = make_pair()
    client.open_stream("2001:db8::1", 80)
    client.open_stream("192.0.2.1", 80)
    deliver(client, exit_)
    assert [e.host for e in events(exit_) if isinstance(e, BeginRequested)] == [
        "2001:db8::1",
        "192.0.2.1",
    ]


def test_full_lifecycle_with_half_close() -> None:
    client, exit_ = make_pair()
    sid = open_connected(client, exit_)
    assert client.send(sid, b"GET / HTTP/1.0\r\n\r\n") == 18
    client.end(sid)
    assert client.stream_state(sid) is StreamState.LOCAL_ENDED
    deliver(client, exit_)
    assert events(exit_) == [DataReceived(sid, b"GET / HTTP/1.0\r\n\r\n"), EndReceived(sid)]
    exit_.consumed(sid, 18)
    # Half-closed: the exit can still answer.
    assert exit_.stream_state(sid) is StreamState.REMOTE_ENDED
    assert exit_.send(sid, b"HTTP/1.0 200 OK\r\n\r\nhello") == 24
    exit_.end(sid)
    assert exit_.stream_state(sid) is StreamState.CLOSED
    assert exit_.stream_ids == []
    deliver(exit_, client)
    assert events(client) == [DataReceived(sid, b"HTTP/1.0 200 OK\r\n\r\nhello"), EndReceived(sid)]
    assert client.stream_ids == []
    client.consumed(sid, 24)
    with pytest.raises(LocalProtocolError):
        client.send(sid, b"x")


@pytest.mark.parametrize("reason", list(ResetReason))
def test_reject_reaches_the_client_with_its_reason(reason: ResetReason) -> None:
    client, exit_ = make_pair()
    sid = client.open_stream("example.org", 25)
    deliver(client, exit_)
    events(exit_)
    exit_.reject(sid, reason)
    deliver(exit_, client)
    assert events(client) == [StreamReset(sid, reason)]
    assert client.stream_ids == [] and exit_.stream_ids == []


def test_send_before_connected_takes_nothing() -> None:
    client, _ = make_pair()
    sid = client.open_stream("example.org", 80)
    assert client.send(sid, b"early") == 0
    assert client.send_capacity(sid) == 0
    with pytest.raises(LocalProtocolError):
        client.end(sid)  # a connecting stream is cancelled with reset(), not ended


def test_sender_never_exceeds_the_windows_moving_megabytes() -> None:
    stream_window, circuit_window = 64 * 1024, 96 * 1024
    client, exit_ = make_pair(stream_window=stream_window, circuit_window=circuit_window)
    sids = [open_connected(client, exit_) for _ in range(3)]
    rng = random.Random(7)
    total = 2_000_000
    payloads = {sid: rng.randbytes(total) for sid in sids}
    sent = dict.fromkeys(sids, 0)
    received = {sid: bytearray() for sid in sids}
    pending = {sid: 0 for sid in sids}  # delivered to the "application", not yet consumed
    # What the wire shows: DATA bytes minus SENDME credit, per stream and for the circuit.
    in_flight = dict.fromkeys(sids, 0)
    circuit_in_flight = 0
    opened = 0
    rounds = 0
    while any(len(received[s]) < total for s in sids):
        rounds += 1
        assert rounds < 20_000
        for sid in sids:
            if sent[sid] < total:
                chunk = payloads[sid][sent[sid] : sent[sid] + rng.randint(1, 40_000)]
                n = client.send(sid, chunk)
                assert 0 <= n <= len(chunk)
                sent[sid] += n
        for wire in client.messages_to_send():
            msg = parse_message(wire)
            assert isinstance(msg, Data)
            in_flight[msg.stream_id] += len(msg.data)
            circuit_in_flight += len(msg.data)
            assert in_flight[msg.stream_id] <= stream_window
            assert circuit_in_flight <= circuit_window
            exit_.receive_message(wire)
        for event in events(exit_):
            assert isinstance(event, DataReceived)
            received[event.stream_id] += event.data
            pending[event.stream_id] += len(event.data)
        # A slow, uneven reader: consumes a random part of what it holds.
        for sid in sids:
            if pending[sid] and rng.random() < 0.7:
                n = rng.randint(1, pending[sid])
                exit_.consumed(sid, n)
                pending[sid] -= n
        for wire in exit_.messages_to_send():
            msg = parse_message(wire)
            assert isinstance(msg, Sendme)
            if msg.stream_id == 0:
                circuit_in_flight -= msg.credit
            else:
                in_flight[msg.stream_id] -= msg.credit
            assert min(circuit_in_flight, *in_flight.values()) >= 0
            client.receive_message(wire)
        for event in events(client):
            assert isinstance(event, SendWindowOpened)
            opened += 1
        assert client.circuit_outstanding == circuit_in_flight
    for sid in sids:
        assert received[sid] == payloads[sid]
    assert opened > 0  # the windows did close and reopen


def test_send_window_opened_after_credit() -> None:
    client, exit_ = make_pair(stream_window=8192, circuit_window=65536)
    sid = open_connected(client, exit_)
    assert client.send(sid, bytes(10_000)) == 8192
    assert client.send_capacity(sid) == 0
    deliver(client, exit_)
    data = b"".join(e.data for e in events(exit_) if isinstance(e, DataReceived))
    assert len(data) == 8192
    exit_.consumed(sid, 500)  # below the 1/8 threshold: no SENDME yet
    assert exit_.messages_to_send() == []
    exit_.consumed(sid, 7692)
    deliver(exit_, client)
    assert events(client) == [SendWindowOpened(sid)]
    assert client.send_capacity(sid) == 8192


def test_overrunning_the_window_is_rejected_without_change() -> None:
    client, exit_ = make_pair(stream_window=4096, circuit_window=8192)
    sid = open_connected(client, exit_)
    for _ in range(8):
        exit_.receive_message(encode_message(Data(sid, bytes(512))))
    before = snapshot(exit_)
    with pytest.raises(OversizedInput):
        exit_.receive_message(encode_message(Data(sid, b"x")))
    assert exit_.__dict__ == before


def test_circuit_window_overrun_across_streams() -> None:
    client, exit_ = make_pair(stream_window=4096, circuit_window=6000)
    a, b = open_connected(client, exit_), open_connected(client, exit_)
    for _ in range(8):
        exit_.receive_message(encode_message(Data(a, bytes(500))))
    for _ in range(4):
        exit_.receive_message(encode_message(Data(b, bytes(500))))
    with pytest.raises(OversizedInput):
        exit_.receive_message(encode_message(Data(b, b"x")))


@pytest.mark.parametrize(
    "msg",
    [
        Sendme(0, 1),  # credit beyond the circuit window
        Sendme(1, 1),  # credit beyond the stream window
    ],
)
def test_excess_credit_is_a_violation(msg: Sendme) -> None:
    client, exit_ = make_pair()
    open_connected(client, exit_)
    before = snapshot(client)
    with pytest.raises(MalformedInput):
        client.receive_message(encode_message(msg))
    assert client.__dict__ == before


def test_role_and_state_violations() -> None:
    client, exit_ = make_pair()
    with pytest.raises(MalformedInput):
        client.receive_message(encode_message(Begin(5, "example.org", 80)))
    sid = client.open_stream("example.org", 80)
    deliver(client, exit_)
    # DATA before CONNECTED, in either direction.
    with pytest.raises(MalformedInput):
        exit_.receive_message(encode_message(Data(sid, b"x")))
    with pytest.raises(MalformedInput):
        client.receive_message(encode_message(Data(sid, b"x")))
    with pytest.raises(MalformedInput):
        exit_.receive_message(encode_message(Begin(sid, "example.org", 80)))  # id in use
    exit_.accept(sid)
    deliver(exit_, client)
    with pytest.raises(MalformedInput):
        client.receive_message(bytes.fromhex("020001"))  # a second CONNECTED
    with pytest.raises(LocalProtocolError):
        exit_.open_stream("example.org", 80)
    with pytest.raises(LocalProtocolError):
        exit_.accept(sid)


def test_stream_limit_and_id_reuse() -> None:
    client, exit_ = make_pair(max_streams=4)
    sids = [client.open_stream("example.org", 80) for _ in range(4)]
    assert sids == [1, 2, 3, 4]
    with pytest.raises(LocalProtocolError):
        client.open_stream("example.org", 80)
    client.reset(sids[0], ResetReason.CANCELLED)
    assert client.open_stream("example.org", 80) == 5  # ids are not reused at once
    deliver(client, exit_)
    got = events(exit_)
    assert [e.stream_id for e in got if isinstance(e, BeginRequested)] == [1, 2, 3, 4, 5]
    assert StreamReset(1, ResetReason.CANCELLED) in got
    assert exit_.stream_ids == [2, 3, 4, 5]


def test_exit_refuses_begins_beyond_its_limit() -> None:
    client = StreamMux(Role.CLIENT, max_streams=8)
    exit_ = StreamMux(Role.EXIT, max_streams=2)
    sids = [client.open_stream("example.org", 80) for _ in range(3)]
    deliver(client, exit_)
    deliver(exit_, client)
    assert events(client) == [StreamReset(sids[2], ResetReason.RESOURCE_LIMIT)]


def test_reset_returns_circuit_credit_for_unread_bytes() -> None:
    client, exit_ = make_pair(stream_window=4096, circuit_window=4096)
    a = open_connected(client, exit_)
    assert client.send(a, bytes(4096)) == 4096
    deliver(client, exit_)  # the exit application never reads it
    exit_.reset(a, ResetReason.CANCELLED)
    deliver(exit_, client)
    assert events(client) == [StreamReset(a, ResetReason.CANCELLED)]
    assert client.circuit_outstanding == 0
    b = open_connected(client, exit_)
    assert client.send(b, bytes(4096)) == 4096  # the circuit window did not leak


def test_data_crossing_a_reset_is_credited_back() -> None:
    client, exit_ = make_pair(stream_window=4096, circuit_window=4096)
    sid = open_connected(client, exit_)
    assert client.send(sid, bytes(4096)) == 4096
    exit_.reset(sid, ResetReason.CANCELLED)
    deliver(client, exit_)  # DATA arrives for a stream the exit has reset
    deliver(exit_, client)  # RESET and the circuit SENDMEs
    # Credit is batched in eighths of the window; at most one eighth stays owed.
    assert client.circuit_outstanding < 4096 // 8
    assert events(client) == [StreamReset(sid, ResetReason.CANCELLED)]


def test_reset_drops_undelivered_data_and_its_event() -> None:
    client, exit_ = make_pair()
    sid = open_connected(client, exit_)
    client.send(sid, b"abc")
    client.reset(sid, ResetReason.CANCELLED)
    deliver(client, exit_)
    assert events(exit_) == [StreamReset(sid, ResetReason.CANCELLED)]
    client.reset(sid, ResetReason.CANCELLED)  # a second reset is a harmless no-op


def test_small_data_messages_coalesce_into_one_event() -> None:
    client, exit_ = make_pair()
    sid = open_connected(client, exit_)
    for i in range(500):
        client.send(sid, bytes([i % 256]))
    deliver(client, exit_)
    (event,) = events(exit_)
    assert isinstance(event, DataReceived) and len(event.data) == 500


def test_undrained_event_queue_is_bounded() -> None:
    exit_ = StreamMux(Role.EXIT, max_streams=2)
    with pytest.raises(OversizedInput):
        for sid in range(1, 100):
            exit_.receive_message(encode_message(Begin(sid, "example.org", 80)))
            exit_.receive_message(bytes.fromhex("05") + sid.to_bytes(2, "big") + b"\x12")


def test_consumed_more_than_delivered_is_a_local_error() -> None:
    client, exit_ = make_pair()
    sid = open_connected(client, exit_)
    client.send(sid, b"abc")
    deliver(client, exit_)
    events(exit_)
    with pytest.raises(LocalProtocolError):
        exit_.consumed(sid, 4)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_message_size": 261},  # cannot carry a BEGIN with a 255-byte name
        {"stream_window": 0},
        {"stream_window": 4096, "circuit_window": 2048},
        {"max_streams": 0},
        {"max_streams": 65535},
    ],
)
def test_bad_configuration(kw: dict[str, int]) -> None:
    with pytest.raises(LocalProtocolError):
        StreamMux(Role.CLIENT, **kw)


def test_oversized_message_is_rejected() -> None:
    _, exit_ = make_pair()
    with pytest.raises(OversizedInput):
        exit_.receive_message(bytes(MAX + 1))


def test_messages_fit_the_relay_payload() -> None:
    client, exit_ = make_pair()
    sid = open_connected(client, exit_)
    client.send(sid, bytes(100_000))
    msgs = client.messages_to_send()
    assert max(len(m) for m in msgs) == MAX
    assert sum(len(m) - 3 for m in msgs) == 100_000


_small_sid = st.integers(0, 3)
_hostile = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda sid, n: b"\x03" + sid.to_bytes(2, "big") + bytes(n), _small_sid, st.integers(1, 900)
    ),
    st.builds(
        lambda sid, c: b"\x06" + sid.to_bytes(2, "big") + c.to_bytes(4, "big"),
        _small_sid,
        st.integers(0, 5000),
    ),
    st.builds(lambda t, sid: bytes([t]) + sid.to_bytes(2, "big"), st.integers(1, 6), _small_sid),
    st.builds(lambda sid: encode_message(Begin(sid, "example.org", 80)), st.integers(1, 3)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_hostile, max_size=30))
def test_random_payloads_raise_only_protocol_errors_and_change_nothing(
    payloads: list[bytes],
) -> None:
    client, exit_ = make_pair(stream_window=2048, circuit_window=4096)
    sid = open_connected(client, exit_)
    client.send(sid, b"hello")
    deliver(client, exit_)
    for mux in (client, exit_):
        for payload in payloads:
            before = snapshot(mux)
            try:
                mux.receive_message(payload)
            except ProtocolError:
                assert mux.__dict__ == before


_ops = st.lists(
    st.tuples(
        st.sampled_from(["open", "send", "end", "reset", "consume", "deliver_c", "deliver_e"]),
        st.integers(0, 7),
        st.integers(1, 5000),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(_ops)
def test_random_operation_sequences_keep_the_invariants(ops: list[tuple[str, int, int]]) -> None:
    """Any mix of application calls on both ends: no remote error ever fires, windows hold."""
    client, exit_ = make_pair(stream_window=4096, circuit_window=8192, max_streams=4)
    unconsumed: dict[tuple[int, int], int] = {}
    for op, pick, size in ops:
        for mux in (client, exit_):
            for e in events(mux):
                side = id(mux)
                if isinstance(e, BeginRequested):
                    if pick % 3 == 0:
                        mux.reject(e.stream_id, ResetReason.POLICY_REFUSED)
                    elif mux.stream_state(e.stream_id) is StreamState.ACCEPTING:
                        mux.accept(e.stream_id)  # unless a later RESET already removed it
                elif isinstance(e, DataReceived):
                    key = (side, e.stream_id)
                    unconsumed[key] = unconsumed.get(key, 0) + len(e.data)
        mux = client if pick % 2 else exit_
        live = mux.stream_ids
        sid = live[pick % len(live)] if live else 1
        try:
            if op == "open":
                client.open_stream("example.org", 80)
            elif op == "send":
                n = mux.send(sid, bytes(size))
                assert n <= mux.send_capacity(sid) + n <= 4096
            elif op == "end":
                mux.end(sid)
            elif op == "reset":
                mux.reset(sid, ResetReason.CANCELLED)
            elif op == "consume":
                key = (id(mux), sid)
                n = min(size, unconsumed.get(key, 0))
                if n:
                    mux.consumed(sid, n)
                    unconsumed[key] -= n
            elif op == "deliver_c":
                deliver(client, exit_)
            else:
                deliver(exit_, client)
        except LocalProtocolError:
            pass
        for m in (client, exit_):
            assert 0 <= m.circuit_outstanding <= 8192
            for s in m.stream_ids:
                assert 0 <= m.outstanding(s) <= 4096
