"""GF(16) (x^4+x+1), two elements per byte: scalar laws against a bitwise reference, and every
region backend against a per-nibble reference on random inputs."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.tetrys import gf16
from zmesh.sansio.wire import LocalProtocolError

BACKENDS = gf16.available_backends()
elements = st.integers(0, 15)


def ref_mul(a: int, b: int) -> int:
    acc = 0
    for bit in range(4):
        if b >> bit & 1:
            acc ^= a << bit
    for bit in range(6, 3, -1):
        if acc >> bit & 1:
            acc ^= 0x13 << (bit - 4)
    return acc


def ref_mul_byte(c: int, byte: int) -> int:
    return ref_mul(c, byte >> 4) << 4 | ref_mul(c, byte & 15)


@functools.cache
def ref_row(coef: int) -> bytes:
    return bytes(ref_mul_byte(coef, b) for b in range(256))


def ref_mul_add(dst: bytes, src: bytes, coef: int) -> bytes:
    row = ref_row(coef)
    return bytes(d ^ row[s] for d, s in zip(dst, src, strict=True))


@contextlib.contextmanager
def using(name: str) -> Iterator[None]:
    old = gf16.BACKEND
    gf16.set_backend(name)
    try:
        yield
    finally:
        gf16.set_backend(old)


def test_tables_and_scalars_exhaustive() -> None:
    assert sorted(gf16.EXP[:15]) == list(range(1, 16))
    assert gf16.EXP[15:] == gf16.EXP[:15]
    for a in range(16):
        for b in range(16):
            assert gf16.mul_scalar(a, b) == ref_mul(a, b)
        if a:
            assert gf16.mul_scalar(a, gf16.inv(a)) == 1
            assert gf16.div_scalar(gf16.mul_scalar(a, 7), 7) == a
    for c in range(16):
        assert gf16.MUL_TABLES[c] == bytes(ref_mul_byte(c, b) for b in range(256))
    with pytest.raises(LocalProtocolError):
        gf16.inv(0)
    with pytest.raises(LocalProtocolError):
        gf16.div_scalar(1, 0)
    assert gf16.unpack(gf16.pack(0xA, 0x3)) == (0xA, 0x3)


@given(elements, elements, elements)
@settings(max_examples=100)
def test_field_axioms(a: int, b: int, c: int) -> None:
    m = gf16.mul_scalar
    assert m(a, b) == m(b, a)
    assert m(a, m(b, c)) == m(m(a, b), c)
    assert m(a, b ^ c) == m(a, b) ^ m(a, c)


def test_vandermonde_coefficients() -> None:
    # shared/research/tetrys.md §1.6: CCGI 0 rows; coded_id 3 repeats with period 5.
    assert [gf16.pow_alpha(i) for i in range(8)] == [1, 2, 4, 8, 3, 6, 12, 11]
    assert [gf16.pow_alpha(3 * i) for i in range(8)] == [1, 8, 12, 10, 15, 1, 8, 12]


@pytest.mark.parametrize("name", BACKENDS)
def test_region_tables_exhaustive(name: str) -> None:
    identity = bytes(range(256)) * 3
    with using(name):
        assert name == gf16.BACKEND
        for c in range(16):
            region = bytearray(identity)
            gf16.mul(region, c)
            assert region == gf16.MUL_TABLES[c] * 3
            acc = bytearray(identity)
            gf16.mul_add(acc, identity, c)
            assert acc == ref_mul_add(identity, identity, c)


@pytest.mark.parametrize("name", BACKENDS)
@given(
    data=st.binary(max_size=600),
    seed=st.binary(min_size=600, max_size=600),
    coef=elements,
    offset=st.integers(0, 31),
)
@settings(max_examples=50, deadline=None)
def test_mul_add_matches_reference(
    name: str, data: bytes, seed: bytes, coef: int, offset: int
) -> None:
    n = len(data)
    dst_buf = bytearray(offset) + bytearray(seed[:n]) + bytearray(3)
    dst = memoryview(dst_buf)[offset : offset + n]
    with using(name):
        gf16.mul_add(dst, data, coef)
        assert bytes(dst) == ref_mul_add(seed[:n], data, coef)
        gf16.mul(dst, coef)
        assert bytes(dst) == ref_mul_add(bytes(n), ref_mul_add(seed[:n], data, coef), coef)
    assert dst_buf[:offset] == bytes(offset) and dst_buf[offset + n :] == bytes(3)


@pytest.mark.parametrize("name", BACKENDS)
def test_multi_every_length_and_inverse(name: str) -> None:
    src_all = [os.urandom(9000) for _ in range(3)]
    dst_all = os.urandom(9000)
    coefs = [1, 0, 9]
    with using(name):
        for n in [*range(0, 140), 4096, 8999]:
            srcs = [s[:n] for s in src_all]
            dst = bytearray(dst_all[:n])
            gf16.mul_add_multi(dst, srcs, coefs)
            expected = dst_all[:n]
            for s, c in zip(srcs, coefs, strict=True):
                expected = ref_mul_add(expected, s, c)
            assert dst == expected, n
            for c in range(1, 16):
                region = bytearray(srcs[0])
                gf16.mul(region, c)
                gf16.mul(region, gf16.inv(c))
                assert region == srcs[0]


@pytest.mark.parametrize("name", BACKENDS)
def test_misuse_raises_and_leaves_dst_intact(name: str) -> None:
    dst = bytearray(b"\x5a" * 33)
    src = bytes(33)
    with using(name):
        for call in (
            lambda: gf16.mul_add(dst, src, 16),  # a GF(256) coefficient is not a GF(16) one
            lambda: gf16.mul_add(dst, src[:1], 3),
            lambda: gf16.mul(dst, -2),
            lambda: gf16.mul_add_multi(dst, [src], [17]),
            lambda: gf16.mul_add(b"\x00" * 33, src, 3),  # type: ignore[arg-type]
        ):
            with pytest.raises(LocalProtocolError):
                call()
            assert dst == b"\x5a" * 33


@pytest.mark.parametrize("name", BACKENDS)
def test_mul_add_window_matches_sequential(name: str) -> None:
    n, stride = 77, 80
    window = os.urandom(6 * stride)
    dst0 = os.urandom(n)
    slots, coefs = bytes([5, 0, 2, 5]), bytes([3, 15, 0, 1])
    expected = dst0
    for s, c in zip(slots, coefs, strict=True):
        expected = ref_mul_add(expected, window[s * stride : s * stride + n], c)
    dst = bytearray(dst0)
    with using(name):
        gf16.mul_add_window(dst, window, stride, slots, coefs)
        assert dst == expected
        with pytest.raises(LocalProtocolError):  # 16 is not a GF(16) coefficient
            gf16.mul_add_window(dst, window, stride, b"\x00", b"\x10")
    assert dst == expected
