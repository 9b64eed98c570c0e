"""Region kernels for GF(2^8) and packed GF(2^4): backend choice, C binding, pure-Python twin.

The arithmetic is that of RFC 9407 (Tetrys) §3.2's coding coefficients: GF(2^8) with
x^8+x^4+x^3+x^2+1 (0x11D, RFC 5510 §8.1) and GF(2^4) with x^4+x+1. Field tables and scalar
helpers live in :mod:`zmesh.sansio.tetrys.gf256` / :mod:`zmesh.sansio.tetrys.gf16`, which hand
this module their 256-byte per-coefficient product tables and expose the region operations.

Backends, slowest first (:data:`BACKENDS`):

``python``
    The pure-Python twin and the specification the C kernels are tested against:
    ``src.translate(table[c])`` multiplies every byte at C speed, and the XOR into ``dst`` is one
    XOR of two big integers (``int.from_bytes``). No compiler needed.
``portable-c``
    ``dst[i] ^= table[c][src[i]]`` in C (``gf_kernels.c``).
``ssse3`` / ``avx2``
    Split-nibble PSHUFB kernels, 16 / 32 bytes per shuffle, compiled into the same binary
    with ``target`` attributes and enabled only if the CPU reports the feature.

:func:`default_backend` takes the fastest backend available unless the environment variable
``ZMESH_GF_BACKEND`` names another one (tests and benchmarks use it to pin a path). Reading
that variable once at import is the only contact with the process environment; the region
operations themselves are pure functions of their arguments.

Every operation validates all of its arguments before touching ``dst`` and raises
:class:`~zmesh.sansio.wire.LocalProtocolError` on misuse (length mismatch, coefficient out of
range, read-only or non-contiguous buffer), identically on every backend.
"""

from __future__ import annotations

import functools
import importlib
import logging
import operator
import os
from collections.abc import Sequence
from typing import Any, Final, Literal, NoReturn, Protocol

from zmesh.sansio.wire import LocalProtocolError

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "Buffer",
    "WritableBuffer",
    "RegionKernels",
    "available_backends",
    "best_backend",
    "default_backend",
    "cpu_features",
    "region_kernels",
]

_log = logging.getLogger(__name__)

#: Every backend name, slowest first.
BACKENDS: Final = ("python", "portable-c", "ssse3", "avx2")
#: Environment variable that forces a backend (one of :data:`BACKENDS`).
ENV_VAR: Final = "ZMESH_GF_BACKEND"

Field = Literal["gf256", "gf16"]
#: A source region. Typed as the common cases; at run time any C-contiguous buffer works
#: (array.array, mmap, numpy arrays), measured in bytes.
Buffer = bytes | bytearray | memoryview
#: A region the kernels write into (likewise any writable C-contiguous buffer).
WritableBuffer = bytearray | memoryview

# Backend ids shared with gf_kernels.h (ZM_GF_BACKEND_*).
_C_BACKEND_IDS: Final = {"portable-c": 1, "ssse3": 2, "avx2": 3}
# CPU feature bits from zm_gf_init() (ZM_GF_CPU_*) that each SIMD backend needs.
_CPU_BITS: Final = {"ssse3": 1, "avx2": 2}
_FIELD_ORDER: Final = {"gf256": 256, "gf16": 16}

_ffi: Any = None
_lib: Any = None
_CPU = 0
try:
    _ext: Any = importlib.import_module("zmesh._accel._gf256")
except ImportError:  # built without a C compiler, or not built yet: the twin takes over
    _log.debug("zmesh._accel._gf256 not built; GF region kernels run in pure Python")
else:
    _ffi, _lib = _ext.ffi, _ext.lib
    _CPU = int(_lib.zm_gf_init())


def cpu_features() -> tuple[str, ...]:
    """SIMD features the C module detected (empty without the C module or off x86)."""
    return tuple(name for name, bit in _CPU_BITS.items() if _CPU & bit)


def available_backends() -> tuple[str, ...]:
    """The backends this process can run, slowest first; always starts with ``python``."""
    if _lib is None:
        return ("python",)
    return ("python", "portable-c", *cpu_features())


def best_backend() -> str:
    return available_backends()[-1]


