"""Signed peer records: what a node tells the mesh about itself (docs/wire/peer-record.md).

A record binds a node's long-term Ed25519 identity to everything another node needs before it
uses the peer: its per-epoch X25519 Sphinx keys, the SHA-256 of its link TLS certificate (the
pin the WebSocket link checks), its reachability hints, capability bits, a monotonic sequence
number (newer wins, as in EIP-778 ENRs) and an absolute expiry. The signature covers a
domain-separation string followed by the whole body (the libp2p signed-envelope idea, RFC 0002),
so a record signature can never be replayed as any other zmesh signature.

The node id is SHA-256 of the raw 32-byte identity public key; it is the Sphinx next-hop id.

Layout (all integers big-endian)::

    magic "ZMPR" | version u8 (1) | identity_key[32] | seq u64 | expires u64 (unix s)
    | capabilities u32 | cert_sha256[32]
    | n_keys u8 (1..MAX_SPHINX_KEYS) | n_keys x (epoch u32 | x25519_public[32])
    | n_addrs u8 (0..MAX_ADDRESSES) | n_addrs x (len u16 | UTF-8 address)
    | signature[64]   Ed25519 over SIGNING_CONTEXT | everything before the signature

Parsing is complete before any check, and ``verify`` is separate from ``decode`` so a relay can
tell "malformed" (:class:`MalformedInput`) from "forged" (:class:`AuthenticationFailed`) and
"stale" (:class:`ExpiredRecord`).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zmesh.sansio.wire import (
    AuthenticationFailed,
    LocalProtocolError,
    MalformedInput,
    OversizedInput,
    Reader,
    RemoteProtocolError,
    Writer,
)

__all__ = [
    "MAGIC",
    "VERSION",
    "SIGNING_CONTEXT",
    "MAX_RECORD_SIZE",
    "MAX_SPHINX_KEYS",
    "MAX_ADDRESSES",
    "MAX_ADDRESS_LENGTH",
    "MAX_RECORD_LIFETIME",
    "Capability",
    "SphinxKey",
    "PeerRecord",
    "ExpiredRecord",
    "node_id_of",
    "sign_record",
]

MAGIC: Final = b"ZMPR"
VERSION: Final = 1
#: Domain separation for the Ed25519 signature (libp2p RFC 0002 style).
SIGNING_CONTEXT: Final = b"zmesh peer record v1\x00"
#: A record must fit comfortably in a Web Push message (3993 bytes of plaintext) next to others.
MAX_RECORD_SIZE: Final = 1024
#: Current, next and a previous epoch, plus one spare during rotation.
MAX_SPHINX_KEYS: Final = 4
MAX_ADDRESSES: Final = 8
MAX_ADDRESS_LENGTH: Final = 255
#: Latest expiry a verifier accepts, in seconds past its ``now``. Nodes sign for an hour by
#: default (``record_lifetime``); a week leaves room for configuration and clock skew.
MAX_RECORD_LIFETIME: Final = 7 * 24 * 3600
SIGNATURE_SIZE: Final = 64
KEY_SIZE: Final = 32


class Capability(enum.IntFlag):
    """What a node offers; bits not listed here are reserved and ignored by readers."""

    RELAY = 1
    EXIT = 2
    CLIENT = 4
    RENDEZVOUS = 8


class ExpiredRecord(RemoteProtocolError):
    """The record's signature is good but its expiry has passed."""


def node_id_of(identity_public_key: bytes) -> bytes:
    """The 32-byte node id: SHA-256 of the raw Ed25519 identity public key."""
    if len(identity_public_key) != KEY_SIZE:
        raise LocalProtocolError("identity public key must be 32 bytes")
    return hashlib.sha256(identity_public_key).digest()


@dataclass(frozen=True)
class SphinxKey:
    """One epoch's X25519 Sphinx public key."""

    epoch: int
    public_key: bytes


