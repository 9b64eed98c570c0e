"""The link identity handshake: success, MITM with another certificate, hostile bytes."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.signaling.link_auth import (
    Auth,
    AuthState,
    Hello,
    LinkAuthenticator,
    Role,
    decode,
    encode,
)
from zmesh.sansio.signaling.peer_record import node_id_of
from zmesh.sansio.wire import AuthenticationFailed, MalformedInput, ProtocolError

CERT = b"\x11" * 32


def pair(client_cert: bytes = CERT, expected: bytes | None = None):  # type: ignore[no-untyped-def]
    ck, sk = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    counter = iter(range(1, 1000))
    rnd = lambda n: bytes([next(counter)]) * n  # noqa: E731 - deterministic nonces
    c = LinkAuthenticator(Role.CLIENT, ck, client_cert, expected_peer_id=expected, random=rnd)
    s = LinkAuthenticator(Role.SERVER, sk, CERT, random=rnd)
    return c, s, ck, sk


def run(c: LinkAuthenticator, s: LinkAuthenticator) -> None:
    to_server = c.start()
    assert s.start() == []
    while to_server:
        to_client = [m for msg in to_server for m in s.receive(msg)]
        to_server = [m for msg in to_client for m in c.receive(msg)]


def test_handshake_authenticates_both_sides() -> None:
    c, s, ck, sk = pair()
    run(c, s)
    assert c.state is AuthState.DONE and s.state is AuthState.DONE
    from cryptography.hazmat.primitives import serialization

    def raw(k):
        return k.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    assert c.peer_id == node_id_of(raw(sk))
    assert s.peer_id == node_id_of(raw(ck))


def test_different_certificate_seen_by_client_fails() -> None:
    c, s, _, _ = pair(client_cert=b"\x22" * 32)  # a MITM presented another certificate
    with pytest.raises(AuthenticationFailed):
        run(c, s)
    assert c.state is AuthState.FAILED


def test_wrong_expected_peer_fails_before_signing() -> None:
    c, s, _, _ = pair(expected=b"\x00" * 32)
    with pytest.raises(AuthenticationFailed, match="not the node"):
        run(c, s)


def test_replayed_server_auth_from_another_session_fails() -> None:
    c1, s1, _, _sk = pair()
    hello = c1.start()[0]
    server_msgs = s1.receive(hello)
    c2 = LinkAuthenticator(Role.CLIENT, Ed25519PrivateKey.generate(), CERT)
    c2.start()
    c2.receive(encode(Hello(Role.SERVER, decode(server_msgs[0]).identity_key, b"\x05" * 32)))  # type: ignore[union-attr]
    with pytest.raises(AuthenticationFailed):
        c2.receive(server_msgs[1])


def test_out_of_order_message_is_malformed() -> None:
    c, _, _, _ = pair()
    c.start()
    with pytest.raises(MalformedInput):
        c.receive(encode(Auth(b"\x00" * 64)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    c, _, _, _ = pair()
    c.start()
    with contextlib.suppress(ProtocolError):
        decode(data)
    with contextlib.suppress(ProtocolError):
        c.receive(data)


@settings(max_examples=50, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=64, max_size=64),
)
def test_codec_round_trip(key: bytes, nonce: bytes, sig: bytes) -> None:
    for message in (Hello(Role.CLIENT, key, nonce), Hello(Role.SERVER, key, nonce), Auth(sig)):
        assert decode(encode(message)) == message
