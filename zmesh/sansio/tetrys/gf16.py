"""GF(2^4) arithmetic for Tetrys coding coefficients (CCGI 0), two elements per byte.

Field: GF(2)[x] / (x^4+x+1), polynomial 0x13 (RFC 5510 §8.1's choice for m = 4), generator
alpha = 2. Elements are ints 0..15, addition is XOR.

Same API as :mod:`zmesh.sansio.tetrys.gf256`. In the region operations every byte of a symbol
holds two independent field elements, its high nibble and its low nibble, and both are
multiplied by ``coef``; so a 1200-byte symbol is 2400 GF(16) elements. The kernels are the
GF(256) ones with different tables: the C ``*_mul_add`` uses a 256-entry byte table per
coefficient (both nibbles at once) and the SIMD paths the same split-nibble PSHUFB trick,
whose two 16-entry tables put ``coef * x`` in the low and the high nibble respectively.

Nothing here reads a clock or draws randomness; the only state is the backend choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from zmesh._accel import gf as _accel
from zmesh._accel.gf import Buffer, WritableBuffer
from zmesh.sansio.wire import LocalProtocolError

__all__ = [
    "POLYNOMIAL",
    "GENERATOR",
    "ORDER",
    "EXP",
    "LOG",
    "MUL_TABLES",
    "BACKEND",
    "mul_scalar",
    "div_scalar",
    "inv",
    "pow_alpha",
    "pack",
    "unpack",
    "mul_add",
    "mul",
    "mul_add_multi",
    "mul_add_window",
    "set_backend",
    "available_backends",
]

POLYNOMIAL: Final = 0x13
GENERATOR: Final = 2
#: Number of field elements; the multiplicative group has ORDER - 1 = 15 elements.
ORDER: Final = 16
_GROUP: Final = ORDER - 1


def _build_exp_log() -> tuple[bytes, bytes]:
    exp = bytearray(2 * _GROUP)
    log = bytearray(ORDER)
    x = 1
    for i in range(_GROUP):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & ORDER:
            x ^= POLYNOMIAL
    exp[_GROUP:] = exp[:_GROUP]
    return bytes(exp), bytes(log)


#: ``EXP[i] = alpha^i`` for 0 <= i < 30 (the second half repeats the first).
#: ``LOG[a]`` for a != 0 (0..14); ``LOG[0]`` is 0 and meaningless.
EXP, LOG = _build_exp_log()


def mul_scalar(a: int, b: int) -> int:
    """``a * b`` in GF(16)."""
    if a == 0 or b == 0:
        return 0
    return EXP[LOG[a] + LOG[b]]


def div_scalar(a: int, b: int) -> int:
    """``a / b`` in GF(16); dividing by 0 raises :class:`LocalProtocolError`."""
    if b == 0:
        raise LocalProtocolError("division by zero in GF(16)")
    if a == 0:
        return 0
    return EXP[LOG[a] + _GROUP - LOG[b]]


def inv(a: int) -> int:
    """The multiplicative inverse of ``a`` (1..15); 0 has none and raises."""
    if not 0 < a < ORDER:
        raise LocalProtocolError(f"{a} has no inverse in GF(16)")
    return EXP[_GROUP - LOG[a]]


def pow_alpha(exponent: int) -> int:
    """``alpha^exponent`` for any integer exponent (the Vandermonde coefficient generator)."""
    return EXP[exponent % _GROUP]


def pack(high: int, low: int) -> int:
    """The byte holding two GF(16) elements."""
    return (high << 4) | low


def unpack(byte: int) -> tuple[int, int]:
    """``(high, low)`` elements of a byte."""
    return byte >> 4, byte & 0x0F


#: ``MUL_TABLES[c][b]`` multiplies both nibbles of byte ``b`` by ``c``: 16 tables of 256 bytes.
MUL_TABLES: Final[tuple[bytes, ...]] = tuple(
    bytes(pack(mul_scalar(c, b >> 4), mul_scalar(c, b & 0x0F)) for b in range(256))
    for c in range(ORDER)
)

_kernels: _accel.RegionKernels = _accel.region_kernels("gf16", MUL_TABLES, _accel.default_backend())
#: The backend in use: ``"avx2"``, ``"ssse3"``, ``"portable-c"`` or ``"python"``.
BACKEND: str = _kernels.backend


def available_backends() -> tuple[str, ...]:
    """Backends that can run in this process, slowest first."""
    return _accel.available_backends()


def set_backend(name: str) -> None:
    """Switch every region operation of this module to backend ``name``.

    Raises :class:`LocalProtocolError` if ``name`` is unknown or cannot run on this machine.
    """
    global _kernels, BACKEND
    _kernels = _accel.region_kernels("gf16", MUL_TABLES, name)
    BACKEND = _kernels.backend


def mul_add(dst: WritableBuffer, src: Buffer, coef: int) -> None:
    """Both nibbles of every byte: ``dst ^= coef * src``, in place (``coef`` in 0..15).

    ``dst`` is a writable contiguous buffer, ``src`` a bytes-like object of the same length.
    Violations raise :class:`LocalProtocolError` before ``dst`` changes.
    """
    _kernels.mul_add(dst, src, coef)


def mul(dst: WritableBuffer, coef: int) -> None:
    """Both nibbles of every byte: ``dst = coef * dst``, in place (``coef`` in 0..15)."""
    _kernels.mul(dst, coef)


def mul_add_multi(dst: WritableBuffer, srcs: Sequence[Buffer], coefs: Sequence[int]) -> None:
    """``dst ^= sum(coefs[k] * srcs[k])`` nibble-wise, in one call."""
    _kernels.mul_add_multi(dst, srcs, coefs)


def mul_add_window(
    dst: WritableBuffer, window: Buffer, stride: int, slots: bytes, coefs: bytes
) -> None:
    """``dst ^= sum(coefs[k] * window[slots[k]*stride ...])`` nibble-wise (see gf256)."""
    _kernels.mul_add_window(dst, window, stride, slots, coefs)
