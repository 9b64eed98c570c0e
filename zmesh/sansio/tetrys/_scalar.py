"""Scalar arithmetic shared by GF(2^4) and GF(2^8): exp/log tables and the four operations.

Both fields are GF(2)[x] / (p(x)) with generator alpha = 2; only the order and the polynomial
differ, so one builder serves :mod:`gf16` and :mod:`gf256`. The operations are closures over
their tables so a call costs two table lookups and no attribute access.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from zmesh.sansio.wire import LocalProtocolError


class ScalarField(NamedTuple):
    exp: bytes  # EXP[i] = alpha^i for 0 <= i < 2*(order-1): a sum of two logs indexes it directly
    log: bytes  # LOG[a] for a != 0; LOG[0] is 0 and meaningless
    mul_scalar: Callable[[int, int], int]
    div_scalar: Callable[[int, int], int]
    inv: Callable[[int], int]
    pow_alpha: Callable[[int], int]


def scalar_field(order: int, polynomial: int, name: str) -> ScalarField:
    """Tables and operations of GF(``order``) reduced by ``polynomial``, alpha = 2."""
    group = order - 1
    exp_table = bytearray(2 * group)
    log_table = bytearray(order)
    x = 1
    for i in range(group):
        exp_table[i] = x
        log_table[x] = i
        x <<= 1  # multiply by alpha = 2
        if x & order:
            x ^= polynomial
    exp_table[group:] = exp_table[:group]
    exp, log = bytes(exp_table), bytes(log_table)

    def mul_scalar(a: int, b: int) -> int:
        if a == 0 or b == 0:
            return 0
        return exp[log[a] + log[b]]

    def div_scalar(a: int, b: int) -> int:
        if b == 0:
            raise LocalProtocolError(f"division by zero in {name}")
        if a == 0:
            return 0
        return exp[log[a] + group - log[b]]

    def inv(a: int) -> int:
        if not 0 < a < order:
            raise LocalProtocolError(f"{a} has no inverse in {name}")
        return exp[group - log[a]]

    def pow_alpha(exponent: int) -> int:
        return exp[exponent % group]

    mul_scalar.__doc__ = f"``a * b`` in {name}."
    div_scalar.__doc__ = f"``a / b`` in {name}; dividing by 0 raises LocalProtocolError."
    inv.__doc__ = f"The multiplicative inverse of ``a`` in {name}; 0 has none and raises."
    pow_alpha.__doc__ = "``alpha^exponent`` for any integer exponent (Vandermonde coefficients)."
    return ScalarField(exp, log, mul_scalar, div_scalar, inv, pow_alpha)