@functools.cache
def default_backend() -> str:
    """``$ZMESH_GF_BACKEND`` if set and available, else :func:`best_backend`.

    Read once per process (both field modules ask), so a bad value is reported once.
    """
    wanted = os.environ.get(ENV_VAR, "").strip()
    if not wanted:
        return best_backend()
    if wanted not in available_backends():
        # A pinned backend that cannot run must not crash every importer; say so loudly and
        # run the best one we have (tests assert on BACKEND when they pin a path).
        _log.warning(
            "%s=%r is not available here (have %s); using %s",
            ENV_VAR,
            wanted,
            ", ".join(available_backends()),
            best_backend(),
        )
        return best_backend()
    return wanted


class RegionKernels(Protocol):
    """The region operations of one field on one backend."""

    @property
    def backend(self) -> str: ...

    def mul_add(self, dst: WritableBuffer, src: Buffer, coef: int) -> None: ...

    def mul(self, dst: WritableBuffer, coef: int) -> None: ...

    def mul_add_multi(
        self, dst: WritableBuffer, srcs: Sequence[Buffer], coefs: Sequence[int]
    ) -> None: ...

    def mul_add_window(
        self, dst: WritableBuffer, window: Buffer, stride: int, slots: bytes, coefs: bytes
    ) -> None: ...


def region_kernels(field: Field, tables: Sequence[bytes], backend: str) -> RegionKernels:
    """Kernels for ``field`` on ``backend``; ``tables[c]`` is the 256-byte product table of c.

    Raises :class:`LocalProtocolError` if ``backend`` is unknown or cannot run here.
    """
    if backend not in BACKENDS:
        raise LocalProtocolError(f"unknown GF backend {backend!r}; expected one of {BACKENDS}")
    if backend not in available_backends():
        raise LocalProtocolError(
            f"GF backend {backend!r} is not available here (have {available_backends()})"
        )
    order = _FIELD_ORDER[field]
    if len(tables) != order or any(len(t) != 256 for t in tables):
        raise LocalProtocolError(f"{field} needs {order} product tables of 256 bytes")
    if backend == "python":
        return _PythonKernels(order, tables)
    return _CKernels(field, order, _C_BACKEND_IDS[backend], backend)


# ---- argument checks shared by both implementations ----------------------------------------


def _coef(coef: int, order: int) -> int:
    try:
        c = operator.index(coef)
    except TypeError as exc:
        raise LocalProtocolError(f"coefficient must be an int, not {type(coef).__name__}") from exc
    if not 0 <= c < order:
        raise LocalProtocolError(f"coefficient {c} out of range 0..{order - 1}")
    return c


def _byte_view(obj: object, what: str, *, writable: bool) -> memoryview:
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError as exc:
        raise LocalProtocolError(f"{what} is not a bytes-like object") from exc
    if writable and view.readonly:
        raise LocalProtocolError(f"{what} is read-only")
    if not view.c_contiguous:
        raise LocalProtocolError(f"{what} is not a contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _length_mismatch(n_dst: int, n_src: int) -> LocalProtocolError:
    return LocalProtocolError(f"src has {n_src} bytes, dst has {n_dst}")


def _check_multi(srcs: Sequence[Buffer], coefs: Sequence[int]) -> None:
    if len(srcs) != len(coefs):
        raise LocalProtocolError(f"{len(srcs)} sources but {len(coefs)} coefficients")


def _window_args(stride: int, slots: object, coefs: object, order: int) -> tuple[bytes, bytes]:
    """Check ``mul_add_window``'s scalar arguments; ``slots``/``coefs`` as bytes."""
    if stride.__class__ is not int or stride < 0:
        raise LocalProtocolError(f"stride must be a non-negative int, not {stride!r}")
    try:
        s = slots if slots.__class__ is bytes else bytes(slots)  # type: ignore[call-overload]
        c = coefs if coefs.__class__ is bytes else bytes(coefs)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"slots and coefs must be bytes (values 0..255): {exc}") from exc
    if len(s) != len(c):
        raise LocalProtocolError(f"{len(s)} slots but {len(c)} coefficients")
    if order < 256 and c and max(c) >= order:
        raise LocalProtocolError(f"coefficient {max(c)} out of range 0..{order - 1}")
    return s, c


def _window_overrun(slot: int) -> LocalProtocolError:
    return LocalProtocolError(f"window slot {slot} lies outside the window buffer")


# ---- the pure-Python twin ------------------------------------------------------------------

# Big-int conversion is linear but slow per byte and cache-unfriendly on megabyte regions;
# working in 32 KiB slices nearly doubles the twin's throughput at 1 MiB (bench/_gf_timing.py).
_PY_CHUNK: Final = 32 * 1024


