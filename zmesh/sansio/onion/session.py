"""Per-hop key exchange, key schedule and the layered CREATED reply.

Sphinx gives each hop a shared secret with the client, but that secret comes from the hop's
epoch key (static-ephemeral DH), so it is not forward-secret (research notes ``sphinx.md``
§1.1, Katzenpost spec §9.3). Each hop therefore also runs an ephemeral-ephemeral X25519
exchange: the client's share travels in the hop's ``CircuitSetup`` Sphinx command, the hop's
share comes back in the CREATED reply. Cell keys come from HKDF-SHA256 (RFC 5869) over both
secrets, so learning a hop's epoch key later does not open recorded cells::

    PRK  = HKDF-Extract(salt = "zmesh-circuit-v1", IKM = X25519(x, Y) || sphinx_secret)
    T    = X || Y || circuit_tag || flags
    OKM  = HKDF-Expand(PRK, "zmesh circuit keys" || T, 160)
         = forward AEAD key | backward AEAD key | forward pad key | backward pad key | confirm key

The CREATED reply is one cell body that every hop on the way back wraps, like a Sphinx reply:
hop *i* prepends its 48-byte record (its share Y and a 16-byte confirmation MAC), drops the
body's last 48 bytes (always filler, because at most :data:`~.cells.MAX_HOPS` records are ever
added) and encrypts the whole body with a ChaCha20 stream keyed from its Sphinx secret. The body
therefore looks random on every link and does not reveal how many hops remain. Layout and
labels: ``docs/wire/cells.md``.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from zmesh.sansio.onion.cells import BODY_SIZE, MAX_HOPS
from zmesh.sansio.onion.commands import CellAead, CircuitSetup
from zmesh.sansio.wire import (
    AuthenticationFailed,
    LocalProtocolError,
    MalformedInput,
    RandomSource,
)

__all__ = [
    "KEY_SIZE",
    "RECORD_SIZE",
    "CONFIRM_SIZE",
    "REPLY_AREA_SIZE",
    "HopKeys",
    "ClientHopHandshake",
    "HopResponse",
    "respond",
    "derive_hop_keys",
    "derive_reply_key",
    "wrap_created",
    "unwrap_created",
]

KEY_SIZE: Final = 32
CONFIRM_SIZE: Final = 16  # truncated HMAC-SHA256: 128-bit key confirmation
RECORD_SIZE: Final = KEY_SIZE + CONFIRM_SIZE  # 48: Y | confirm
REPLY_AREA_SIZE: Final = MAX_HOPS * RECORD_SIZE  # 144

SESSION_SALT: Final = b"zmesh-circuit-v1"
KEYS_INFO: Final = b"zmesh circuit keys"
REPLY_SALT: Final = b"zmesh-created-v1"
REPLY_INFO: Final = b"zmesh created reply"
CONFIRM_LABEL: Final = b"zmesh created confirm"
_OKM_SIZE: Final = 5 * KEY_SIZE
_ZERO_NONCE: Final = bytes(16)  # cryptography's ChaCha20 nonce: 4-byte counter + 12-byte nonce


@dataclass(frozen=True)
class HopKeys:
    """The symmetric keys one hop shares with the client. Never logged (``repr`` hides them)."""

    forward_key: bytes = field(repr=False)
    backward_key: bytes = field(repr=False)
    forward_pad_key: bytes = field(repr=False)
    backward_pad_key: bytes = field(repr=False)
    confirm_key: bytes = field(repr=False)
    aead: CellAead = CellAead.CHACHA20_POLY1305


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    # RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM).
    return hmac.new(salt, ikm, sha256).digest()


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def transcript(client_public: bytes, hop_public: bytes, setup: CircuitSetup) -> bytes:
    """What the keys and the confirmation MAC are bound to (T in the module docstring)."""
    return client_public + hop_public + setup.circuit_tag + bytes((setup.flags,))


def derive_hop_keys(
    dh_secret: bytes, sphinx_secret: bytes, transcript_bytes: bytes, aead: CellAead
) -> HopKeys:
    prk = _hkdf_extract(SESSION_SALT, dh_secret + sphinx_secret)
    okm = _hkdf_expand(prk, KEYS_INFO + transcript_bytes, _OKM_SIZE)
    return HopKeys(
        forward_key=okm[0:32],
        backward_key=okm[32:64],
        forward_pad_key=okm[64:96],
        backward_pad_key=okm[96:128],
        confirm_key=okm[128:160],
        aead=aead,
    )


def derive_reply_key(sphinx_secret: bytes) -> bytes:
    """Key of the hop's CREATED stream layer; from the Sphinx secret so the client can peel
    the layer before it knows the hop's share."""
    return _hkdf_expand(_hkdf_extract(REPLY_SALT, sphinx_secret), REPLY_INFO, KEY_SIZE)


def _confirmation(confirm_key: bytes, transcript_bytes: bytes) -> bytes:
    return hmac.new(confirm_key, CONFIRM_LABEL + transcript_bytes, sha256).digest()[:CONFIRM_SIZE]


