"""Differential fuzzing of the batch cell kernels (zmesh._accel.cells), atheris.

The C backend (cell_kernels.c) and the pure-Python twin must give the same answer for the same
input: identical bytes and verdicts from ``scan_messages`` and the opening functions
(``end_open`` with 1..3 keys, ``relay_forward``) on genuine runs with fuzzer bytes XORed in and
on raw fuzzer bytes, from ``frame_messages``, and identical cells from ``client_seal`` (which
must then open again at every hop); and for misuse (ragged runs, counters off
the 64-bit range, wrong header, pad, prefix or length sizes) both must raise
``LocalProtocolError`` and nothing else. Without the C extension the twin alone is fuzzed for
"nothing but LocalProtocolError".

Targets, chosen by the first input byte:
  0  scan_messages on fuzzer bytes (any length), any n_kinds
  1  end_open on a genuine run (1..3 hops, either AEAD) with fuzzer bytes XORed in
  2  end_open / relay_forward on raw fuzzer bytes, fuzzed counter, header and pads
  3  frame_messages with fuzzed kind, lengths, payload size and prefix size
  4  client_seal with fuzzed hop count (0..4, keys repeated or not), plains, pads (count and
     sizes), filler, counter and header; cells it seals go through relay_forward and end_open

Run: ``python fuzz/cell_kernels.py -runs=100000 -max_len=8192`` (libFuzzer flags pass
through).
"""

from __future__ import annotations

import os
import sys
from typing import Any

U64 = 1 << 64


