"""Sphinx header creation and unwrapping, Katzenpost's X25519 parameterisation.

Follows the Sphinx construction of Danezis & Goldberg (IEEE S&P 2009) as Katzenpost's *code*
implements it (katzenpost/katzenpost ``core/sphinx/sphinx.go`` ``createHeader`` / ``unwrapNike``
and ``core/sphinx/internal/crypto``), not its older spec text where the two differ (replay tag,
KDF info case, IV length, MAC length, blinding: see ``docs/wire/sphinx.md`` §6):

- header = ``AD (0x00 0x00) | alpha (32) | routing_info (per_hop * max_hops) | MAC (32)``;
- per-hop keys = HKDF-SHA256 *Expand only* (RFC 5869 §2.3) with PRK = the raw X25519 output and
  info ``katzenpost-kdf-v0-hkdf-sha256``, 160 bytes split header MAC key (32) | header stream
  key (32) | header stream IV (16) | payload key (48, unused by zmesh) | blinding seed (32);
- routing info is encrypted with AES-256-CTR (full 128-bit big-endian counter block = the IV);
- MAC = HMAC-SHA256 (RFC 2104) over ``AD | alpha | routing_info``;
- blinding factor = the first 32 bytes of ChaCha20(key = seed, all-zero nonce), used as an X25519
  private key, so ``alpha' = X25519(bf, alpha)``;
- replay tag = SHA-512/256(alpha as received).

zmesh uses Sphinx only to set circuits up, so there is no payload (Katzenpost's AEZ payload is
not implemented). The geometry is a parameter: :data:`KATZENPOST_GEOMETRY` checks Katzenpost's
vectors, :data:`ZMESH_GEOMETRY` is what zmesh sends.

Everything here is a pure function: no state, no clock; randomness only from the injected
:data:`~zmesh.sansio.wire.RandomSource`.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from zmesh._accel.x25519 import scalarmult
from zmesh.sansio.onion.commands import (
    HEADER_MAC_LENGTH,
    NODE_ID_LENGTH,
    CircuitSetup,
    Command,
    NextNodeHop,
    SURBReply,
    decode_commands,
)
from zmesh.sansio.wire import (
    DEFAULT_RANDOM,
    AuthenticationFailed,
    LocalProtocolError,
    MalformedInput,
    RandomSource,
    TruncatedInput,
)

__all__ = [
    "Geometry",
    "KATZENPOST_GEOMETRY",
    "ZMESH_GEOMETRY",
    "PathHop",
    "CreatedHeader",
    "UnwrappedHeader",
    "create_header",
    "unwrap_header",
    "replay_tag",
    "KEY_LENGTH",
    "REPLAY_TAG_LENGTH",
]

KEY_LENGTH: Final = 32  # X25519 public/private key and shared secret
REPLAY_TAG_LENGTH: Final = 32  # SHA-512/256 output
VERSION_AD: Final = b"\x00\x00"  # Katzenpost v0AD

KDF_INFO: Final = b"katzenpost-kdf-v0-hkdf-sha256"  # lowercase, as in the code (spec: capital K)
# KDF output split (internal/crypto/crypto.go KDF, with AES-256 and a 16-byte IV).
_MAC_KEY: Final = slice(0, 32)
_STREAM_KEY: Final = slice(32, 64)
_STREAM_IV: Final = slice(64, 80)
_PAYLOAD_KEY_LENGTH: Final = 48  # AEZ key; derived to keep the split, never used by zmesh
_BLINDING_SEED: Final = slice(80 + _PAYLOAD_KEY_LENGTH, 80 + _PAYLOAD_KEY_LENGTH + 32)
KDF_OUTPUT_LENGTH: Final = _BLINDING_SEED.stop  # 160

# Go's DRBG is DJB ChaCha20 (64-bit counter, 8-byte nonce); with counter and nonce all zero its
# first block equals cryptography's ChaCha20 whose 16-byte "nonce" is counter (4, LE) | nonce (12).
_CHACHA_ZERO_NONCE: Final = bytes(16)
_ZERO_KEY_BYTES: Final = bytes(KEY_LENGTH)

_SHA256: Final = hashes.SHA256()


@dataclass(frozen=True)
class Geometry:
    """Sizes of a Sphinx header. Every header of one geometry has the same length."""

    max_hops: int
    per_hop_routing_info_length: int

    def __post_init__(self) -> None:
        if self.max_hops < 1:
            raise LocalProtocolError("a Sphinx geometry needs at least one hop")
        minimum = NextNodeHop.LENGTH if self.max_hops > 1 else 1
        if self.per_hop_routing_info_length < minimum:
            raise LocalProtocolError(
                f"per-hop routing info must hold a NextNodeHop ({minimum} bytes)"
            )

    @property
    def routing_info_length(self) -> int:
        return self.max_hops * self.per_hop_routing_info_length

    @property
    def alpha_offset(self) -> int:
        return len(VERSION_AD)

    @property
    def routing_info_offset(self) -> int:
        return len(VERSION_AD) + KEY_LENGTH

    @property
    def mac_offset(self) -> int:
        return self.routing_info_offset + self.routing_info_length

    @property
    def header_length(self) -> int:
        return self.mac_offset + HEADER_MAC_LENGTH


#: Katzenpost's X25519 geometry with 5 hops (``geo.GeometryFromUserForwardPayloadLength``):
#: per-hop routing info = NextNodeHop (65) + SURBReply (17) = 82 bytes, header 476 bytes.
KATZENPOST_GEOMETRY: Final = Geometry(max_hops=5, per_hop_routing_info_length=82)

#: zmesh: at most 3 hops, so 2- and 3-hop setups look alike. A relay's slot holds
#: NextNodeHop (65) + CircuitSetup (38) + terminator (1) = 104 bytes; header 378 bytes.
ZMESH_GEOMETRY: Final = Geometry(max_hops=3, per_hop_routing_info_length=104)


@dataclass(frozen=True)
class PathHop:
    """One hop of a path to build: its node id, its Sphinx public key, its commands.

    ``commands`` must not contain :class:`NextNodeHop`; :func:`create_header` adds it.
    """

    node_id: bytes
    public_key: bytes
    commands: tuple[Command, ...]

    def __post_init__(self) -> None:
        if len(self.node_id) != NODE_ID_LENGTH:
            raise LocalProtocolError(f"node_id must be {NODE_ID_LENGTH} bytes")
        if len(self.public_key) != KEY_LENGTH:
            raise LocalProtocolError(f"public_key must be {KEY_LENGTH} bytes")
        if any(isinstance(c, NextNodeHop) for c in self.commands):
            raise LocalProtocolError("NextNodeHop is added by create_header, not by the caller")


@dataclass(frozen=True)
class CreatedHeader:
    """A fresh header and the raw X25519 secret each hop will compute from it, in path order."""

    header: bytes
    shared_secrets: tuple[bytes, ...] = field(repr=False)  # key material: keep out of logs


@dataclass(frozen=True)
class UnwrappedHeader:
    """What one hop learns from a header.

    ``commands`` excludes :class:`NextNodeHop`; ``next_hop``/``next_header`` are ``None`` at the
    last hop. ``replay_tag`` must be checked against (and entered in) the key's replay cache.
    """

    commands: tuple[Command, ...]
    next_hop: bytes | None
    next_header: bytes | None
    shared_secret: bytes = field(repr=False)  # key material: keep out of logs
    replay_tag: bytes


def replay_tag(alpha: bytes | memoryview) -> bytes:
    """Katzenpost's replay tag: SHA-512/256 of the group element as received."""
    digest = hashes.Hash(hashes.SHA512_256())
    digest.update(alpha)
    return digest.finalize()


