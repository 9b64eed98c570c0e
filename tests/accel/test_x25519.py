"""The fast X25519 scalar multiplication used for Sphinx blinding matches cryptography's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh._accel import x25519

# RFC 7748 §5.2, first test vector.
RFC7748_SCALAR = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
RFC7748_POINT = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
RFC7748_OUT = bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")


def test_rfc7748_vector_on_every_backend() -> None:
    assert x25519.scalarmult(RFC7748_SCALAR, RFC7748_POINT) == RFC7748_OUT
    assert x25519.scalarmult_cryptography(RFC7748_SCALAR, RFC7748_POINT) == RFC7748_OUT


def test_low_order_point_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        x25519.scalarmult(RFC7748_SCALAR, bytes(32))
    with pytest.raises(ValueError):
        x25519.scalarmult_cryptography(RFC7748_SCALAR, bytes(32))


@settings(max_examples=200)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_backends_agree(scalar: bytes, point: bytes) -> None:
    def run(f: object) -> bytes | None:
        try:
            return f(scalar, point)  # type: ignore[operator, no-any-return]
        except ValueError:
            return None

    assert run(x25519.scalarmult) == run(x25519.scalarmult_cryptography)
