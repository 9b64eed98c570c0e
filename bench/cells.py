"""Batch cell kernels (zmesh._accel.cells): C on OpenSSL EVP against the pure-Python twin and
against the per-cell layer classes, in the same run.

``python bench/cells.py`` prints one JSON object. Every figure is microseconds per 1024-byte
cell, one core, best of several calibrated batches (``bench/_timing.py``), on runs of 64 cells
(one WebSocket message's worth), for each cell AEAD:

  c.<kernel>            the C backend (cell_kernels.c), one call per 64-cell run;
                        <kernel>_1cell: one call on a 1-cell run (its fixed cost shows)
  python.<kernel>       the pure-Python twin on ``cryptography``, one call per run
  baseline.<path>       the per-cell classes of zmesh.sansio.onion.layers, 64 calls:
    relay_forward         RelayLayers.pipe(forward) closure (a fresh RelayLayers and pipe
                          per run, since the pipe owns its counter; that set-up, measured
                          alone as pipe_setup_us, is subtracted)
    relay_backward        RelayLayers.pipe(backward) closure (likewise)
    end_seal              ExitLayers.seal_backward_plain
    client_open_2hop      ClientLayers.open_backward_plain on a 2-hop circuit
    client_seal_2hop/3hop ClientLayers.seal_forward on a 2-/3-hop circuit (draws its own pads
                          and filler, 16 bytes per hop and cell, os.urandom)
  pipe_setup_us         forward/backward: one RelayLayers + pipe set-up, per run (not per cell)
  speedup_over_baseline baseline over C (the twin when C is not built); *_vs_twin: the twin over C

Kernels: relay_forward / relay_backward (a middle hop), end_open_1hop (the exit opening
forward cells), end_open_2hop / end_open_3hop (the client opening backward cells),
end_seal (the exit), client_seal_2hop / client_seal_3hop (the client sealing forward cells;
pads and filler given), client_seal_2hop_drawn (the same plus drawing the pads from the
hops' ChaCha20 pad streams and the filler from os.urandom, one call each per run, as
``ClientLayers.seal_forward_run`` does), frame_messages and scan_messages (no crypto:
framing and checking relay messages). relay_forward's pads are given (the caller draws them
from its pad stream, one ChaCha20 call per 64 cells), as in the baseline's pipe they come from
a pre-generated block.
"""

from __future__ import annotations

import json
import os
import random
import struct
import sys
from collections.abc import Callable, Hashable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryptography
from _timing import best_seconds
from cryptography.hazmat.backends.openssl.backend import backend as crypto_backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from zmesh._accel import cells as kernels
from zmesh.sansio.onion.commands import CellAead
from zmesh.sansio.onion.layers import ClientLayers, ExitLayers, RelayLayers
from zmesh.sansio.onion.session import HopKeys

RUN = 64
MIN_TIME = 0.02
ROUNDS = 7
HEADER = struct.pack("!IB", 0x80000007, 3)

Op = Callable[[], object]


def _hop(rng: random.Random, aead: CellAead) -> HopKeys:
    k = [rng.randbytes(32) for _ in range(5)]
    return HopKeys(k[0], k[1], k[2], k[3], k[4], aead)


