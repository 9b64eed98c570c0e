"""GF(256)/GF(16) region multiply-add throughput, every backend against a same-run NumPy baseline.

``measure()`` returns the figures; ``python bench/_gf_timing.py`` prints them as one JSON object.
GB/s counts region bytes (``len(src)``) per second of ``mul_add(dst, src, coef)``, 10^9 bytes,
one core, best of several repeats (the least-disturbed run; the machine is shared).

Keys:
  gf256_backend        the backend ``zmesh.sansio.tetrys.gf256`` picked at import
  gf256_GBps           that backend, 1 MiB regions
  numpy_GBps           NumPy on the same regions: 256-entry product-row gather + XOR
  python_GBps          the pure-Python twin (``bytes.translate`` + big-int XOR)
  <backend>_GBps       each available backend, 1 MiB (e.g. ``avx2_GBps``, ``portable_c_GBps``)
  <backend>_1200B_GBps each backend at a 1200-byte symbol (per-call overhead dominates here)
  multi16_1200B_GBps   ``mul_add_multi`` of 16 sources of 1200 B on the default backend
                       (source bytes per second), the repair-symbol shape
  window64_1024B_GBps  ``mul_add_window`` over 64 symbols of 1 KiB held in one 255-slot
                       buffer (the Tetrys decoder's shape; source bytes per second)
  multi64_1024B_GBps   the same combination through ``mul_add_multi`` (64 separate sources),
                       the same-run baseline for the window entry point
  gf16_GBps            GF(16) ``mul_add`` (both nibbles) on the default backend, 1 MiB
  speedup_vs_numpy     gf256_GBps / numpy_GBps
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

try:
    from zmesh.sansio.tetrys import gf16, gf256
except ImportError:  # run from a checkout that is not pip-installed
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from zmesh.sansio.tetrys import gf16, gf256

from _timing import best_seconds

MIB = 1 << 20
SYMBOL = 1200  # a typical DataChannel payload (MTU-sized symbol)
COEF = 0x8E  # any coefficient outside {0, 1}: both take shortcuts


def _best_rate(op: Callable[[], None], nbytes: int, min_time: float, repeats: int) -> float:
    """Best bytes/s over ``repeats`` batches, each batch lasting at least ``min_time``."""
    return nbytes / best_seconds(op, min_time, repeats)


def _gbps(rate: float) -> float:
    return round(rate / 1e9, 3)


def _numpy_rate(src: bytes, min_time: float, repeats: int) -> float | None:
    try:
        import numpy as np
    except ImportError:
        return None
    row = np.frombuffer(gf256.MUL_TABLES[COEF], dtype=np.uint8)
    s = np.frombuffer(src, dtype=np.uint8)
    d = np.zeros(len(src), dtype=np.uint8)
    scratch = np.empty_like(d)

    def op() -> None:
        # np.take into a preallocated array was the fastest NumPy variant measured
        # (research/tetrys.md §4.3); the XOR is in place.
        np.take(row, s, out=scratch)
        np.bitwise_xor(d, scratch, out=d)

    return _best_rate(op, len(src), min_time, repeats)


def measure(min_time: float = 0.05, repeats: int = 5) -> dict[str, float | str]:
    """Run every figure once; takes about a second with the defaults."""
    src = os.urandom(MIB)
    dst = bytearray(os.urandom(MIB))
    small_src = src[:SYMBOL]
    small_dst = bytearray(dst[:SYMBOL])
    default = gf256.BACKEND
    out: dict[str, float | str] = {"gf256_backend": default}
    try:
        for backend in gf256.available_backends():
            gf256.set_backend(backend)
            key = backend.replace("-", "_")
            out[f"{key}_GBps"] = _gbps(
                _best_rate(lambda: gf256.mul_add(dst, src, COEF), MIB, min_time, repeats)
            )
            out[f"{key}_1200B_GBps"] = _gbps(
                _best_rate(
                    lambda: gf256.mul_add(small_dst, small_src, COEF), SYMBOL, min_time, repeats
                )
            )
    finally:
        gf256.set_backend(default)
    out["gf256_GBps"] = out[f"{default.replace('-', '_')}_GBps"]
    sources = [os.urandom(SYMBOL) for _ in range(16)]
    coefs = list(range(2, 18))
    out["multi16_1200B_GBps"] = _gbps(
        _best_rate(
            lambda: gf256.mul_add_multi(small_dst, sources, coefs),
            16 * SYMBOL,
            min_time,
            repeats,
        )
    )
    window = bytearray(os.urandom(255 * 1024))
    kib_dst = bytearray(1024)
    slots = bytes(range(100, 164))
    coefs64 = bytes(range(2, 66))
    out["window64_1024B_GBps"] = _gbps(
        _best_rate(
            lambda: gf256.mul_add_window(kib_dst, window, 1024, slots, coefs64),
            64 * 1024,
            min_time,
            repeats,
        )
    )
    window_sources = [bytes(window[k * 1024 : (k + 1) * 1024]) for k in slots]
    out["multi64_1024B_GBps"] = _gbps(
        _best_rate(
            lambda: gf256.mul_add_multi(kib_dst, window_sources, coefs64),
            64 * 1024,
            min_time,
            repeats,
        )
    )
    out["gf16_backend"] = gf16.BACKEND
    out["gf16_GBps"] = _gbps(
        _best_rate(lambda: gf16.mul_add(dst, src, 0xB), MIB, min_time, repeats)
    )
    numpy_rate = _numpy_rate(src, min_time, repeats)
    if numpy_rate is not None:
        out["numpy_GBps"] = _gbps(numpy_rate)
        gf = float(out["gf256_GBps"])
        out["speedup_vs_numpy"] = round(gf / float(out["numpy_GBps"]), 1)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(), sort_keys=True))