def main() -> None:
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh._accel import cells as kernels
        from zmesh.sansio.wire import LocalProtocolError

    impls = kernels.IMPLEMENTATIONS

    header = b"\x80\x00\x00\x07\x03"
    keys = {
        aead: [kernels.CellKey(aead, bytes([aead * 16 + j]) * 32) for j in range(3)]
        for aead in (0, 1)
    }
    py = impls["python"]
    # Genuine backward runs of 4 cells at counter 1000, per AEAD and hop count.
    genuine: dict[tuple[int, int], bytes] = {}
    for aead, ks in keys.items():
        plains = py["frame_messages"](1, b"z" * 40, [10, 0, 30, 0], bytes(32))
        for hops in (1, 2, 3):
            block = py["end_seal"](ks[hops - 1], 1000, plains, header)
            for key in reversed(ks[: hops - 1]):
                block = py["relay_backward"](key, 1000, block, header)
            genuine[(aead, hops)] = block
    framed = py["frame_messages"](3, b"q" * 100, [0, 100, 0, 0], bytes(32))

    def both(name: str, *args: Any) -> None:
        outcomes: list[tuple[str, Any]] = []
        for impl in impls.values():
            try:
                outcomes.append(("ok", impl[name](*args)))
            except LocalProtocolError:
                outcomes.append(("misuse", None))
        if any(o != outcomes[0] for o in outcomes):
            raise AssertionError(f"{name}: backends disagree: {outcomes!r:.300}")

    def counter(fdp: Any) -> int:
        choice = fdp.ConsumeIntInRange(0, 2)
        if choice == 0:
            return int(fdp.ConsumeIntInRange(0, 2000))
        if choice == 1:
            return U64 - int(fdp.ConsumeIntInRange(-2, 8))
        return int(fdp.ConsumeInt(9))  # anything, negative included

    def run_bytes(fdp: Any, size: int, base: bytes | None = None) -> bytes:
        """Mostly a whole number of items (so the kernels get past validation), sometimes a
        ragged length; from ``base`` with bytes XORed in, or raw fuzzer bytes."""
        n = fdp.ConsumeIntInRange(0, 4)
        length = n * size + (
            fdp.ConsumeIntInRange(-2, 2) if fdp.ConsumeIntInRange(0, 7) == 0 else 0
        )
        length = max(length, 0)
        if base is None:
            raw: bytes = fdp.ConsumeBytes(length)
            return raw.ljust(length, b"\x00")
        block = bytearray((base * 2)[:length])
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            if block:
                block[fdp.ConsumeIntInRange(0, len(block) - 1)] ^= fdp.ConsumeIntInRange(1, 255)
        return bytes(block)

    def off_by_one(fdp: Any) -> int:
        # Mostly 0 (a size that passes validation), sometimes -1 or +1.
        return int(fdp.ConsumeIntInRange(-1, 1)) if fdp.ConsumeIntInRange(0, 7) == 0 else 0

    def sized(fdp: Any, size: int) -> bytes:
        size = max(0, size + off_by_one(fdp))
        raw: bytes = fdp.ConsumeBytes(size)
        return raw.ljust(size, b"\x00")

    def client_seal(fdp: Any, ks: list[Any]) -> None:
        hops = fdp.ConsumeIntInRange(0, 4)
        keys = (ks * 2)[:hops] if fdp.ConsumeBool() else [ks[0]] * hops  # one key, repeated
        c = counter(fdp) if fdp.ConsumeIntInRange(0, 3) == 0 else fdp.ConsumeIntInRange(0, 99)
        out_header = header if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeBytes(6)
        plains = run_bytes(fdp, kernels.PLAIN_SIZE, framed if fdp.ConsumeBool() else None)
        n = len(plains) // kernels.PLAIN_SIZE
        pads = [sized(fdp, 16 * n) for _ in range(max(hops - 1 + off_by_one(fdp), 0))]
        filler = sized(fdp, n * max(32 - 16 * max(hops - 1, 0), 0))
        both("client_seal", keys, c, plains, pads, filler, out_header)
        py = impls["python"]
        try:
            cells = py["client_seal"](keys, c, plains, pads, filler, out_header)
        except LocalProtocolError:
            return
        # What the client sealed opens again: each relay puts the pad it was given in front.
        for key, pad in zip(keys[:-1], pads, strict=True):
            cells, k = py["relay_forward"](key, c, cells, pad, out_header)
            assert k == n, "a relay failed a client-sealed cell"
        opened, k = py["end_open"](keys[-1:], c, cells)
        assert k == n, "the exit failed a client-sealed cell"
        for i in range(n):
            start, stop = i * kernels.PLAIN_SIZE + 32, (i + 1) * kernels.PLAIN_SIZE
            assert opened[start:stop] == plains[start:stop], "a relay message changed"

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        target = fdp.ConsumeIntInRange(0, 4)
        aead = fdp.ConsumeIntInRange(0, 1)
        ks = keys[aead]
        if target == 0:
            n_kinds = fdp.ConsumeIntInRange(-2, 300)
            base = framed if fdp.ConsumeBool() else None
            both("scan_messages", run_bytes(fdp, kernels.PLAIN_SIZE, base), n_kinds)
        elif target == 1:
            hops = fdp.ConsumeIntInRange(1, 3)
            cells = run_bytes(fdp, kernels.CELL_SIZE, genuine[(aead, hops)])
            both("end_open", ks[:hops], 1000 + fdp.ConsumeIntInRange(-1, 1), cells)
            pads = bytes(16 * (len(cells) // 1024))
            both("relay_forward", ks[0], 1000, cells, pads, header)
        elif target == 2:
            hops = fdp.ConsumeIntInRange(0, 4)
            c = counter(fdp)
            out_header = fdp.ConsumeBytes(5) if fdp.ConsumeBool() else fdp.ConsumeBytes(6)
            cells = run_bytes(fdp, kernels.CELL_SIZE)
            n = len(cells) // 1024
            pads = fdp.ConsumeBytes(16 * n + (0 if fdp.ConsumeBool() else 1)).ljust(16 * n)
            both("end_open", (ks * 2)[:hops], c, cells)
            both("relay_forward", ks[0], c, cells, pads, out_header)
            both("relay_backward", ks[1], c, cells, out_header)
            both("end_seal", ks[2], c, run_bytes(fdp, kernels.PLAIN_SIZE), out_header)
        elif target == 4:
            client_seal(fdp, ks)
        else:
            kind = fdp.ConsumeIntInRange(-1, 256)
            lengths = [fdp.ConsumeIntInRange(-1, 970) for _ in range(fdp.ConsumeIntInRange(0, 4))]
            if fdp.ConsumeBool():
                prefix = fdp.ConsumeBytes(32).ljust(32, b"\x00")
            else:
                prefix = bytes(fdp.ConsumeIntInRange(31, 33))
            extra = 0 if fdp.ConsumeBool() else fdp.ConsumeIntInRange(-3, 3)
            size = max(0, sum(lengths) + extra)
            payloads = fdp.ConsumeBytes(size).ljust(size, b"\x01")
            both("frame_messages", kind, payloads, lengths, prefix)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