def _exchange(private: X25519PrivateKey, public: bytes) -> bytes:
    # cryptography refuses an all-zero result (a low-order point): the exchange is degenerate.
    return private.exchange(X25519PublicKey.from_public_bytes(public))


@dataclass(frozen=True)
class HopResponse:
    """What a hop keeps after answering a CircuitSetup."""

    keys: HopKeys
    record: bytes = field(repr=False)  # Y | confirm, goes into the CREATED body
    reply_key: bytes = field(repr=False)


def respond(setup: CircuitSetup, sphinx_secret: bytes, random: RandomSource) -> HopResponse:
    """Hop side: make an ephemeral key, derive the cell keys, build the reply record.

    Raises :class:`MalformedInput` when the client's share is a low-order point.
    """
    private = X25519PrivateKey.from_private_bytes(random(KEY_SIZE))
    hop_public = private.public_key().public_bytes_raw()
    try:
        dh = _exchange(private, setup.ephemeral_public_key)
    except ValueError:
        raise MalformedInput("CircuitSetup ephemeral key is a low-order point") from None
    t = transcript(setup.ephemeral_public_key, hop_public, setup)
    keys = derive_hop_keys(dh, sphinx_secret, t, setup.aead)
    record = hop_public + _confirmation(keys.confirm_key, t)
    return HopResponse(keys=keys, record=record, reply_key=derive_reply_key(sphinx_secret))


class ClientHopHandshake:
    """Client side of one hop's exchange: holds the ephemeral private key until CREATED."""

    __slots__ = ("_private", "setup")

    def __init__(self, *, is_exit: bool, aead: CellAead, random: RandomSource) -> None:
        self._private = X25519PrivateKey.from_private_bytes(random(KEY_SIZE))
        self.setup = CircuitSetup(
            ephemeral_public_key=self._private.public_key().public_bytes_raw(),
            is_exit=is_exit,
            aead=aead,
            circuit_tag=random(4),
        )

    def __repr__(self) -> str:
        return f"ClientHopHandshake(is_exit={self.setup.is_exit}, aead={self.setup.aead.name})"

    def finish(self, sphinx_secret: bytes, record: bytes) -> HopKeys:
        """Check the hop's record and derive the cell keys; :class:`AuthenticationFailed` if
        the share is degenerate or the confirmation does not verify."""
        if len(record) != RECORD_SIZE:
            raise LocalProtocolError(f"reply record must be {RECORD_SIZE} bytes")
        hop_public, confirm = record[:KEY_SIZE], record[KEY_SIZE:]
        try:
            dh = _exchange(self._private, hop_public)
        except ValueError:
            raise AuthenticationFailed("hop share is a low-order point") from None
        t = transcript(self.setup.ephemeral_public_key, hop_public, self.setup)
        keys = derive_hop_keys(dh, sphinx_secret, t, self.setup.aead)
        if not hmac.compare_digest(confirm, _confirmation(keys.confirm_key, t)):
            raise AuthenticationFailed("CREATED key confirmation does not verify")
        return keys


def _reply_stream(reply_key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    encryptor = Cipher(algorithms.ChaCha20(reply_key, _ZERO_NONCE), None).encryptor()
    return encryptor.update(data)


def wrap_created(
    reply_key: bytes,
    record: bytes,
    inner_body: bytes | memoryview | None,
    random: RandomSource,
) -> bytes:
    """Add one hop's layer to a CREATED body (``inner_body`` None: this hop is the last)."""
    if len(record) != RECORD_SIZE:
        raise LocalProtocolError(f"reply record must be {RECORD_SIZE} bytes")
    if inner_body is None:
        # The filler is random, not zero: the client never checks it, and zeros would show
        # through the layers of hops whose keystream a colluding observer knows.
        plain = record + random(BODY_SIZE - RECORD_SIZE)
    else:
        if len(inner_body) != BODY_SIZE:
            raise LocalProtocolError(f"CREATED body must be {BODY_SIZE} bytes")
        plain = record + bytes(inner_body[: BODY_SIZE - RECORD_SIZE])
    return _reply_stream(reply_key, plain)


def unwrap_created(reply_keys: Sequence[bytes], body: bytes | memoryview) -> list[bytes]:
    """Client side: peel every hop's layer and return the hops' records, first hop first."""
    if len(reply_keys) > MAX_HOPS:
        raise LocalProtocolError(f"at most {MAX_HOPS} hops")
    if len(body) != BODY_SIZE:
        raise MalformedInput(f"CREATED body of {len(body)} bytes, expected {BODY_SIZE}")
    records: list[bytes] = []
    # Only the first records-worth of each layer matters; deeper bytes are other hops' layers.
    current = bytes(body[: len(reply_keys) * RECORD_SIZE])
    for key in reply_keys:
        plain = _reply_stream(key, current)
        records.append(plain[:RECORD_SIZE])
        current = plain[RECORD_SIZE:]
    return records
