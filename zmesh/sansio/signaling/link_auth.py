"""Identity handshake of the WebSocket link, bound to the server's TLS certificate.

Python's ``ssl`` has no TLS exporter, so the link uses the RFC 5929 *tls-server-end-point* idea
instead: both sides sign a transcript that contains the SHA-256 of the certificate the server
presented in this TLS session. A man in the middle must present its own certificate (it has no
other private key to finish TLS with), so the digest the client sees differs from the one the
server signs over and both signatures fail. The transcript also carries a fresh 32-byte nonce
from each side (no replay) and both identity keys (no key-substitution). The peer record pins
the same digest, so a client that already holds the server's record checks it before it sends
anything.

Messages (one binary WebSocket message each, docs/wire/websocket-link.md)::

    HELLO  "ZMLA" | version u8 (1) | type u8 (1) | role u8 (0 client, 1 server)
           | identity_key[32] | nonce[32]
    AUTH   "ZMLA" | version u8 (1) | type u8 (2) | signature[64]

    signature = Ed25519(SIGNING_CONTEXT | role u8 | server_cert_sha256[32] | client_nonce[32]
                        | server_nonce[32] | client_identity[32] | server_identity[32])

Flow: client HELLO -> server HELLO + AUTH(role 1) -> client AUTH(role 0). After that the link
carries cells.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zmesh.sansio.signaling.peer_record import node_id_of
from zmesh.sansio.wire import (
    DEFAULT_RANDOM,
    AuthenticationFailed,
    LocalProtocolError,
    MalformedInput,
    RandomSource,
    Reader,
    Writer,
)

__all__ = ["LinkAuthenticator", "AuthState", "Role", "Hello", "Auth", "decode", "SIGNING_CONTEXT"]

MAGIC: Final = b"ZMLA"
VERSION: Final = 1
SIGNING_CONTEXT: Final = b"zmesh link auth v1\x00"
TYPE_HELLO: Final = 1
TYPE_AUTH: Final = 2


class Role(enum.IntEnum):
    CLIENT = 0
    SERVER = 1


class AuthState(enum.Enum):
    WAIT_HELLO = "wait-hello"
    WAIT_AUTH = "wait-auth"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Hello:
    role: Role
    identity_key: bytes
    nonce: bytes


@dataclass(frozen=True)
class Auth:
    signature: bytes


def encode(message: Hello | Auth) -> bytes:
    w = Writer().bytes_(MAGIC).u8(VERSION)
    if isinstance(message, Hello):
        w.u8(TYPE_HELLO).u8(message.role).bytes_(message.identity_key).bytes_(message.nonce)
    else:
        w.u8(TYPE_AUTH).bytes_(message.signature)
    return w.getvalue()


def decode(data: bytes | bytearray | memoryview) -> Hello | Auth:
    r = Reader(data)
    if r.bytes_(4) != MAGIC:
        raise MalformedInput("not a link handshake message")
    if r.u8() != VERSION:
        raise MalformedInput("unsupported link handshake version")
    kind = r.u8()
    message: Hello | Auth
    if kind == TYPE_HELLO:
        role = r.u8()
        if role > 1:
            raise MalformedInput(f"unknown role {role}")
        message = Hello(Role(role), r.bytes_(32), r.bytes_(32))
    elif kind == TYPE_AUTH:
        message = Auth(r.bytes_(64))
    else:
        raise MalformedInput(f"unknown handshake message type {kind}")
    r.expect_end()
    return message


class LinkAuthenticator:
    """One side of the handshake. Feed it the peer's messages; send what it returns."""

    def __init__(
        self,
        role: Role,
        identity: Ed25519PrivateKey,
        server_cert_sha256: bytes,
        *,
        expected_peer_id: bytes | None = None,
        random: RandomSource = DEFAULT_RANDOM,
    ) -> None:
        if len(server_cert_sha256) != 32:
            raise LocalProtocolError("server certificate digest must be 32 bytes")
        self.role = role
        self.state = AuthState.WAIT_HELLO
        self._identity = identity
        self._public = identity.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._cert = server_cert_sha256
        self._expected = expected_peer_id
        self._nonce = random(32)
        self._peer_key: bytes | None = None
        self._peer_nonce = b""

    @property
    def peer_identity_key(self) -> bytes:
        if self.state is not AuthState.DONE or self._peer_key is None:
            raise LocalProtocolError("handshake not finished")
        return self._peer_key

    @property
    def peer_id(self) -> bytes:
        return node_id_of(self.peer_identity_key)

    def start(self) -> list[bytes]:
        """The client's opening HELLO (the server waits for the client's first)."""
        if self.role is Role.CLIENT:
            return [encode(Hello(Role.CLIENT, self._public, self._nonce))]
        return []

    def _transcript(self, signer: Role, client_key: bytes, server_key: bytes) -> bytes:
        if self.role is Role.CLIENT:
            client_nonce, server_nonce = self._nonce, self._peer_nonce
        else:
            client_nonce, server_nonce = self._peer_nonce, self._nonce
        return (
            SIGNING_CONTEXT
            + bytes([signer])
            + self._cert
            + client_nonce
            + server_nonce
            + client_key
            + server_key
        )

    def _keys(self) -> tuple[bytes, bytes]:
        assert self._peer_key is not None
        if self.role is Role.CLIENT:
            return self._public, self._peer_key
        return self._peer_key, self._public

    def receive(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Process one peer message; returns the messages to send back.

        Raises :class:`AuthenticationFailed` or :class:`MalformedInput`; after a failure the
        object stays FAILED and the link must be closed.
        """
        try:
            return self._receive(data)
        except Exception:
            self.state = AuthState.FAILED
            raise

    def _receive(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        message = decode(data)
        peer_role = Role.SERVER if self.role is Role.CLIENT else Role.CLIENT
        if self.state is AuthState.WAIT_HELLO and isinstance(message, Hello):
            if message.role is not peer_role:
                raise MalformedInput("HELLO from the wrong role")
            if message.identity_key == self._public:
                raise AuthenticationFailed("peer claims our own identity")
            try:
                Ed25519PublicKey.from_public_bytes(message.identity_key)
            except ValueError as exc:
                raise MalformedInput("identity key is not an Ed25519 point") from exc
            if self._expected is not None and node_id_of(message.identity_key) != self._expected:
                raise AuthenticationFailed("peer is not the node we dialled")
            self._peer_key = message.identity_key
            self._peer_nonce = message.nonce
            self.state = AuthState.WAIT_AUTH
            if self.role is Role.SERVER:
                signature = self._identity.sign(self._transcript(Role.SERVER, *self._keys()))
                return [
                    encode(Hello(Role.SERVER, self._public, self._nonce)),
                    encode(Auth(signature)),
                ]
            return []
        if self.state is AuthState.WAIT_AUTH and isinstance(message, Auth):
            assert self._peer_key is not None
            try:
                Ed25519PublicKey.from_public_bytes(self._peer_key).verify(
                    message.signature, self._transcript(peer_role, *self._keys())
                )
            except InvalidSignature as exc:
                raise AuthenticationFailed("link handshake signature does not verify") from exc
            self.state = AuthState.DONE
            if self.role is Role.CLIENT:
                return [
                    encode(Auth(self._identity.sign(self._transcript(Role.CLIENT, *self._keys()))))
                ]
            return []
        raise MalformedInput(f"unexpected {type(message).__name__} in state {self.state.value}")
