"""GF(256) (poly 0x11D): scalar field laws against a bit-by-bit reference, and every region
backend (avx2, ssse3, portable-c, python) against a per-byte reference on random inputs."""

from __future__ import annotations

import array
import contextlib
import os
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.tetrys import gf256
from zmesh.sansio.wire import LocalProtocolError

BACKENDS = gf256.available_backends()


def ref_mul(a: int, b: int) -> int:
    """Carry-less multiply then reduce by 0x11D, bit by bit (independent of EXP/LOG)."""
    acc = 0
    for bit in range(8):
        if b >> bit & 1:
            acc ^= a << bit
    for bit in range(14, 7, -1):
        if acc >> bit & 1:
            acc ^= 0x11D << (bit - 8)
    return acc


def ref_mul_add(dst: bytes, src: bytes, coef: int) -> bytes:
    return bytes(d ^ ref_mul(coef, s) for d, s in zip(dst, src, strict=True))


def fast_ref_mul_add(dst: bytes, src: bytes, coef: int) -> bytes:
    # MUL_TABLES is checked exhaustively against ref_mul below, so this is an independent
    # per-byte reference that is quick enough for hypothesis-sized inputs.
    row = gf256.MUL_TABLES[coef]
    return bytes(d ^ row[s] for d, s in zip(dst, src, strict=True))


@contextlib.contextmanager
def using(name: str) -> Iterator[None]:
    old = gf256.BACKEND
    gf256.set_backend(name)
    try:
        yield
    finally:
        gf256.set_backend(old)


# ---- scalars -------------------------------------------------------------------------------


def test_exp_log_tables() -> None:
    assert len(gf256.EXP) == 510 and len(gf256.LOG) == 256
    assert sorted(gf256.EXP[:255]) == list(range(1, 256))  # alpha = 2 generates the group
    assert gf256.EXP[255:] == gf256.EXP[:255]
    for a in range(1, 256):
        assert gf256.EXP[gf256.LOG[a]] == a
    assert gf256.EXP[8] == 0x1D  # alpha^8 = x^4+x^3+x^2+1 for 0x11D (0x11B would give 0x1B)


def test_mul_scalar_matches_bitwise_reference_exhaustively() -> None:
    for a in range(256):
        row = gf256.MUL_TABLES[a]
        for b in range(256):
            expected = ref_mul(a, b)
            assert gf256.mul_scalar(a, b) == expected
            assert row[b] == expected


def test_inverse_and_division() -> None:
    for a in range(1, 256):
        assert gf256.mul_scalar(a, gf256.inv(a)) == 1
        for b in (1, 2, 0x8E, 255, a):
            assert gf256.mul_scalar(gf256.div_scalar(a, b), b) == a
    assert gf256.div_scalar(0, 7) == 0
    with pytest.raises(LocalProtocolError):
        gf256.inv(0)
    with pytest.raises(LocalProtocolError):
        gf256.inv(256)
    with pytest.raises(LocalProtocolError):
        gf256.div_scalar(5, 0)


elements = st.integers(0, 255)


@given(elements, elements, elements)
@settings(max_examples=200)
def test_field_axioms(a: int, b: int, c: int) -> None:
    m = gf256.mul_scalar
    assert m(a, b) == m(b, a)
    assert m(a, m(b, c)) == m(m(a, b), c)
    assert m(a, b ^ c) == m(a, b) ^ m(a, c)
    assert m(a, 1) == a and m(a, 0) == 0


@pytest.mark.parametrize(
    ("coded_id", "row"),
    [
        (1, [1, 2, 4, 8, 16, 32, 64, 128]),
        (2, [1, 4, 16, 64, 29, 116, 205, 19]),
        (3, [1, 8, 64, 58, 205, 38, 45, 117]),
    ],
)
def test_vandermonde_coefficients(coded_id: int, row: list[int]) -> None:
    # alpha^(src_id * coded_id), the RFC 9407 CCGI-1 construction (shared/research/tetrys.md).
    assert [gf256.pow_alpha(i * coded_id) for i in range(8)] == row
    assert gf256.pow_alpha(255) == 1 and gf256.pow_alpha(-1) == gf256.inv(2)


# ---- regions: every backend ------------------------------------------------------------------


def test_python_backend_always_available() -> None:
    assert BACKENDS[0] == "python"
    assert gf256.BACKEND in BACKENDS


