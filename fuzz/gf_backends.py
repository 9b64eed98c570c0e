"""Differential fuzzing of the GF(256)/GF(16) region kernels (atheris).

Every available backend (avx2, ssse3, portable-c) must produce byte-for-byte what the
pure-Python twin produces for ``mul_add``, ``mul`` and ``mul_add_multi``, at any length,
alignment and coefficient; misuse (bad lengths or coefficients) must raise
``LocalProtocolError`` and nothing else, leaving ``dst`` untouched.

Run: ``python fuzz/gf_backends.py -runs=100000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh._accel import gf as accel
        from zmesh.sansio.tetrys import gf16, gf256
        from zmesh.sansio.wire import LocalProtocolError

    fields = {
        "gf256": (256, gf256.MUL_TABLES),
        "gf16": (16, gf16.MUL_TABLES),
    }
    kernels = {
        (field, name): accel.region_kernels(field, tables, name)  # type: ignore[arg-type]
        for field, (_, tables) in fields.items()
        for name in accel.available_backends()
    }

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        field = "gf256" if fdp.ConsumeBool() else "gf16"
        order = fields[field][0]
        op = fdp.ConsumeIntInRange(0, 2)
        # Mostly valid coefficients, sometimes out of range to exercise the error path.
        coef = fdp.ConsumeIntInRange(-2, order + 2)
        offset = fdp.ConsumeIntInRange(0, 31)
        n = fdp.ConsumeIntInRange(0, 2048)
        dst0 = fdp.ConsumeBytes(n).ljust(n, b"\x00")
        src = fdp.ConsumeBytes(n + fdp.ConsumeIntInRange(0, 1))
        extra = [src, dst0[::-1]]
        coefs = [coef, fdp.ConsumeIntInRange(0, order - 1)]

        results: dict[str, bytes | str] = {}
        for name in accel.available_backends():
            k = kernels[(field, name)]
            buf = bytearray(offset) + bytearray(dst0)
            dst = memoryview(buf)[offset:]
            try:
                if op == 0:
                    k.mul_add(dst, src, coef)
                elif op == 1:
                    k.mul(dst, coef)
                else:
                    k.mul_add_multi(dst, extra, coefs)
            except LocalProtocolError:
                if bytes(dst) != dst0:
                    raise AssertionError(f"{name} changed dst before raising") from None
                results[name] = "error"
            else:
                results[name] = bytes(dst)
        if len(set(results.values())) != 1:
            raise AssertionError(f"backends disagree: {sorted(results)} for {field} op {op}")

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
