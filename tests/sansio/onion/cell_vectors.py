"""Known-answer vectors for onion cells (docs/wire/cells.md): make them, check them.

``python tests/sansio/onion/cell_vectors.py`` rewrites ``vectors/cells-v1.json``
deterministically; ``test_cell_vectors.py`` checks the file against the implementation. Every
random input (ephemeral keys, circuit tags, fillers) is recorded in the file in the order it is
drawn, so a second implementation can replay them. Sphinx is not part of these vectors (it has
its own, ``conformance/vectors/sphinx-*.json``): each hop's Sphinx shared secret is an input.
"""

from __future__ import annotations

import json
import random
import sys
from collections import deque
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from zmesh.sansio.onion.cells import CELL_HEADER, CellCommand, RelayKind, encode_relay_message
from zmesh.sansio.onion.commands import CellAead
from zmesh.sansio.onion.layers import ClientLayers, ExitLayers, RelayLayers
from zmesh.sansio.onion.session import (
    ClientHopHandshake,
    derive_reply_key,
    respond,
    unwrap_created,
    wrap_created,
)

PATH = Path(__file__).parent / "vectors" / "cells-v1.json"
_RELAY = int(CellCommand.RELAY)


class Replay:
    """A RandomSource that hands out recorded byte strings, checking the lengths asked for."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = deque(chunks)

    def __call__(self, n: int) -> bytes:
        chunk = self._chunks.popleft()
        if len(chunk) != n:
            raise AssertionError(f"asked for {n} random bytes, the vector recorded {len(chunk)}")
        return chunk

    @property
    def exhausted(self) -> bool:
        return not self._chunks


def _header(circuit_id: int) -> bytes:
    return CELL_HEADER.pack(circuit_id, _RELAY)


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Compute every output of one case from its inputs (the dict's ``inputs`` part)."""
    inputs = case["inputs"]
    hops = len(inputs["hops"])
    aead = CellAead[inputs["aead"]]
    ids = inputs["circuit_ids"]  # one per link, client side first
    handshakes = []
    responses = []
    for i, hop in enumerate(inputs["hops"]):
        client_random = Replay(
            [bytes.fromhex(hop["client_ephemeral_private"]), bytes.fromhex(hop["circuit_tag"])]
        )
        hs = ClientHopHandshake(is_exit=i == hops - 1, aead=aead, random=client_random)
        handshakes.append(hs)
        hop_random = Replay([bytes.fromhex(hop["hop_ephemeral_private"])])
        responses.append(respond(hs.setup, bytes.fromhex(hop["sphinx_secret"]), hop_random))
    secrets = [bytes.fromhex(h["sphinx_secret"]) for h in inputs["hops"]]
    # CREATED, from the last hop back to the client: the body on each link.
    body: bytes | None = None
    created = []
    filler = Replay([bytes.fromhex(inputs["created_filler"])])
    for r in reversed(responses):
        body = wrap_created(r.reply_key, r.record, body, filler)
        created.append(body.hex())
    created.reverse()  # link 0 (client side) first
    assert body is not None
    records = unwrap_created([derive_reply_key(s) for s in secrets], body)
    keys = [hs.finish(s, rec) for hs, s, rec in zip(handshakes, secrets, records, strict=True)]
    # Data cells.
    client_random = Replay([bytes.fromhex(f) for f in inputs["client_fillers"]])
    client = ClientLayers(keys, client_random)
    relays = [RelayLayers(k) for k in keys[:-1]]
    exit_ = ExitLayers(keys[-1])
    forward = []
    for message in inputs["forward_messages"]:
        plain = encode_relay_message(RelayKind[message["kind"]], bytes.fromhex(message["payload"]))
        cell = client.seal_forward(plain, _header(ids[0]))
        links = [cell.hex()]
        for i, relay in enumerate(relays):
            cell = relay.forward(cell, _header(ids[i + 1]))
            links.append(cell.hex())
        assert exit_.open_forward(cell) == plain
        forward.append(links)
    backward = []
    for message in inputs["backward_messages"]:
        plain = encode_relay_message(RelayKind[message["kind"]], bytes.fromhex(message["payload"]))
        cell = exit_.seal_backward(plain, _header(ids[-1]))
        links = [cell.hex()]
        for i in range(len(relays) - 1, -1, -1):
            cell = relays[i].backward(cell, _header(ids[i]))
            links.append(cell.hex())
        links.reverse()  # link 0 (client side) first
        assert client.open_backward(cell) == plain
        backward.append(links)
    assert client_random.exhausted
    return {
        "hop_keys": [
            {
                "forward_key": k.forward_key.hex(),
                "backward_key": k.backward_key.hex(),
                "forward_pad_key": k.forward_pad_key.hex(),
                "backward_pad_key": k.backward_pad_key.hex(),
                "confirm_key": k.confirm_key.hex(),
            }
            for k in keys
        ],
        "created_bodies": created,
        "forward_cells": forward,
        "backward_cells": backward,
    }


def _case(seed: int, hops: int, aead: CellAead) -> dict[str, Any]:
    rng = random.Random(seed)
    messages = [("STREAM", rng.randbytes(968)), ("E2E_MESSAGE", b"hello")]
    inputs = {
        "aead": aead.name,
        "circuit_ids": [rng.getrandbits(31) | 1 for _ in range(hops)],
        "hops": [
            {
                "sphinx_secret": rng.randbytes(32).hex(),
                "client_ephemeral_private": rng.randbytes(32).hex(),
                "circuit_tag": rng.randbytes(4).hex(),
                "hop_ephemeral_private": rng.randbytes(32).hex(),
            }
            for _ in range(hops)
        ],
        "created_filler": rng.randbytes(1019 - 48).hex(),
        # One draw per forward cell: the client's filler before the message (32 - 16(n-1) B).
        "client_fillers": [rng.randbytes(32 - 16 * (hops - 1)).hex() for _ in messages],
        "forward_messages": [{"kind": k, "payload": p.hex()} for k, p in messages],
        "backward_messages": [{"kind": k, "payload": p[::-1].hex()} for k, p in messages],
    }
    case: dict[str, Any] = {"description": f"{hops} hops, {aead.name}", "inputs": inputs}
    case["expected"] = run_case(case)
    return case


def make() -> dict[str, Any]:
    return {
        "format": "zmesh onion cells v1 (docs/wire/cells.md); hex strings; links client side first",
        "cases": [
            _case(1, 2, CellAead.CHACHA20_POLY1305),
            _case(2, 3, CellAead.AES_256_GCM),
        ],
    }


if __name__ == "__main__":
    PATH.parent.mkdir(exist_ok=True)
    PATH.write_text(json.dumps(make(), indent=1) + "\n")
    print(f"wrote {PATH}")
