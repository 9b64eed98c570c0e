"""SOCKS5 codec (RFC 1928 / RFC 1929): messages, server state machine, hostile input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.exit.socks5 import (
    Command,
    ConnectRequested,
    Greeting,
    HandshakeFailed,
    MethodSelection,
    Reply,
    ReplyMessage,
    Request,
    ServerState,
    Socks5Error,
    Socks5Event,
    Socks5ServerConnection,
    UserPassReply,
    UserPassRequest,
    parse_greeting,
    parse_method_selection,
    parse_reply,
    parse_request,
    parse_userpass_reply,
    parse_userpass_request,
    reply_for_reset,
    reset_for_reply,
)
from zmesh.sansio.streams import AddressType, ResetReason
from zmesh.sansio.wire import OversizedInput, ProtocolError

CONNECT_NAME = bytes.fromhex("05010003 0b") + b"example.org" + b"\x01\xbb"


def handshake(conn: Socks5ServerConnection, *chunks: bytes) -> list[Socks5Event]:
    for chunk in chunks:
        conn.receive_data(chunk)
    events = []
    while (e := conn.next_event()) is not None:
        events.append(e)
    return events


def test_no_auth_connect_by_name() -> None:
    conn = Socks5ServerConnection()
    assert handshake(conn, b"\x05\x01\x00") == []
    assert conn.data_to_send() == b"\x05\x00"
    assert handshake(conn, CONNECT_NAME) == [
        ConnectRequested("example.org", 443, AddressType.DOMAIN, None)
    ]
    assert conn.state is ServerState.CONNECTING
    conn.send_reply(Reply.SUCCEEDED)
    assert conn.data_to_send() == bytes.fromhex("05000001 00000000 0000")
    assert conn.state.value == "established"


def test_byte_at_a_time_and_pipelined_with_early_data() -> None:
    wire = b"\x05\x02\x00\x02" + bytes.fromhex("05010004") + bytes(15) + b"\x01" + b"\x00\x50"
    conn = Socks5ServerConnection()
    events = handshake(conn, *(wire[i : i + 1] for i in range(len(wire))))
    assert events == [ConnectRequested("::1", 80, AddressType.IPV6, None)]
    conn2 = Socks5ServerConnection()
    assert handshake(conn2, wire + b"GET /") == events
    assert conn2.early_data() == b"GET /"


def test_ipv4_request() -> None:
    conn = Socks5ServerConnection()
    events = handshake(conn, b"\x05\x01\x00", bytes.fromhex("05010001 7f000001 1f90"))
    assert events == [ConnectRequested("127.0.0.1", 8080, AddressType.IPV4, None)]


def test_username_password() -> None:
    conn = Socks5ServerConnection({"alice": "s3cret", "bob": "pw"})
    handshake(conn, b"\x05\x02\x00\x02")
    assert conn.data_to_send() == b"\x05\x02"
    handshake(conn, UserPassRequest(b"alice", b"s3cret").encode())
    assert conn.data_to_send() == b"\x01\x00"
    assert handshake(conn, CONNECT_NAME) == [
        ConnectRequested("example.org", 443, AddressType.DOMAIN, "alice")
    ]


def test_wrong_password_fails_with_status() -> None:
    conn = Socks5ServerConnection({"alice": "s3cret"})
    events = handshake(conn, b"\x05\x01\x02", UserPassRequest(b"alice", b"guess").encode())
    assert conn.data_to_send() == b"\x05\x02\x01\x01"
    assert events == [HandshakeFailed("bad username or password")]
    assert conn.state is ServerState.CLOSED


def test_no_acceptable_method() -> None:
    conn = Socks5ServerConnection({"alice": "s3cret"})
    events = handshake(conn, b"\x05\x01\x00")  # offers no-auth only, but auth is required
    assert conn.data_to_send() == b"\x05\xff"
    assert isinstance(events[0], HandshakeFailed)


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (bytes.fromhex("05020001 7f000001 0050"), Reply.COMMAND_NOT_SUPPORTED),  # BIND
        (bytes.fromhex("05030001 7f000001 0050"), Reply.COMMAND_NOT_SUPPORTED),  # UDP ASSOCIATE
        (bytes.fromhex("0509"), Reply.COMMAND_NOT_SUPPORTED),  # unknown command
        (bytes.fromhex("05010002 7f000001 0050"), Reply.ADDRESS_TYPE_NOT_SUPPORTED),
        (bytes.fromhex("04010001 7f000001 0050"), Reply.GENERAL_FAILURE),  # version
        (bytes.fromhex("05010101 7f000001 0050"), Reply.GENERAL_FAILURE),  # reserved byte
        (bytes.fromhex("05010003 03") + b"a b" + b"\x00\x50", Reply.HOST_UNREACHABLE),
        (bytes.fromhex("05010001 7f000001 0000"), Reply.CONNECTION_REFUSED),  # port 0
    ],
)
def test_bad_requests_map_to_reply_codes(request_bytes: bytes, reply: Reply) -> None:
    conn = Socks5ServerConnection()
    handshake(conn, b"\x05\x01\x00")
    conn.data_to_send()
    with pytest.raises(Socks5Error) as info:
        conn.receive_data(request_bytes)
    assert info.value.reply is reply
    assert conn.state is ServerState.REQUEST  # nothing changed
    conn.fail(info.value.reply)
    assert conn.data_to_send() == ReplyMessage(reply).encode()
    assert conn.state.value == "closed"


def test_error_in_a_pipelined_request_is_answered_at_the_request_stage() -> None:
    conn = Socks5ServerConnection()
    with pytest.raises(Socks5Error) as info:
        conn.receive_data(b"\x05\x01\x00" + bytes.fromhex("05020001 7f000001 0050"))
    conn.fail(info.value.reply)
    assert conn.data_to_send() == b"\x05\x00" + ReplyMessage(Reply.COMMAND_NOT_SUPPORTED).encode()


def test_garbage_greeting_gets_no_acceptable_methods() -> None:
    conn = Socks5ServerConnection()
    with pytest.raises(Socks5Error):
        conn.receive_data(b"GET / HTTP/1.1\r\n")
    conn.fail()
    assert conn.data_to_send() == b"\x05\xff"


def test_handshake_bounds() -> None:
    conn = Socks5ServerConnection()
    handshake(conn, b"\x05\x01\x00", CONNECT_NAME)
    with pytest.raises(OversizedInput):
        conn.receive_data(bytes(70_000))
    with pytest.raises(ProtocolError):
        Socks5ServerConnection().receive_data(b"\x05\xff" + bytes(1000))


@pytest.mark.parametrize("reason", list(ResetReason))
def test_reset_reasons_map_to_replies(reason: ResetReason) -> None:
    reply = reply_for_reset(reason)
    expected = {
        ResetReason.POLICY_REFUSED: Reply.NOT_ALLOWED,
        ResetReason.NETWORK_UNREACHABLE: Reply.NETWORK_UNREACHABLE,
        ResetReason.HOST_UNREACHABLE: Reply.HOST_UNREACHABLE,
        ResetReason.CONNECTION_REFUSED: Reply.CONNECTION_REFUSED,
        ResetReason.TTL_EXPIRED: Reply.TTL_EXPIRED,
    }.get(reason, Reply.GENERAL_FAILURE)
    assert reply is expected
    if reason <= ResetReason.TTL_EXPIRED:
        assert reset_for_reply(reply) is reason


_name = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=30).map(
    lambda s: s + ".test"
)
_host = st.one_of(_name, st.ip_addresses().map(str))


@settings(max_examples=200)
@given(
    st.one_of(
        st.builds(Greeting, st.lists(st.integers(0, 255), min_size=1, max_size=255).map(tuple)),
        st.builds(MethodSelection, st.integers(0, 255)),
        st.builds(UserPassRequest, st.binary(min_size=1, max_size=255), st.binary(max_size=255)),
        st.builds(UserPassReply, st.integers(0, 255)),
        st.builds(Request, st.sampled_from(Command), _host, st.integers(1, 0xFFFF)),
        st.builds(ReplyMessage, st.sampled_from(Reply), _host, st.integers(0, 0xFFFF)),
    )
)
def test_round_trips(msg: object) -> None:
    parser = {
        Greeting: parse_greeting,
        MethodSelection: parse_method_selection,
        UserPassRequest: parse_userpass_request,
        UserPassReply: parse_userpass_reply,
        Request: parse_request,
        ReplyMessage: parse_reply,
    }[type(msg)]
    wire = msg.encode()  # type: ignore[attr-defined]
    assert parser(wire + b"tail") == (msg, len(wire))
    for cut in range(len(wire)):
        assert parser(wire[:cut]) is None  # incomplete is not an error


_PARSERS = [
    parse_greeting,
    parse_method_selection,
    parse_userpass_request,
    parse_userpass_reply,
    parse_request,
    parse_reply,
]


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_protocol_errors(data: bytes) -> None:
    for parser in _PARSERS:
        with contextlib.suppress(ProtocolError):
            parser(data)
    conn = Socks5ServerConnection({"u": "p"} if len(data) % 2 else None)
    try:
        conn.receive_data(data)
    except ProtocolError as exc:
        conn.fail(exc.reply if isinstance(exc, Socks5Error) else Reply.GENERAL_FAILURE)
        assert conn.state is ServerState.CLOSED
    conn.data_to_send()