def _xor_into(d: memoryview, p: bytes | memoryview) -> None:
    """``d ^= p`` (same length) with one big-int XOR per slice."""
    n = len(d)
    for lo in range(0, n, _PY_CHUNK):
        hi = min(n, lo + _PY_CHUNK)
        acc = int.from_bytes(d[lo:hi], "little") ^ int.from_bytes(p[lo:hi], "little")
        d[lo:hi] = acc.to_bytes(hi - lo, "little")


class _PythonKernels:
    __slots__ = ("_order", "_tables")

    def __init__(self, order: int, tables: Sequence[bytes]) -> None:
        self._order = order
        self._tables = tuple(bytes(t) for t in tables)

    @property
    def backend(self) -> str:
        return "python"

    def _product(self, src: memoryview, c: int) -> bytes | memoryview:
        return src if c == 1 else src.tobytes().translate(self._tables[c])

    def mul_add(self, dst: WritableBuffer, src: Buffer, coef: int) -> None:
        d = _byte_view(dst, "dst", writable=True)
        s = _byte_view(src, "src", writable=False)
        c = _coef(coef, self._order)
        if len(s) != len(d):
            raise _length_mismatch(len(d), len(s))
        if c != 0:
            _xor_into(d, self._product(s, c))

    def mul(self, dst: WritableBuffer, coef: int) -> None:
        d = _byte_view(dst, "dst", writable=True)
        c = _coef(coef, self._order)
        if c != 1:
            d[:] = d.tobytes().translate(self._tables[c])

    def mul_add_multi(
        self, dst: WritableBuffer, srcs: Sequence[Buffer], coefs: Sequence[int]
    ) -> None:
        _check_multi(srcs, coefs)
        d = _byte_view(dst, "dst", writable=True)
        n = len(d)
        terms: list[tuple[memoryview, int]] = []
        for i, (src, coef) in enumerate(zip(srcs, coefs, strict=True)):
            s = _byte_view(src, f"srcs[{i}]", writable=False)
            if len(s) != n:
                raise _length_mismatch(n, len(s))
            terms.append((s, _coef(coef, self._order)))
        for lo in range(0, n, _PY_CHUNK):
            hi = min(n, lo + _PY_CHUNK)
            # One accumulator per slice: each term costs a translate and an int XOR, and dst
            # is converted once per slice rather than once per term.
            acc = int.from_bytes(d[lo:hi], "little")
            for s, c in terms:
                if c != 0:
                    acc ^= int.from_bytes(self._product(s[lo:hi], c), "little")
            d[lo:hi] = acc.to_bytes(hi - lo, "little")

    def mul_add_window(
        self, dst: WritableBuffer, window: Buffer, stride: int, slots: bytes, coefs: bytes
    ) -> None:
        s, c = _window_args(stride, slots, coefs, self._order)
        d = _byte_view(dst, "dst", writable=True)
        w = _byte_view(window, "window", writable=False)
        n = len(d)
        if not s or not n:
            return
        for slot in s:
            if slot * stride + n > len(w):
                raise _window_overrun(slot)
        self.mul_add_multi(d, [w[k * stride : k * stride + n] for k in s], c)


# ---- the C module --------------------------------------------------------------------------


def _c_error(what: str, writable: bool, exc: Exception) -> LocalProtocolError:
    kind = "a writable contiguous buffer" if writable else "a contiguous bytes-like object"
    return LocalProtocolError(f"{what} must be {kind}: {exc}")


def _raise_bad_source(srcs: Sequence[object]) -> NoReturn:
    for i, src in enumerate(srcs):
        try:
            _from_u8(src)
        except (TypeError, BufferError, ValueError) as exc:
            raise _c_error(f"srcs[{i}]", False, exc) from exc
    raise AssertionError("a source failed to convert, then converted")  # unreachable


def _from_u8(obj: object) -> Any:
    # Typed as uint8_t[] so the cdata can initialise a `uint8_t *[]` array directly.
    return _ffi.from_buffer("uint8_t[]", obj)


