"""Sphinx header timings (zmesh geometry) against a same-run X25519 baseline.

``measure()`` returns the figures; ``python bench/_sphinx_timing.py`` prints them as one JSON
object. Times are microseconds per operation, one core, best of several repeats (the
least-disturbed run; the machine is shared).

Keys:
  sphinx_create_us        create_header, 2-hop path, ZMESH_GEOMETRY (CircuitSetup per hop)
  sphinx_create3_us       the same with 3 hops
  sphinx_unwrap_us        unwrap_header at a relay (one hop, forwards a header: 2 X25519 + blind)
  sphinx_unwrap_last_us   unwrap_header at the last hop (no blinding)
  keyring_unwrap_us       SphinxKeyRing.unwrap at a relay (adds the replay-cache work)
  x25519_floor_us         baseline: the X25519 work a relay unwrap cannot avoid (load alpha,
                          exchange, then the blinding multiplication through
                          ``zmesh._accel.x25519.scalarmult``), no Sphinx logic
  x25519_backend          which backend does the blinding (libsodium or cryptography);
                          printed when run as a script
  x25519_exchange_us      baseline: one X25519PrivateKey.exchange with a loaded peer key
  unwrap_overhead_us      sphinx_unwrap_us - x25519_floor_us (KDF, MAC, AES-CTR, ChaCha20,
                          command parsing, Python)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable

try:
    from zmesh.sansio.onion.commands import CellAead, CircuitSetup
except ImportError:  # run from a checkout that is not pip-installed
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from zmesh.sansio.onion.commands import CellAead, CircuitSetup

from _timing import best_seconds
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from zmesh._accel.x25519 import BACKEND as X25519_BACKEND
from zmesh._accel.x25519 import scalarmult
from zmesh.sansio.onion.keyring import SphinxKeyRing
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY, PathHop, create_header, unwrap_header


def _best_us(op: Callable[[], object], min_time: float = 0.02, repeats: int = 15) -> float:
    """Best microseconds per call over ``repeats`` batches of at least ``min_time`` seconds."""
    return best_seconds(op, min_time, repeats) * 1e6


def measure(min_time: float = 0.02, repeats: int = 15) -> dict[str, float]:
    rng = random.Random(1)
    keys = [X25519PrivateKey.from_private_bytes(rng.randbytes(32)) for _ in range(3)]
    ids = [hashlib.sha256(b"bench node %d" % i).digest() for i in range(3)]

    def path(n: int) -> list[PathHop]:
        return [
            PathHop(
                ids[i],
                keys[i].public_key().public_bytes_raw(),
                (CircuitSetup(rng.randbytes(32), i == n - 1, CellAead.CHACHA20_POLY1305, b"tag!"),),
            )
            for i in range(n)
        ]

    two, three = path(2), path(3)
    header = create_header(ZMESH_GEOMETRY, two).header
    forwarded = unwrap_header(ZMESH_GEOMETRY, keys[0], header).next_header
    assert forwarded is not None

    alpha = header[2:34]
    blinding = rng.randbytes(32)

    def floor() -> None:
        peer = X25519PublicKey.from_public_bytes(alpha)
        keys[0].exchange(peer)
        scalarmult(blinding, alpha)

    peer = X25519PublicKey.from_public_bytes(alpha)

    # A fresh header per call: the key ring would (rightly) reject a replay.
    ring = SphinxKeyRing(ZMESH_GEOMETRY, 0.0, replay_capacity=1 << 20)
    ring_key = ring.public_keys(0.0)[0]
    ring_path = [PathHop(ids[0], ring_key, two[0].commands), two[1]]
    pool = [create_header(ZMESH_GEOMETRY, ring_path).header for _ in range(400)]

    def ring_unwrap() -> None:
        if not pool:
            pool.extend(create_header(ZMESH_GEOMETRY, ring_path).header for _ in range(400))
        ring.unwrap(pool.pop(), 0, 1.0)

    figures = {
        "sphinx_create_us": _best_us(lambda: create_header(ZMESH_GEOMETRY, two), min_time, repeats),
        "sphinx_create3_us": _best_us(
            lambda: create_header(ZMESH_GEOMETRY, three), min_time, repeats
        ),
        "sphinx_unwrap_us": _best_us(
            lambda: unwrap_header(ZMESH_GEOMETRY, keys[0], header), min_time, repeats
        ),
        "sphinx_unwrap_last_us": _best_us(
            lambda: unwrap_header(ZMESH_GEOMETRY, keys[1], forwarded), min_time, repeats
        ),
        "keyring_unwrap_us": _best_us(ring_unwrap, min_time, repeats),
        "x25519_floor_us": _best_us(floor, min_time, repeats),
        "x25519_exchange_us": _best_us(lambda: keys[0].exchange(peer), min_time, repeats),
    }
    figures["unwrap_overhead_us"] = figures["sphinx_unwrap_us"] - figures["x25519_floor_us"]
    return {k: round(v, 1) for k, v in figures.items()}


if __name__ == "__main__":
    print(json.dumps({**measure(), "x25519_backend": X25519_BACKEND}))
