"""GF(2^8) arithmetic for Tetrys coding coefficients and symbol combination.

Field: GF(2)[x] / (x^8+x^4+x^3+x^2+1), i.e. polynomial 0x11D, the RFC 5510 §8.1 field that
RFC 8681 (sliding-window RLC) and RFC 9407 (Tetrys, CCGI 1: Vandermonde coefficients
``alpha^(i*j)``) use; the generator is alpha = 2. Elements are ints 0..255, addition is XOR.

Scalar helpers (:func:`mul_scalar`, :func:`div_scalar`, :func:`inv`, :func:`pow_alpha`) use the
:data:`EXP` / :data:`LOG` tables. Region operations work on whole symbols in place:

- :func:`mul_add` ``dst ^= coef * src`` (the encoder's and decoder's inner loop),
- :func:`mul` ``dst = coef * dst`` (row normalisation in Gaussian elimination),
- :func:`mul_add_multi` ``dst ^= sum(coefs[k] * srcs[k])`` in one call, which is what a repair
  symbol over a whole window needs; on the C backends it is cache-blocked and saves the Python
  call overhead per source.

They run on the backend named by :data:`BACKEND` (see :mod:`zmesh._accel.gf`): ``avx2``,
``ssse3``, ``portable-c`` or ``python``, picked once at import (override with the environment
variable ``ZMESH_GF_BACKEND`` or :func:`set_backend`). All backends give identical results.
``src`` may be the very same buffer as ``dst``, but must not partially overlap it.

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
    "mul_add",
    "mul",
    "mul_add_multi",
    "mul_add_window",
    "set_backend",
    "available_backends",
]

POLYNOMIAL: Final = 0x11D
GENERATOR: Final = 2
#: Number of field elements; the multiplicative group has ORDER - 1 = 255 elements.
ORDER: Final = 256
_FIELD: Final = scalar_field(ORDER, POLYNOMIAL, "GF(256)")
#: ``EXP[i] = alpha^i`` (two periods, so a sum of two logarithms indexes it directly);
#: ``LOG[a]`` is the discrete logarithm of a != 0 (``LOG[0]`` is 0 and meaningless).
EXP: Final = _FIELD.exp
LOG: Final = _FIELD.log
mul_scalar: Final = _FIELD.mul_scalar
div_scalar: Final = _FIELD.div_scalar
inv: Final = _FIELD.inv
pow_alpha: Final = _FIELD.pow_alpha


#: ``MUL_TABLES[c][x] = c * x``: 256 tables of 256 bytes, the ``bytes.translate`` tables of the
#: pure-Python backend.
MUL_TABLES: Final[tuple[bytes, ...]] = tuple(
    bytes(mul_scalar(c, x) for x in range(ORDER)) for c in range(ORDER)
)

_kernels: _accel.RegionKernels = _accel.region_kernels(
    "gf256", MUL_TABLES, _accel.default_backend()
)
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
    _kernels = _accel.region_kernels("gf256", MUL_TABLES, name)
    BACKEND = _kernels.backend


def mul_add(dst: WritableBuffer, src: Buffer, coef: int) -> None:
    """``dst[i] ^= coef * src[i]`` for every byte, in place.

    ``dst`` is a writable contiguous buffer, ``src`` a bytes-like object of the same length,
    ``coef`` an int in 0..255. Violations raise :class:`LocalProtocolError` before ``dst``
    changes.
    """
    _kernels.mul_add(dst, src, coef)


def mul(dst: WritableBuffer, coef: int) -> None:
    """``dst[i] = coef * dst[i]`` for every byte, in place (``coef`` in 0..255)."""
    _kernels.mul(dst, coef)


def mul_add_multi(dst: WritableBuffer, srcs: Sequence[Buffer], coefs: Sequence[int]) -> None:
    """``dst ^= sum(coefs[k] * srcs[k])``: one call for a whole linear combination.

    Every source must have ``len(dst)`` bytes and ``len(coefs) == len(srcs)``; all arguments
    are checked before ``dst`` changes.
    """
    _kernels.mul_add_multi(dst, srcs, coefs)


def mul_add_window(
    dst: WritableBuffer, window: Buffer, stride: int, slots: bytes, coefs: bytes
) -> None:
    """``dst ^= sum(coefs[k] * window[slots[k]*stride : slots[k]*stride + len(dst)])``.

    The symbols of a combination live in one contiguous buffer (``window``), picked by slot
    number (``slots``: bytes, so at most 256 slots) with one coefficient byte each. This is the
    Tetrys window's entry point: one buffer is pinned per call however many sources there are.
    Every slot is checked against ``len(window)`` before ``dst`` changes
    (:class:`LocalProtocolError`); ``dst`` must not overlap ``window``.
    """
    _kernels.mul_add_window(dst, window, stride, slots, coefs)
