"""Write ``conformance/vectors/sphinx-zmesh-create.json``: Sphinx creation vectors, zmesh geometry.

Run ``python -m conformance.make_sphinx_vectors`` (or ``python conformance/make_sphinx_vectors.py``)
from the repository root. Deterministic: every key and every random byte is derived from fixed
labels with SHA-256 / SHAKE-256, and the exact bytes ``create_header`` drew from its random source
are recorded in the file so another implementation can reproduce the header byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from zmesh.sansio.onion.commands import CellAead, CircuitSetup, Command, NodeDelay
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY, PathHop, create_header, unwrap_header

OUTPUT = pathlib.Path(__file__).resolve().parent / "vectors" / "sphinx-zmesh-create.json"


def _label(text: str) -> bytes:
    return hashlib.sha256(b"zmesh sphinx vectors v1: " + text.encode()).digest()


def _case(name: str, commands: list[tuple[Command, ...]]) -> dict[str, Any]:
    n = len(commands)
    nodes = []
    path = []
    private_keys = []
    for i in range(n):
        private = X25519PrivateKey.from_private_bytes(_label(f"{name} node {i} key"))
        public = private.public_key().public_bytes_raw()
        node_id = _label(f"{name} node {i} id")
        private_keys.append(private)
        nodes.append(
            {
                "id": node_id.hex(),
                "private_key": private.private_bytes_raw().hex(),
                "public_key": public.hex(),
            }
        )
        path.append(PathHop(node_id, public, commands[i]))

    drawn: list[bytes] = []
    shake = hashlib.shake_256(b"zmesh sphinx vectors v1: " + name.encode() + b" random")
    stream = shake.digest(4096)

    def recorded_random(size: int) -> bytes:
        offset = sum(len(d) for d in drawn)
        chunk = stream[offset : offset + size]
        drawn.append(chunk)
        return chunk

    created = create_header(ZMESH_GEOMETRY, path, recorded_random)
    hops = []
    current: bytes | None = created.header
    for i in range(n):
        assert current is not None
        result = unwrap_header(ZMESH_GEOMETRY, private_keys[i], current)
        hops.append(
            {
                "header": current.hex(),
                "replay_tag": result.replay_tag.hex(),
                "shared_secret": result.shared_secret.hex(),
                "commands": [c.encode().hex() for c in result.commands],
                "next_hop": result.next_hop.hex() if result.next_hop is not None else None,
            }
        )
        current = result.next_header
    assert current is None
    return {
        "name": name,
        "nodes": nodes,
        "path": [
            {
                "id": hop.node_id.hex(),
                "public_key": hop.public_key.hex(),
                "commands": [c.encode().hex() for c in hop.commands],
            }
            for hop in path
        ],
        "random": [chunk.hex() for chunk in drawn],
        "header": created.header.hex(),
        "shared_secrets": [s.hex() for s in created.shared_secrets],
        "hops": hops,
    }


def _setup(name: str, i: int, is_exit: bool, aead: CellAead) -> CircuitSetup:
    return CircuitSetup(
        ephemeral_public_key=X25519PrivateKey.from_private_bytes(_label(f"{name} eph {i}"))
        .public_key()
        .public_bytes_raw(),
        is_exit=is_exit,
        aead=aead,
        circuit_tag=_label(f"{name} circuit tag")[:4],
    )


def build() -> dict[str, Any]:
    cases = []
    for name, n, aead in (
        ("2-hop chacha20-poly1305", 2, CellAead.CHACHA20_POLY1305),
        ("2-hop aes-256-gcm", 2, CellAead.AES_256_GCM),
        ("3-hop chacha20-poly1305", 3, CellAead.CHACHA20_POLY1305),
    ):
        commands: list[tuple[Command, ...]] = [
            (_setup(name, i, i == n - 1, aead),) for i in range(n)
        ]
        cases.append(_case(name, commands))
    # A last hop carrying a second command after CircuitSetup (room only exists at the exit).
    name = "2-hop exit with NodeDelay"
    cases.append(
        _case(
            name,
            [
                (_setup(name, 0, False, CellAead.CHACHA20_POLY1305),),
                (_setup(name, 1, True, CellAead.CHACHA20_POLY1305), NodeDelay(250)),
            ],
        )
    )
    g = ZMESH_GEOMETRY
    return {
        "description": (
            "zmesh Sphinx header creation + unwrap vectors (Katzenpost X25519 parameterisation, "
            "zmesh geometry). create_header draws `random` in order: 32-byte client ephemeral "
            "X25519 private key, then (max_hops - hops) * per_hop_routing_info_length bytes of "
            "padding for unused slots (absent for a full-length path). hops[i].header is what "
            "hop i receives; commands exclude NextNodeHop. See docs/wire/sphinx.md."
        ),
        "generator": "python -m conformance.make_sphinx_vectors",
        "geometry": {
            "max_hops": g.max_hops,
            "per_hop_routing_info_length": g.per_hop_routing_info_length,
            "header_length": g.header_length,
        },
        "cases": cases,
    }


def main() -> None:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