@dataclass(frozen=True)
class PeerRecord:
    """A decoded peer record. ``signature`` is only trustworthy after :meth:`verify`."""

    identity_key: bytes
    seq: int
    expires: int
    capabilities: Capability
    cert_sha256: bytes
    sphinx_keys: tuple[SphinxKey, ...]
    addresses: tuple[str, ...]
    signature: bytes

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.identity_key)

    def sphinx_key_for(self, epoch: int) -> SphinxKey | None:
        for key in self.sphinx_keys:
            if key.epoch == epoch:
                return key
        return None

    # -- encoding -------------------------------------------------------------------------

    def signed_body(self) -> bytes:
        """Everything the signature covers except the domain-separation prefix."""
        _check_fields(self.identity_key, self.cert_sha256, self.sphinx_keys, self.addresses)
        w = Writer()
        w.bytes_(MAGIC).u8(VERSION).bytes_(self.identity_key)
        w.u64(self.seq).u64(self.expires).u32(int(self.capabilities)).bytes_(self.cert_sha256)
        w.u8(len(self.sphinx_keys))
        for key in self.sphinx_keys:
            w.u32(key.epoch).bytes_(key.public_key)
        w.u8(len(self.addresses))
        for address in self.addresses:
            raw = address.encode("utf-8")
            w.u16(len(raw)).bytes_(raw)
        return w.getvalue()

    def encode(self) -> bytes:
        if len(self.signature) != SIGNATURE_SIZE:
            raise LocalProtocolError("record is not signed")
        data = self.signed_body() + self.signature
        if len(data) > MAX_RECORD_SIZE:
            raise LocalProtocolError(f"record of {len(data)} bytes exceeds {MAX_RECORD_SIZE}")
        return data

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> PeerRecord:
        """Parse a record; raises a :class:`RemoteProtocolError` subclass on bad input.

        Does not check the signature or expiry: call :meth:`verify`.
        """
        if len(data) > MAX_RECORD_SIZE:
            raise OversizedInput(f"record of {len(data)} bytes exceeds {MAX_RECORD_SIZE}")
        r = Reader(data)
        if r.bytes_(4) != MAGIC:
            raise MalformedInput("not a peer record (bad magic)")
        version = r.u8()
        if version != VERSION:
            raise MalformedInput(f"unsupported peer record version {version}")
        identity_key = r.bytes_(KEY_SIZE)
        seq = r.u64()
        expires = r.u64()
        # unknown bits are kept (not masked) so the signed body re-encodes byte for byte
        capabilities = Capability(r.u32())
        cert_sha256 = r.bytes_(KEY_SIZE)
        n_keys = r.u8()
        if not 1 <= n_keys <= MAX_SPHINX_KEYS:
            raise MalformedInput(f"{n_keys} Sphinx keys (allowed 1..{MAX_SPHINX_KEYS})")
        keys = []
        for _ in range(n_keys):
            epoch = r.u32()
            keys.append(SphinxKey(epoch, r.bytes_(KEY_SIZE)))
        if len({k.epoch for k in keys}) != len(keys):
            raise MalformedInput("duplicate Sphinx key epoch")
        n_addrs = r.u8()
        if n_addrs > MAX_ADDRESSES:
            raise MalformedInput(f"{n_addrs} addresses (allowed {MAX_ADDRESSES})")
        addresses = []
        for _ in range(n_addrs):
            length = r.u16()
            if length > MAX_ADDRESS_LENGTH:
                raise MalformedInput(f"address of {length} bytes")
            try:
                addresses.append(r.bytes_(length).decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise MalformedInput("address is not UTF-8") from exc
        signature = r.bytes_(SIGNATURE_SIZE)
        r.expect_end()
        return cls(
            identity_key=identity_key,
            seq=seq,
            expires=expires,
            capabilities=capabilities,
            cert_sha256=cert_sha256,
            sphinx_keys=tuple(keys),
            addresses=tuple(addresses),
            signature=signature,
        )

    # -- verification ---------------------------------------------------------------------

    def verify(self, now: float) -> PeerRecord:
        """Check the signature, then the expiry; returns ``self`` so calls chain."""
        try:
            public = Ed25519PublicKey.from_public_bytes(self.identity_key)
            public.verify(self.signature, SIGNING_CONTEXT + self.signed_body())
        except (InvalidSignature, ValueError) as exc:
            raise AuthenticationFailed("peer record signature does not verify") from exc
        if self.expires <= now:
            raise ExpiredRecord(f"peer record expired at {self.expires}")
        if self.expires > now + MAX_RECORD_LIFETIME:
            # Stores evict the record expiring soonest and replay is bounded only by expiry,
            # so an expiry the peer may set freely would let it pin caches and replay forever.
            raise ExpiredRecord(f"peer record expiry {self.expires} is too far ahead")
        return self


def _check_fields(
    identity_key: bytes,
    cert_sha256: bytes,
    sphinx_keys: tuple[SphinxKey, ...],
    addresses: tuple[str, ...],
) -> None:
    if len(identity_key) != KEY_SIZE or len(cert_sha256) != KEY_SIZE:
        raise LocalProtocolError("identity key and certificate digest must be 32 bytes")
    if not 1 <= len(sphinx_keys) <= MAX_SPHINX_KEYS:
        raise LocalProtocolError(f"need 1..{MAX_SPHINX_KEYS} Sphinx keys")
    if any(len(k.public_key) != KEY_SIZE for k in sphinx_keys):
        raise LocalProtocolError("Sphinx public keys must be 32 bytes")
    if len(addresses) > MAX_ADDRESSES:
        raise LocalProtocolError(f"at most {MAX_ADDRESSES} addresses")
    if any(len(a.encode("utf-8")) > MAX_ADDRESS_LENGTH for a in addresses):
        raise LocalProtocolError(f"addresses are at most {MAX_ADDRESS_LENGTH} bytes")


def sign_record(
    identity: Ed25519PrivateKey,
    *,
    seq: int,
    expires: int,
    capabilities: Capability,
    cert_sha256: bytes,
    sphinx_keys: tuple[SphinxKey, ...] | list[SphinxKey],
    addresses: tuple[str, ...] | list[str] = (),
) -> PeerRecord:
    """Build and sign a record with the node's identity key."""
    identity_key = identity.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    unsigned = PeerRecord(
        identity_key=identity_key,
        seq=seq,
        expires=expires,
        capabilities=capabilities,
        cert_sha256=cert_sha256,
        sphinx_keys=tuple(sphinx_keys),
        addresses=tuple(addresses),
        signature=b"",
    )
    signature = identity.sign(SIGNING_CONTEXT + unsigned.signed_body())
    record = PeerRecord(**{**unsigned.__dict__, "signature": signature})
    record.encode()  # enforces MAX_RECORD_SIZE at signing time, not at the receiver
    return record
