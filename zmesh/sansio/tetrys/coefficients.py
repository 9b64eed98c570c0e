"""Coding coefficients of RFC 9407: the two CCGI fields and their Vandermonde generator.

RFC 9407 identifies how a coded symbol's coefficients are produced by the 4-bit CCGI of the
encoding vector (§5.1.4.1 of the RFC; see ``docs/wire/tetrys.md`` for how sure each value is):

- CCGI 0: Vandermonde-based coefficients over GF(2^4), polynomial x^4+x+1 (RFC 5510 §8.1);
- CCGI 1: Vandermonde-based coefficients over GF(2^8), polynomial x^8+x^4+x^3+x^2+1 (0x11D).

A generated coefficient is ``alpha^((source_id * coded_id) mod (2^m - 1))`` with alpha = 2,
computed on the 32-bit wire identifiers reduced modulo 2^m - 1 first (the product of two 32-bit
IDs must not be formed unreduced). The sequence over source IDs repeats with period
``(2^m - 1) / gcd(coded_id, 2^m - 1)``; :func:`generator_ok` tells the encoder which coded IDs
give distinct coefficients over a window, and explicit coefficients (C = 1) cover the rest.

:class:`Field` wraps the GF engineer's region kernels (:mod:`.gf256`, :mod:`.gf16`) behind one
interface so the codec is written once for both fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Final

from zmesh.sansio.tetrys import gf16, gf256
from zmesh.sansio.wire import MalformedInput

__all__ = [
    "CCGI_GF16",
    "CCGI_GF256",
    "Field",
    "GF16",
    "GF256",
    "field_for_ccgi",
    "generated_coefficient",
    "generated_coefficients",
    "generated_row",
    "generator_ok",
]

CCGI_GF16: Final = 0
CCGI_GF256: Final = 1

Buffer = bytes | bytearray | memoryview


class Field:
    """GF(2^m) as the codec uses it: scalar helpers plus region multiply(-add) on symbols."""

    __slots__ = (
        "_exp",
        "_inv",
        "_module",
        "_multi",
        "_rows",
        "ccgi",
        "cycle",
        "m",
        "mul_tables",
        "order",
    )

    def __init__(self, module: ModuleType, m: int, ccgi: int) -> None:
        self._module = module
        self.m = m
        self.ccgi = ccgi
        self.order = 1 << m
        #: 2^m - 1: the multiplicative group's order, the exponent modulus of the generator.
        self.cycle = self.order - 1
        exp = [1] * self.cycle
        for k in range(1, self.cycle):
            exp[k] = int(module.mul_scalar(exp[k - 1], 2))
        self._exp: tuple[int, ...] = tuple(exp)
        self._inv: tuple[int, ...] = (0, *(int(module.inv(a)) for a in range(1, self.order)))
        self._multi = getattr(module, "mul_add_multi", None)
        #: mul_tables[a][b] = a * b for field elements a, b (the module's translate tables:
        #: for GF(16) they multiply both nibbles, and an element sits in the low one)
        self.mul_tables: tuple[bytes, ...] = tuple(module.MUL_TABLES)
        # generated coefficient rows by coded-ID residue, built on first use (see generated_row)
        self._rows: list[bytes | None] = [None] * self.cycle

    def __repr__(self) -> str:
        return f"Field(GF(2^{self.m}), ccgi={self.ccgi})"

    @property
    def backend(self) -> str:
        return str(getattr(self._module, "BACKEND", "unknown"))

    def alpha_power(self, k: int) -> int:
        return self._exp[k % self.cycle]

    def mul_scalar(self, a: int, b: int) -> int:
        return int(self._module.mul_scalar(a, b))

    def inv(self, a: int) -> int:
        return self._inv[a]

    def mul_add(self, dst: bytearray | memoryview, src: Buffer, coef: int) -> None:
        """``dst ^= coef * src``."""
        self._module.mul_add(dst, src, coef)

    def mul(self, dst: bytearray | memoryview, coef: int) -> None:
        """``dst = coef * dst`` in place."""
        self._module.mul(dst, coef)

    def mul_add_multi(
        self, dst: bytearray | memoryview, srcs: Sequence[Buffer], coefs: Sequence[int]
    ) -> None:
        """``dst ^= sum(coefs[k] * srcs[k])`` in one kernel call where the backend has one."""
        if self._multi is not None:
            self._multi(dst, srcs, coefs)
            return
        for src, coef in zip(srcs, coefs, strict=True):
            self._module.mul_add(dst, src, coef)

    def mul_add_window(
        self, dst: bytearray | memoryview, window: Buffer, stride: int, slots: bytes, coefs: bytes
    ) -> None:
        """``dst ^= sum(coefs[k] * window[slots[k] * stride ...])``: one kernel call."""
        self._module.mul_add_window(dst, window, stride, slots, coefs)


GF16: Final = Field(gf16, 4, CCGI_GF16)
GF256: Final = Field(gf256, 8, CCGI_GF256)
_BY_CCGI: Final = {CCGI_GF16: GF16, CCGI_GF256: GF256}


def field_for_ccgi(ccgi: int) -> Field:
    """The field a CCGI names; other CCGI values are not defined by RFC 9407."""
    try:
        return _BY_CCGI[ccgi]
    except KeyError:
        raise MalformedInput(f"unsupported CCGI {ccgi}") from None


def generated_coefficient(field: Field, source_id: int, coded_id: int) -> int:
    """``alpha^((source_id * coded_id) mod (2^m - 1))`` on 32-bit wire IDs."""
    q = field.cycle
    return field.alpha_power(((source_id % q) * (coded_id % q)) % q)


def generated_coefficients(field: Field, source_ids: Sequence[int], coded_id: int) -> list[int]:
    q = field.cycle
    j = coded_id % q
    exp = field._exp
    return [exp[((i % q) * j) % q] for i in source_ids]


def generated_row(field: Field, first_id: int, coded_id: int, count: int) -> bytes:
    """Generated coefficients of the consecutive wire IDs ``first_id .. first_id + count - 1``.

    The same values as :func:`generated_coefficients`, as one slice of a cached table: over
    consecutive IDs the exponent ``(i mod q) * j`` steps through the residues in order, so the
    row for coded-ID residue j, repeated, holds every contiguous run. The IDs must not cross
    the 2^32 wrap (their residues restart there) and ``count`` is at most 256.
    """
    q = field.cycle
    j = coded_id % q
    row = field._rows[j]
    if row is None:
        exp = field._exp
        one = bytes(exp[(r * j) % q] for r in range(q))
        # long enough for any start residue (< q) plus 256 IDs
        row = (one * (1 + (q + 256) // q))[: q + 256]
        field._rows[j] = row
    start = first_id % q
    return row[start : start + count]


def generator_ok(field: Field, source_ids: Sequence[int]) -> bool:
    """True if generated coefficients can separate ``source_ids`` (32-bit wire IDs).

    Source ID i enters row j as ``x_i^j`` with ``x_i = alpha^(i mod q)``, q = 2^m - 1. Rows with
    consecutive coded IDs j0 .. j0+n-1 over n unknown symbols form ``diag(x^j0)`` times a
    Vandermonde matrix, invertible exactly when the x_i are distinct, i.e. when the IDs'
    residues mod q are. So the encoder numbers coded symbols consecutively and uses generated
    coefficients only when the residues are distinct. They are not when the window holds more
    than q IDs, nor across the 2^32 wrap: 2^32 = 1 (mod 255 and mod 15), so IDs 0xFFFFFFFF
    and 0 share residue 0. Such windows get explicit coefficients. (Rows whose coded IDs are
    not consecutive, after coded packets were lost, can still be dependent; the decoder keeps
    what it can use and the feedback asks for more.)
    """
    q = field.cycle
    residues = {i % q for i in source_ids}
    return len(residues) == len(source_ids)
