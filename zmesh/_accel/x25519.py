"""X25519 scalar multiplication for Sphinx blinding, without the wasted public-key computation.

Sphinx blinds with ``X25519(bf, alpha)`` where ``bf`` is a fresh scalar per hop. The only way to
use a raw scalar with ``cryptography`` is ``X25519PrivateKey.from_private_bytes``, and OpenSSL
derives the matching public key on load: a second, useless scalar multiplication that costs as
much as the exchange itself (≈ 35 µs of a ≈ 165 µs unwrap on our machines). libsodium's
``crypto_scalarmult`` (through PyNaCl) does exactly one clamped X25519 multiplication and
rejects an all-zero result, which is the same contract as ``cryptography``'s ``exchange``.

This is not new cryptography: both backends compute RFC 7748 X25519; the tests and the
Katzenpost vectors hold them to the same bytes. ``BACKEND`` says which one is in use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = ["BACKEND", "scalarmult", "scalarmult_cryptography"]


def scalarmult_cryptography(scalar: bytes, point: bytes) -> bytes:
    """X25519(scalar, point) with ``cryptography``; ValueError on a low-order point."""
    return X25519PrivateKey.from_private_bytes(scalar).exchange(
        X25519PublicKey.from_public_bytes(point)
    )


def _load_libsodium() -> Callable[[bytes, bytes], bytes] | None:
    try:
        from nacl.bindings import crypto_scalarmult
        from nacl.exceptions import RuntimeError as NaclRuntimeError
    except ImportError:
        return None

    def scalarmult_libsodium(scalar: bytes, point: bytes) -> bytes:
        try:
            return bytes(crypto_scalarmult(bytes(scalar), bytes(point)))
        except NaclRuntimeError:
            # libsodium refuses an all-zero shared secret (low-order point), as OpenSSL does.
            raise ValueError("X25519 result is all zeros (low-order point)") from None

    return scalarmult_libsodium


_libsodium = _load_libsodium()
BACKEND: Final[str] = "libsodium" if _libsodium is not None else "cryptography"
scalarmult: Final[Callable[[bytes, bytes], bytes]] = (
    _libsodium if _libsodium is not None else scalarmult_cryptography
)