class _CKernels:
    """Thin, allocation-light wrappers: at a 1200-byte symbol the Python side of a call costs
    more than the SIMD work, so the common argument types take the shortest path."""

    __slots__ = (
        "_backend",
        "_id",
        "_mul",
        "_mul_add",
        "_mul_add_multi",
        "_mul_add_window",
        "_order",
    )

    def __init__(self, field: Field, order: int, backend_id: int, backend: str) -> None:
        self._order = order
        self._id = backend_id
        self._backend = backend
        self._mul_add = getattr(_lib, f"zm_{field}_mul_add")
        self._mul = getattr(_lib, f"zm_{field}_mul")
        self._mul_add_multi = getattr(_lib, f"zm_{field}_mul_add_multi")
        self._mul_add_window = getattr(_lib, f"zm_{field}_mul_add_window")

    @property
    def backend(self) -> str:
        return self._backend

    @staticmethod
    def _dst(dst: object) -> Any:
        # ffi.from_buffer pins the buffer (no copy) for the duration of the call and gives its
        # size in bytes. A bytearray is always writable, so it skips the slower
        # require_writable check; anything else must prove it is writable and contiguous.
        try:
            if dst.__class__ is bytearray:
                return _ffi.from_buffer(dst)
            return _ffi.from_buffer(dst, require_writable=True)
        except (TypeError, BufferError, ValueError) as exc:
            raise _c_error("dst", True, exc) from exc

    @staticmethod
    def _src(src: object, what: str) -> Any:
        # cffi passes a bytes object to a `const uint8_t *` parameter as is.
        if src.__class__ is bytes:
            return src
        try:
            return _from_u8(src)
        except (TypeError, BufferError, ValueError) as exc:
            raise _c_error(what, False, exc) from exc

    def mul_add(self, dst: WritableBuffer, src: Buffer, coef: int) -> None:
        # The hot path (bytearray dst, bytes src) is inlined: each helper call costs about a
        # tenth of the whole operation at a 1200-byte symbol.
        d = _ffi.from_buffer(dst) if dst.__class__ is bytearray else self._dst(dst)
        s = src if src.__class__ is bytes else self._src(src, "src")
        if coef.__class__ is not int or not 0 <= coef < self._order:
            coef = _coef(coef, self._order)
        n = len(d)
        if len(s) != n:
            raise _length_mismatch(n, len(s))
        self._mul_add(self._id, d, s, n, coef)

    def mul(self, dst: WritableBuffer, coef: int) -> None:
        d = self._dst(dst)
        if coef.__class__ is not int or not 0 <= coef < self._order:
            coef = _coef(coef, self._order)
        self._mul(self._id, d, len(d), coef)

    def mul_add_multi(
        self, dst: WritableBuffer, srcs: Sequence[Buffer], coefs: Sequence[int]
    ) -> None:
        _check_multi(srcs, coefs)
        d = self._dst(dst)
        n = len(d)
        # The cdata objects in `pinned` keep every source alive until the C call returns.
        try:
            pinned = [_from_u8(src) for src in srcs]
        except (TypeError, BufferError, ValueError):
            _raise_bad_source(srcs)
        for i, s in enumerate(pinned):
            if len(s) != n:
                raise LocalProtocolError(f"srcs[{i}] has {len(s)} bytes, dst has {n}")
        try:
            coef_bytes = bytes(coefs)
        except (TypeError, ValueError):
            coef_bytes = b""  # the loop below names the offending coefficient
        if len(coef_bytes) != len(coefs) or (coef_bytes and max(coef_bytes) >= self._order):
            coef_bytes = bytes(_coef(c, self._order) for c in coefs)
        if pinned and n:
            ptrs = _ffi.new("uint8_t *[]", pinned)
            self._mul_add_multi(self._id, d, ptrs, coef_bytes, len(pinned), n)

    def mul_add_window(
        self, dst: WritableBuffer, window: Buffer, stride: int, slots: bytes, coefs: bytes
    ) -> None:
        # One pin for dst and one for the window, whatever the number of sources: this is the
        # entry point for callers that keep their symbols in one buffer (the Tetrys window).
        if (
            slots.__class__ is not bytes
            or coefs.__class__ is not bytes
            or stride.__class__ is not int
            or stride < 0
            or len(slots) != len(coefs)
            or (self._order < 256 and coefs and max(coefs) >= self._order)
        ):
            slots, coefs = _window_args(stride, slots, coefs, self._order)
        d = _ffi.from_buffer(dst) if dst.__class__ is bytearray else self._dst(dst)
        w = window if window.__class__ is bytes else self._src(window, "window")
        n = len(d)
        if self._mul_add_window(self._id, d, w, len(w), stride, slots, coefs, len(slots), n):
            bad = next(k for k in slots if k * stride + n > len(w))
            raise _window_overrun(bad)