@pytest.mark.parametrize("name", BACKENDS)
def test_region_tables_exhaustive(name: str) -> None:
    """Multiplying the region 0..255 by every coefficient reproduces the whole product table;
    the C tables are computed in C, so this pins them to the Python field."""
    identity = bytes(range(256)) * 3  # 768 bytes: full SIMD blocks, 16-byte and byte tails
    with using(name):
        assert name == gf256.BACKEND
        for c in range(256):
            region = bytearray(identity)
            gf256.mul(region, c)
            assert region == gf256.MUL_TABLES[c] * 3
            acc = bytearray(identity)
            gf256.mul_add(acc, identity, c)
            products = gf256.MUL_TABLES[c] * 3
            assert acc == bytes(x ^ y for x, y in zip(identity, products, strict=True))


@pytest.mark.parametrize("name", BACKENDS)
@given(
    data=st.binary(max_size=700),
    seed=st.binary(min_size=700, max_size=700),
    coef=st.one_of(st.sampled_from([0, 1, 2, 255]), elements),
    offset=st.integers(0, 31),
)
@settings(max_examples=60, deadline=None)
def test_mul_add_matches_reference(
    name: str, data: bytes, seed: bytes, coef: int, offset: int
) -> None:
    n = len(data)
    # Unaligned views of larger buffers: SIMD loads must not assume alignment.
    dst_buf = bytearray(offset) + bytearray(seed[:n]) + bytearray(7)
    src_buf = bytes(31 - offset) + data + bytes(3)
    dst = memoryview(dst_buf)[offset : offset + n]
    src = memoryview(src_buf)[31 - offset : 31 - offset + n]
    with using(name):
        gf256.mul_add(dst, src, coef)
    assert bytes(dst) == fast_ref_mul_add(seed[:n], data, coef)
    assert dst_buf[:offset] == bytes(offset) and dst_buf[offset + n :] == bytes(7)


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.binary(max_size=700), coef=elements, offset=st.integers(0, 31))
@settings(max_examples=60, deadline=None)
def test_mul_matches_reference(name: str, data: bytes, coef: int, offset: int) -> None:
    buf = bytearray(offset) + bytearray(data) + bytearray(5)
    view = memoryview(buf)[offset : offset + len(data)]
    with using(name):
        gf256.mul(view, coef)
    assert bytes(view) == data.translate(gf256.MUL_TABLES[coef])
    assert buf[:offset] == bytes(offset) and buf[offset + len(data) :] == bytes(5)


@pytest.mark.parametrize("name", BACKENDS)
def test_every_length_small(name: str) -> None:
    """Each length 0..300 exercises every tail path (128/64/32/16-byte steps and bytes)."""
    src_all = os.urandom(300)
    dst_all = os.urandom(300)
    with using(name):
        for n in range(301):
            dst = bytearray(dst_all[:n])
            gf256.mul_add(dst, src_all[:n], 0x53)
            assert dst == fast_ref_mul_add(dst_all[:n], src_all[:n], 0x53), n


@pytest.mark.parametrize("name", BACKENDS)
def test_large_region_and_exact_reference(name: str) -> None:
    n = 3 * 4096 + 77  # crosses the C multi-source block size too
    src = os.urandom(n)
    dst0 = os.urandom(n)
    dst = bytearray(dst0)
    with using(name):
        gf256.mul_add(dst, src, 0xC3)
    assert dst == fast_ref_mul_add(dst0, src, 0xC3)
    # Spot-check against the bitwise reference so the test does not lean on MUL_TABLES only.
    assert dst[:64] == ref_mul_add(dst0[:64], src[:64], 0xC3)


@pytest.mark.parametrize("name", BACKENDS)
@given(
    n=st.integers(0, 600),
    coefs=st.lists(elements, max_size=6),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=40, deadline=None)
def test_mul_add_multi_matches_sequential(name: str, n: int, coefs: list[int], seed: int) -> None:
    rng = __import__("random").Random(seed)
    srcs = [rng.randbytes(n) for _ in coefs]
    dst0 = rng.randbytes(n)
    expected = dst0
    for s, c in zip(srcs, coefs, strict=True):
        expected = fast_ref_mul_add(expected, s, c)
    dst = bytearray(dst0)
    with using(name):
        gf256.mul_add_multi(dst, [memoryview(s) for s in srcs], coefs)
    assert dst == expected


