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
from zmesh.sansio.tetrys._scalar import scalar_field

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
_FIELD: Final = scalar_field(ORDER, POLYNOMIAL, "GF(16)")
#: ``EXP[i] = alpha^i`` (two periods, so a sum of two logarithms indexes it directly);
#: ``LOG[a]`` is the discrete logarithm of a != 0 (``LOG[0]`` is 0 and meaningless).
EXP: Final = _FIELD.exp
LOG: Final = _FIELD.log
mul_scalar: Final = _FIELD.mul_scalar
div_scalar: Final = _FIELD.div_scalar
inv: Final = _FIELD.inv
pow_alpha: Final = _FIELD.pow_alpha


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