def _kernel_ops(aead: CellAead, rng: random.Random, impl: str) -> dict[str, Op]:
    """One 64-cell run per call of each kernel of one backend (``python`` or ``c``)."""
    pick = kernels.IMPLEMENTATIONS[impl]
    hops = [_hop(rng, aead) for _ in range(3)]
    bwd = [kernels.CellKey(aead, h.backward_key) for h in hops]
    fwd = kernels.CellKey(aead, hops[0].forward_key)
    lengths = [rng.randrange(kernels.MAX_PAYLOAD + 1) for _ in range(RUN)]
    payloads = rng.randbytes(sum(lengths))
    plains = pick["frame_messages"](1, payloads, lengths, bytes(32))
    pads = rng.randbytes(16 * RUN)
    forward_run = pick["relay_backward"](fwd, 0, rng.randbytes(1024 * RUN), HEADER)
    fwd_keys = [kernels.CellKey(aead, h.forward_key) for h in hops]
    seal_pads = [rng.randbytes(16 * RUN) for _ in range(2)]
    seal_filler = {n: rng.randbytes((32 - 16 * (n - 1)) * RUN) for n in (2, 3)}
    pad_streams = [
        Cipher(algorithms.ChaCha20(h.forward_pad_key, bytes(16)), None).encryptor()
        for h in hops[:1]
    ]

    def client_seal_2hop_drawn() -> object:
        pads = [stream.update(bytes(16 * RUN)) for stream in pad_streams]
        filler = os.urandom(16 * RUN)
        return pick["client_seal"](fwd_keys[:2], 0, plains, pads, filler, HEADER)

    one_hop = pick["end_seal"](bwd[0], 0, plains, HEADER)
    backward_runs = {}
    for n in (2, 3):
        block = pick["end_seal"](bwd[n - 1], 0, plains, HEADER)
        for key in reversed(bwd[: n - 1]):
            block = pick["relay_backward"](key, 0, block, HEADER)
        backward_runs[n] = block
    # Every opening run really verifies (a failing cell would end the run early).
    assert pick["end_open"](bwd[:1], 0, one_hop)[1] == RUN
    assert pick["end_open"](bwd[:2], 0, backward_runs[2])[1] == RUN
    assert pick["end_open"](bwd[:3], 0, backward_runs[3])[1] == RUN
    assert pick["relay_forward"](fwd, 0, forward_run, pads, HEADER)[1] == RUN
    assert pick["scan_messages"](plains, 5)[2] == RUN
    return {
        "relay_forward": lambda: pick["relay_forward"](fwd, 0, forward_run, pads, HEADER),
        "relay_backward": lambda: pick["relay_backward"](fwd, 7, forward_run, HEADER),
        "end_open_1hop": lambda: pick["end_open"](bwd[:1], 0, one_hop),
        "end_open_2hop": lambda: pick["end_open"](bwd[:2], 0, backward_runs[2]),
        "end_open_3hop": lambda: pick["end_open"](bwd[:3], 0, backward_runs[3]),
        "end_seal": lambda: pick["end_seal"](bwd[0], 7, plains, HEADER),
        "client_seal_2hop": lambda: pick["client_seal"](
            fwd_keys[:2], 7, plains, seal_pads[:1], seal_filler[2], HEADER
        ),
        "client_seal_3hop": lambda: pick["client_seal"](
            fwd_keys, 7, plains, seal_pads, seal_filler[3], HEADER
        ),
        "client_seal_2hop_drawn": client_seal_2hop_drawn,
        "frame_messages": lambda: pick["frame_messages"](1, payloads, lengths, bytes(32)),
        "scan_messages": lambda: pick["scan_messages"](plains, 5),
        # Runs of one cell: the fixed cost of a call (validation, output buffer, copy).
        "relay_backward_1cell": lambda: pick["relay_backward"](fwd, 7, forward_run[:1024], HEADER),
        "end_open_1hop_1cell": lambda: pick["end_open"](bwd[:1], 0, one_hop[:1024]),
        "client_seal_2hop_1cell": lambda: pick["client_seal"](
            fwd_keys[:2],
            7,
            plains[: kernels.PLAIN_SIZE],
            [seal_pads[0][:16]],
            seal_filler[2][:16],
            HEADER,
        ),
    }


def _baseline_ops(aead: CellAead, rng: random.Random) -> dict[str, Op]:
    """The same work through the per-cell classes, 64 calls per op."""
    hops = [_hop(rng, aead) for _ in range(2)]
    # Forward cells as the first hop receives them, from the client's own layering.
    client = ClientLayers(hops, os.urandom)
    messages = [rng.randbytes(kernels.PLAIN_SIZE - 32) for _ in range(RUN)]
    forward_cells = [client.seal_forward(m, HEADER) for m in messages]
    exit_layers = ExitLayers(hops[1])
    plain = bytes(32) + messages[0]
    relay0 = RelayLayers(hops[0])
    backward = [
        relay0.backward(exit_layers.seal_backward_plain(bytes(32) + m, HEADER), HEADER)
        for m in messages
    ]
    sink: list[tuple[Hashable, bytes]] = []

    def nothing() -> None:
        return None

    def setup_forward() -> None:
        RelayLayers(hops[0]).pipe(True, HEADER, None, sink.append, nothing)[0]

    def setup_backward() -> None:
        RelayLayers(hops[0]).pipe(False, HEADER, None, sink.append, nothing)[0]

    def relay_forward() -> None:
        pipe = RelayLayers(hops[0]).pipe(True, HEADER, None, sink.append, nothing)[0]
        for cell in forward_cells:
            pipe(cell)  # raises AuthenticationFailed if a cell did not verify
        sink.clear()

    def relay_backward() -> None:
        pipe = RelayLayers(hops[0]).pipe(False, HEADER, None, sink.append, nothing)[0]
        for cell in forward_cells:
            pipe(cell)
        sink.clear()

    def end_seal() -> None:
        seal = exit_layers.seal_backward_plain
        for _ in range(RUN):
            seal(plain, HEADER)

    opener = ClientLayers(hops, os.urandom)

    def client_open_2hop() -> None:
        opener.backward_count = 0
        open_plain = opener.open_backward_plain
        for cell in backward:
            open_plain(cell)

    sealers = {n: ClientLayers([*hops, _hop(rng, aead)][:n], os.urandom) for n in (2, 3)}

    def client_seal(n: int) -> Op:
        def op() -> None:
            seal = sealers[n].seal_forward
            for m in messages:
                seal(m, HEADER)

        return op

    return {
        "relay_forward": relay_forward,
        "relay_backward": relay_backward,
        "end_seal": end_seal,
        "client_open_2hop": client_open_2hop,
        "client_seal_2hop": client_seal(2),
        "client_seal_3hop": client_seal(3),
        "setup_forward": setup_forward,
        "setup_backward": setup_backward,
    }