@pytest.mark.parametrize("name", BACKENDS)
def test_mul_add_multi_large(name: str) -> None:
    n = 2 * 4096 + 1000
    srcs = [os.urandom(n) for _ in range(5)]
    coefs = [0, 1, 2, 0x8E, 255]
    dst0 = os.urandom(n)
    expected = dst0
    for s, c in zip(srcs, coefs, strict=True):
        expected = fast_ref_mul_add(expected, s, c)
    dst = bytearray(dst0)
    with using(name):
        gf256.mul_add_multi(dst, srcs, bytes(coefs))
    assert dst == expected


@pytest.mark.parametrize("name", BACKENDS)
@given(a=st.binary(min_size=1, max_size=300), c=elements, d=elements)
@settings(max_examples=30, deadline=None)
def test_region_algebra(name: str, a: bytes, c: int, d: int) -> None:
    n = len(a)
    b = bytes(reversed(a))
    with using(name):
        # distributivity over sources: c*a ^ c*b == c*(a^b)
        left = bytearray(n)
        gf256.mul_add(left, a, c)
        gf256.mul_add(left, b, c)
        right = bytearray(n)
        gf256.mul_add(right, bytes(x ^ y for x, y in zip(a, b, strict=True)), c)
        assert left == right
        # distributivity over coefficients: c*a ^ d*a == (c^d)*a
        left = bytearray(n)
        gf256.mul_add(left, a, c)
        gf256.mul_add(left, a, d)
        right = bytearray(n)
        gf256.mul_add(right, a, c ^ d)
        assert left == right
        # inverse: (c * a) * inv(c) == a
        if c:
            region = bytearray(a)
            gf256.mul(region, c)
            gf256.mul(region, gf256.inv(c))
            assert region == a
        # dst may be src itself: a ^= c*a  ==  (1^c)*a
        region = bytearray(a)
        gf256.mul_add(region, region, c)
        expected = bytearray(a)
        gf256.mul(expected, 1 ^ c)
        assert region == expected


@pytest.mark.parametrize("name", BACKENDS)
def test_other_buffer_types(name: str) -> None:
    words = array.array("I", range(100, 132))  # 128 bytes, item size 4
    src = bytearray(os.urandom(128))
    expected = fast_ref_mul_add(words.tobytes(), bytes(src), 7)
    with using(name):
        gf256.mul_add(words, src, 7)
    assert words.tobytes() == expected


@pytest.mark.parametrize("name", BACKENDS)
def test_misuse_raises_and_leaves_dst_intact(name: str) -> None:
    dst = bytearray(b"\x11" * 40)
    src = bytes(range(40))
    bad_calls = [
        lambda: gf256.mul_add(dst, src[:39], 3),  # length mismatch
        lambda: gf256.mul_add(dst, src, 256),  # coefficient out of range
        lambda: gf256.mul_add(dst, src, -1),
        lambda: gf256.mul_add(dst, src, 1.5),  # type: ignore[arg-type]
        lambda: gf256.mul_add(bytes(40), src, 3),  # type: ignore[arg-type]  # read-only dst
        lambda: gf256.mul_add(memoryview(bytearray(80))[::2], src, 3),  # non-contiguous
        lambda: gf256.mul_add(dst, "x" * 40, 3),  # type: ignore[arg-type]
        lambda: gf256.mul(dst, 300),
        lambda: gf256.mul(memoryview(b"abc"), 2),
        lambda: gf256.mul_add_multi(dst, [src, src], [1]),
        lambda: gf256.mul_add_multi(dst, [src, src[:10]], [1, 2]),
        lambda: gf256.mul_add_multi(dst, [src, src], [1, 999]),
        lambda: gf256.mul_add_multi(dst, [src, None], [1, 2]),  # type: ignore[list-item]
    ]
    with using(name):
        for call in bad_calls:
            with pytest.raises(LocalProtocolError):
                call()
            assert dst == b"\x11" * 40


def test_set_backend_rejects_unknown() -> None:
    with pytest.raises(LocalProtocolError):
        gf256.set_backend("gfni")
    assert gf256.BACKEND in BACKENDS


C_BACKENDS = [b for b in BACKENDS if b != "python"]


