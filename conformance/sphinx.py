"""Sphinx conformance: ``python -m conformance sphinx [FILE ...]``.

Two vector layouts are recognised:

- **Katzenpost unwrap vectors** (a JSON list of ``{Nodes, Path, Packets, Payload, Surb,
  SurbKeys}``, katzenpost/katzenpost ``core/sphinx/testdata/sphinx_vectors.json``), checked
  with :data:`KATZENPOST_GEOMETRY`. One check per hop transition: the MAC verifies with node i's
  key, the parsed commands equal ``Path[i].Commands``, the next hop id is ``Path[i+1].ID`` (none
  at the last hop), and the forwarded header equals ``Packets[i+1][:header_length]``.
- **zmesh creation vectors** (``{"geometry", "cases": [...]}``, written by
  ``conformance/make_sphinx_vectors.py``). Per case one creation check (the recorded random
  bytes reproduce the header and the per-hop shared secrets byte for byte) and one check per hop
  (shared secret, replay tag, commands, next hop and forwarded header).
"""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from zmesh.sansio.onion.commands import decode_commands
from zmesh.sansio.onion.sphinx import (
    KATZENPOST_GEOMETRY,
    Geometry,
    PathHop,
    create_header,
    unwrap_header,
)
from zmesh.sansio.wire import ProtocolError

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parent
SHARED_KATZENPOST = _REPO.parent / "shared" / "vectors" / "katzenpost-sphinx-unwrap.json"
ZMESH_CREATE = _HERE / "vectors" / "sphinx-zmesh-create.json"

DEFAULT_FILES: list[pathlib.Path] = [SHARED_KATZENPOST, ZMESH_CREATE]

_NOT_CHECKED_KATZENPOST = (
    "not checked: the AEZ-encrypted payload (Packets[i][476:], final Payload) and SURB payload "
    "decryption (Surb, SurbKeys): zmesh has no AEZ; only the 476-byte headers are compared"
)
_NOT_CHECKED_ZMESH = "not checked: nothing beyond the header (zmesh Sphinx has no payload)"


def check_file(path: pathlib.Path, out: Callable[[str], None]) -> tuple[int, int]:
    """Check one vector file; return (passed, failed)."""
    if not path.exists():
        if path == SHARED_KATZENPOST:
            out(
                f"{path}: not found, skipped. The shared Katzenpost vectors live beside the "
                "repository in ../shared/vectors/; pass the file explicitly to check it."
            )
        else:
            out(f"{path}: not found")
            return 0, 1
        return 0, 0
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        out(f"{path}: cannot read vectors: {exc}")
        return 0, 1
    if isinstance(data, list):
        return _check_katzenpost(data, out)
    if isinstance(data, dict) and "cases" in data:
        return _check_zmesh(data, out)
    out(f"{path}: unrecognised Sphinx vector layout")
    return 0, 1


def _key(hex_private: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(hex_private))


def _decode_hex_commands(items: list[str]) -> list[Any]:
    return [c for item in items for c in decode_commands(bytes.fromhex(item))]