def _kdf(shared_secret: bytes) -> bytes:
    return HKDFExpand(_SHA256, KDF_OUTPUT_LENGTH, KDF_INFO).derive(shared_secret)


def _blinding_scalar(okm: bytes) -> bytes:
    seed = okm[_BLINDING_SEED]
    stream = Cipher(algorithms.ChaCha20(seed, _CHACHA_ZERO_NONCE), mode=None).encryptor()
    return stream.update(_ZERO_KEY_BYTES)


def _header_stream(okm: bytes) -> Cipher[modes.CTR]:
    return Cipher(algorithms.AES(okm[_STREAM_KEY]), modes.CTR(okm[_STREAM_IV]))


def _mac(okm: bytes, *parts: bytes | memoryview) -> bytes:
    mac = crypto_hmac.HMAC(okm[_MAC_KEY], _SHA256)
    for part in parts:
        mac.update(part)
    return mac.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    # Big-int XOR runs in C; a per-byte Python loop would dominate header creation.
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def create_header(
    geometry: Geometry, path: Sequence[PathHop], random: RandomSource = DEFAULT_RANDOM
) -> CreatedHeader:
    """Build a header that routes through ``path`` (1 to ``geometry.max_hops`` hops).

    ``random`` is read exactly twice, in this order: 32 bytes for the client's ephemeral X25519
    private key, then ``(max_hops - len(path)) * per_hop_routing_info_length`` bytes that fill
    the unused hop slots (zero bytes for a full-length path). The conformance vectors record
    those bytes so creation can be reproduced.
    """
    n = len(path)
    if not 1 <= n <= geometry.max_hops:
        raise LocalProtocolError(f"path has {n} hops; geometry allows 1..{geometry.max_hops}")
    per_hop = geometry.per_hop_routing_info_length
    ri_length = geometry.routing_info_length
    # Encode and size-check every hop's commands before spending any randomness.
    fragments: list[bytes] = []
    for i, hop in enumerate(path):
        room = per_hop if i == n - 1 else per_hop - NextNodeHop.LENGTH
        body = b"".join(c.encode() for c in hop.commands)
        if len(body) > room:
            raise LocalProtocolError(f"hop {i} commands need {len(body)} bytes, room is {room}")
        fragments.append(body)

    ephemeral = random(KEY_LENGTH)
    if len(ephemeral) != KEY_LENGTH:
        raise LocalProtocolError("random source returned a short ephemeral key")
    client_key = X25519PrivateKey.from_private_bytes(ephemeral)

    # Per-hop secrets: ss_i = X25519(x, pk_i) blinded by bf_0..bf_{i-1};
    # alpha_i = X25519(bf_{i-1}, alpha_{i-1}). Only X25519 calls, no scalar arithmetic.
    alphas = [client_key.public_key().public_bytes_raw()]
    secrets: list[bytes] = []
    okms: list[bytes] = []
    blinders: list[bytes] = []
    for i, hop in enumerate(path):
        try:
            secret = client_key.exchange(X25519PublicKey.from_public_bytes(hop.public_key))
            for blinder in blinders:
                secret = scalarmult(blinder, secret)
        except ValueError:
            raise LocalProtocolError(f"hop {i} public key is a low-order point") from None
        okm = _kdf(secret)
        secrets.append(secret)
        okms.append(okm)
        if i < n - 1:
            blinder = _blinding_scalar(okm)
            blinders.append(blinder)
            alphas.append(scalarmult(blinder, alphas[i]))

    # Each hop's keystream covers routing info + one slot; the tail past what hop i keeps is
    # the filler that hop i appends, accumulated so later MACs can cover it.
    keystreams: list[bytes] = []
    fillers: list[bytes] = []
    zeros = bytes(ri_length + per_hop)
    for i in range(n):
        stream = _header_stream(okms[i]).encryptor().update(zeros)
        keep = ri_length - i * per_hop
        keystreams.append(stream[:keep])
        filler = stream[keep:]
        if i > 0:
            previous = fillers[i - 1]
            filler = _xor(filler[: len(previous)], previous) + filler[len(previous) :]
        fillers.append(filler)

    unused = (geometry.max_hops - n) * per_hop
    routing_info = random(unused) if unused else b""
    if len(routing_info) != unused:
        raise LocalProtocolError("random source returned short padding")
    mac = b""
    for i in range(n - 1, -1, -1):
        fragment = fragments[i]
        if i < n - 1:
            fragment += NextNodeHop(path[i + 1].node_id, mac).encode()
        fragment += bytes(per_hop - len(fragment))
        routing_info = _xor(fragment + routing_info, keystreams[i])
        if i > 0:
            mac = _mac(okms[i], VERSION_AD, alphas[i], routing_info, fillers[i - 1])
        else:
            mac = _mac(okms[i], VERSION_AD, alphas[i], routing_info)
    header = VERSION_AD + alphas[0] + routing_info + mac
    return CreatedHeader(header=header, shared_secrets=tuple(secrets))