@pytest.mark.skipif(not C_BACKENDS, reason="C module not built")
@given(
    field=st.sampled_from(["gf256", "gf16"]),
    data=st.binary(max_size=1500),
    coef=elements,
    offset=st.integers(0, 15),
)
@settings(max_examples=60, deadline=None)
def test_c_backends_agree_with_python_twin(field: str, data: bytes, coef: int, offset: int) -> None:
    """The twin is the specification: each C path must reproduce it byte for byte."""
    from zmesh._accel import gf as accel
    from zmesh.sansio.tetrys import gf16

    tables = gf256.MUL_TABLES if field == "gf256" else gf16.MUL_TABLES
    coef %= len(tables)
    twin = accel.region_kernels(field, tables, "python")  # type: ignore[arg-type]
    n = len(data)
    seed = bytes(reversed(data))

    def run(kernels: accel.RegionKernels) -> bytes:
        buf = bytearray(offset) + bytearray(seed)
        view = memoryview(buf)[offset:]
        kernels.mul_add(view, data, coef)
        kernels.mul(view, coef ^ 1)
        kernels.mul_add_multi(view, [data, seed, bytes(n)], [coef, 1, coef ^ 3])
        window = bytes(5) + data + seed  # symbols at offsets 5 and 5 + n: stride n, unaligned
        kernels.mul_add_window(view, memoryview(window)[5:], n, b"\x01\x00", bytes([1, coef]))
        return bytes(view)

    expected = run(twin)
    for name in C_BACKENDS:
        assert run(accel.region_kernels(field, tables, name)) == expected, name  # type: ignore[arg-type]


# ---- mul_add_window: symbols in one buffer, picked by slot ---------------------------------


@pytest.mark.parametrize("name", BACKENDS)
@given(
    n=st.integers(0, 300),
    pad=st.integers(0, 40),
    picks=st.lists(st.tuples(st.integers(0, 9), elements), max_size=12),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=40, deadline=None)
def test_mul_add_window_matches_sequential(
    name: str, n: int, pad: int, picks: list[tuple[int, int]], seed: int
) -> None:
    rng = __import__("random").Random(seed)
    stride = n + pad  # slots may carry unused bytes between symbols
    window = rng.randbytes(10 * stride + n)
    dst0 = rng.randbytes(n)
    expected = dst0
    for slot, coef in picks:  # a slot may repeat: each pick adds its term
        expected = fast_ref_mul_add(expected, window[slot * stride : slot * stride + n], coef)
    slots = bytes(s for s, _ in picks)
    coefs = bytes(c for _, c in picks)
    dst = bytearray(dst0)
    with using(name):
        gf256.mul_add_window(dst, bytearray(window), stride, slots, coefs)
    assert dst == expected


@pytest.mark.parametrize("name", BACKENDS)
def test_mul_add_window_large_symbols(name: str) -> None:
    n = 2 * 4096 + 333  # crosses the C block size
    window = os.urandom(4 * n)
    dst0 = os.urandom(n)
    dst = bytearray(dst0)
    with using(name):
        gf256.mul_add_window(dst, window, n, bytes([3, 0, 2]), bytes([0x8E, 1, 0]))
    expected = fast_ref_mul_add(fast_ref_mul_add(dst0, window[3 * n :], 0x8E), window[:n], 1)
    assert dst == expected


@pytest.mark.parametrize("name", BACKENDS)
def test_mul_add_window_misuse_leaves_dst_intact(name: str) -> None:
    dst = bytearray(b"\x11" * 16)
    window = bytearray(64)
    bad_calls = [
        lambda: gf256.mul_add_window(dst, window, 16, bytes([0, 4]), bytes([1, 2])),  # slot 4
        lambda: gf256.mul_add_window(dst, window, 16, bytes([0, 1]), bytes([1])),
        lambda: gf256.mul_add_window(dst, window, -16, b"\x00", b"\x01"),
        lambda: gf256.mul_add_window(dst, window, 16, [0, 999], [1, 1]),  # type: ignore[arg-type]
        lambda: gf256.mul_add_window(bytes(16), window, 16, b"\x00", b"\x01"),  # type: ignore[arg-type]
        lambda: gf256.mul_add_window(bytearray(65), window, 16, b"\x00", b"\x01"),  # dst > window
    ]
    with using(name):
        for call in bad_calls:
            with pytest.raises(LocalProtocolError):
                call()
            assert dst == b"\x11" * 16
        # lists of ints are accepted where bytes are expected
        gf256.mul_add_window(dst, window, 16, [1], [7])  # type: ignore[arg-type]
        assert dst == b"\x11" * 16  # window is all zero