def _check_katzenpost(cases: list[dict[str, Any]], out: Callable[[str], None]) -> tuple[int, int]:
    geometry = KATZENPOST_GEOMETRY
    length = geometry.header_length
    passed = failed = 0
    for n, case in enumerate(cases):
        nodes, path, packets = case["Nodes"], case["Path"], case["Packets"]
        kind = "SURB reply" if case.get("Surb") else "forward"
        for i, node in enumerate(nodes):
            where = f"case {n} ({kind}, {len(nodes)} hops) hop {i}"
            try:
                problem = _katzenpost_hop(geometry, length, node, path, packets, i)
            except (ProtocolError, ValueError, KeyError, IndexError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                passed += 1
            else:
                failed += 1
                out(f"FAIL {where}: {problem}")
    out(_NOT_CHECKED_KATZENPOST)
    return passed, failed


def _katzenpost_hop(
    geometry: Geometry,
    length: int,
    node: dict[str, str],
    path: list[dict[str, Any]],
    packets: list[str],
    i: int,
) -> str | None:
    packet = bytes.fromhex(packets[i])[:length]
    result = unwrap_header(geometry, _key(node["PrivateKey"]), packet)
    expected = _decode_hex_commands(path[i]["Commands"])
    if list(result.commands) != expected:
        return f"commands {result.commands} != {expected}"
    if i + 1 < len(path):
        if result.next_hop != bytes.fromhex(path[i + 1]["ID"]):
            return "next hop id differs"
        if result.next_header != bytes.fromhex(packets[i + 1])[:length]:
            return "forwarded header differs"
    elif result.next_hop is not None:
        return "last hop has a next hop"
    return None


def _check_zmesh(data: dict[str, Any], out: Callable[[str], None]) -> tuple[int, int]:
    g = data["geometry"]
    geometry = Geometry(g["max_hops"], g["per_hop_routing_info_length"])
    passed = failed = 0
    if geometry.header_length != g.get("header_length", geometry.header_length):
        out(f"FAIL geometry: header_length {g['header_length']} != {geometry.header_length}")
        failed += 1
    for case in data["cases"]:
        name = case.get("name", "?")
        checks: list[tuple[str, Callable[[], str | None]]] = [
            ("create", functools.partial(_zmesh_create, geometry, case))
        ]
        checks += [
            (f"hop {i}", functools.partial(_zmesh_hop, geometry, case, i))
            for i in range(len(case["hops"]))
        ]
        for label, check in checks:
            try:
                problem = check()
            except (ProtocolError, ValueError, KeyError, IndexError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                passed += 1
            else:
                failed += 1
                out(f"FAIL {name} {label}: {problem}")
    out(_NOT_CHECKED_ZMESH)
    return passed, failed


def _zmesh_create(geometry: Geometry, case: dict[str, Any]) -> str | None:
    for node in case["nodes"]:
        public = _key(node["private_key"]).public_key().public_bytes_raw()
        if public.hex() != node["public_key"]:
            return "a node public key does not match its private key"
    path = [
        PathHop(
            bytes.fromhex(hop["id"]),
            bytes.fromhex(hop["public_key"]),
            tuple(_decode_hex_commands(hop["commands"])),
        )
        for hop in case["path"]
    ]
    chunks = [bytes.fromhex(c) for c in case["random"]]

    def replay(size: int) -> bytes:
        if not chunks:
            raise ValueError(f"create_header asked for {size} more random bytes than recorded")
        chunk = chunks.pop(0)
        if len(chunk) != size:
            raise ValueError(f"create_header asked for {size} random bytes, recorded {len(chunk)}")
        return chunk

    created = create_header(geometry, path, replay)
    if chunks:
        return f"{len(chunks)} recorded random chunks were not used"
    if created.header.hex() != case["header"]:
        return "created header differs"
    if [s.hex() for s in created.shared_secrets] != case["shared_secrets"]:
        return "shared secrets differ"
    if case["hops"][0]["header"] != case["header"]:
        return "hops[0].header is not the created header"
    return None


def _zmesh_hop(geometry: Geometry, case: dict[str, Any], i: int) -> str | None:
    hop = case["hops"][i]
    result = unwrap_header(
        geometry, _key(case["nodes"][i]["private_key"]), bytes.fromhex(hop["header"])
    )
    if result.shared_secret.hex() != hop["shared_secret"]:
        return "shared secret differs"
    if result.shared_secret.hex() != case["shared_secrets"][i]:
        return "shared secret differs from the creator's"
    if result.replay_tag.hex() != hop["replay_tag"]:
        return "replay tag differs"
    if list(result.commands) != _decode_hex_commands(hop["commands"]):
        return "commands differ"
    if list(result.commands) != _decode_hex_commands(case["path"][i]["commands"]):
        return "commands differ from the path's"
    expected_next = hop["next_hop"]
    if (result.next_hop.hex() if result.next_hop else None) != expected_next:
        return "next hop differs"
    if i + 1 < len(case["hops"]):
        if result.next_header is None or result.next_header.hex() != case["hops"][i + 1]["header"]:
            return "forwarded header differs"
    elif result.next_header is not None:
        return "last hop forwards a header"
    return None
