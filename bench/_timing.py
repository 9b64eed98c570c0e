"""The one timing loop every micro-benchmark here uses: best of several calibrated batches."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(op: Callable[[], object], min_time: float, repeats: int) -> float:
    """Best seconds per call over ``repeats`` batches, each batch lasting at least ``min_time``.

    The batch size doubles until one batch takes ``min_time`` (so timer resolution does not
    matter); the minimum over batches is the figure least disturbed by other load.
    """
    op()  # warm caches, tables and key objects
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            op()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            break
        calls *= 2
    best = elapsed / calls
    for _ in range(repeats - 1):
        start = time.perf_counter()
        for _ in range(calls):
            op()
        best = min(best, (time.perf_counter() - start) / calls)
    return best