def unwrap_header(
    geometry: Geometry, private_key: X25519PrivateKey, header: bytes | memoryview
) -> UnwrappedHeader:
    """Verify and peel one layer of ``header`` with this hop's Sphinx private key.

    Raises :class:`TruncatedInput` / :class:`MalformedInput` for a header of the wrong size or
    version, a low-order alpha or bad commands, and :class:`AuthenticationFailed` when the MAC
    does not verify. Pure: the caller checks ``replay_tag`` against its cache.
    """
    return _unwrap(geometry, private_key, header, None)


def _unwrap(
    geometry: Geometry,
    private_key: X25519PrivateKey,
    header: bytes | memoryview,
    tag: bytes | None,
) -> UnwrappedHeader:
    # ``tag``: the replay tag when the caller (the key ring) already computed it from alpha.
    header_length = geometry.header_length
    if len(header) < header_length:
        raise TruncatedInput(f"Sphinx header needs {header_length} bytes, got {len(header)}")
    if len(header) > header_length:
        raise MalformedInput(f"Sphinx header is {header_length} bytes, got {len(header)}")
    view = header if isinstance(header, memoryview) else memoryview(header)
    if view[0] != 0 or view[1] != 0:
        raise MalformedInput(f"unknown Sphinx version bytes {bytes(view[:2]).hex()}")
    ri_offset = geometry.routing_info_offset
    mac_offset = geometry.mac_offset
    per_hop = geometry.per_hop_routing_info_length

    alpha = bytes(view[2:ri_offset])
    alpha_key = X25519PublicKey.from_public_bytes(alpha)
    try:
        secret = private_key.exchange(alpha_key)
    except ValueError:
        raise MalformedInput("Sphinx alpha is a low-order point") from None
    okm = _kdf(secret)
    expected = _mac(okm, view[:mac_offset])
    if not hmac.compare_digest(expected, view[mac_offset:]):
        raise AuthenticationFailed("Sphinx header MAC mismatch")

    # Only this hop's slot is needed to find out whether there is a next hop.
    stream = _header_stream(okm).encryptor()
    commands = decode_commands(stream.update(view[ri_offset : ri_offset + per_hop]))

    next_node: NextNodeHop | None = None
    kept: list[Command] = []
    seen_surb = seen_setup = False
    for command in commands:
        if isinstance(command, NextNodeHop):
            if next_node is not None:
                raise MalformedInput("more than one NextNodeHop")
            next_node = command
            continue
        if isinstance(command, SURBReply):
            if seen_surb:
                raise MalformedInput("more than one SURBReply")
            seen_surb = True
        elif isinstance(command, CircuitSetup):
            if seen_setup:
                raise MalformedInput("more than one CircuitSetup")
            seen_setup = True
        kept.append(command)

    if tag is None:
        tag = replay_tag(alpha)
    if next_node is None:
        return UnwrappedHeader(tuple(kept), None, None, secret, tag)
    # The CTR stream continues where the slot ended: the rest of the routing info, then one
    # slot of zeros whose decryption is the filler that keeps the header length constant.
    next_routing_info = stream.update(view[ri_offset + per_hop : mac_offset]) + stream.update(
        bytes(per_hop)
    )
    try:
        next_alpha = scalarmult(_blinding_scalar(okm), alpha)
    except ValueError:
        raise MalformedInput("blinded Sphinx alpha is a low-order point") from None
    next_header = VERSION_AD + next_alpha + next_routing_info + next_node.mac
    return UnwrappedHeader(tuple(kept), next_node.node_id, next_header, secret, tag)