def _measure(ops: dict[str, Op]) -> dict[str, float]:
    """Seconds per call of each op: the best of ROUNDS rounds, every round timing every op
    once in turn, so the C, twin and baseline figures all see the same load on a shared
    machine."""
    best = dict.fromkeys(ops, float("inf"))
    for _ in range(ROUNDS):
        for name, op in ops.items():
            best[name] = min(best[name], best_seconds(op, MIN_TIME, 1))
    return best


def _per_cell(seconds: float, name: str = "") -> float:
    return round(seconds / (1 if name.endswith("_1cell") else RUN) * 1e6, 3)


def main() -> None:
    rng = random.Random(20261125)
    result: dict[str, object] = {
        "unit": "us per 1024-byte cell",
        "run_cells": RUN,
        "default_backend": kernels.BACKEND,
        "c_openssl": kernels.C_OPENSSL_VERSION,
        "cryptography": cryptography.__version__,
        "cryptography_openssl": crypto_backend.openssl_version_text(),
    }
    for aead in (CellAead.CHACHA20_POLY1305, CellAead.AES_256_GCM):
        ops: dict[str, Op] = {}
        for impl in ("c", "python"):
            if impl in kernels.IMPLEMENTATIONS:
                ops.update({f"{impl}.{k}": v for k, v in _kernel_ops(aead, rng, impl).items()})
        ops.update({f"baseline.{k}": v for k, v in _baseline_ops(aead, rng).items()})
        secs = _measure(ops)
        python = {k[7:]: _per_cell(v, k) for k, v in secs.items() if k.startswith("python.")}
        c = {k[2:]: _per_cell(v, k) for k, v in secs.items() if k.startswith("c.")} or None
        # The relay pipes own their counters, so each baseline run builds a fresh one; that
        # set-up (cipher objects, the first 64-cell pad block), measured alone, is taken off
        # again, which favours the baseline slightly (a real pipe draws a pad block per 64).
        setup = {d: secs[f"baseline.setup_{d}"] for d in ("forward", "backward")}
        baseline = {
            "relay_forward": _per_cell(secs["baseline.relay_forward"] - setup["forward"]),
            "relay_backward": _per_cell(secs["baseline.relay_backward"] - setup["backward"]),
            "end_seal": _per_cell(secs["baseline.end_seal"]),
            "client_open_2hop": _per_cell(secs["baseline.client_open_2hop"]),
            "client_seal_2hop": _per_cell(secs["baseline.client_seal_2hop"]),
            "client_seal_3hop": _per_cell(secs["baseline.client_seal_3hop"]),
        }
        fastest = c or python
        speedup = {
            "relay_forward": baseline["relay_forward"] / fastest["relay_forward"],
            "relay_backward": baseline["relay_backward"] / fastest["relay_backward"],
            "end_seal": baseline["end_seal"] / fastest["end_seal"],
            "end_open_2hop": baseline["client_open_2hop"] / fastest["end_open_2hop"],
            "client_seal_2hop": baseline["client_seal_2hop"] / fastest["client_seal_2hop"],
            "client_seal_3hop": baseline["client_seal_3hop"] / fastest["client_seal_3hop"],
            "client_seal_2hop_drawn": (
                baseline["client_seal_2hop"] / fastest["client_seal_2hop_drawn"]
            ),
        }
        speedup.update(
            {
                f"{k}_vs_twin": python[k] / fastest[k]
                for k in ("end_open_3hop", "frame_messages", "scan_messages")
            }
        )
        result[aead.name.lower()] = {
            "c": c,
            "python": python,
            "baseline": baseline,
            "pipe_setup_us": {d: round(v * 1e6, 3) for d, v in setup.items()},
            "speedup_over_baseline": {k: round(v, 2) for k, v in speedup.items()},
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
