"""Write ``conformance/vectors/cells-v1.json``: onion cell vectors (``docs/wire/cells.md``).

Run ``python -m conformance.make_cell_vectors`` (or ``python conformance/make_cell_vectors.py``)
from the repository root. Deterministic: every key and random byte comes from SHAKE-256 over a
fixed label, so the file is reproduced byte for byte. The inputs of each case are chosen here;
the outputs (``expected``) are computed by running the suite's own stages in order
(:func:`conformance.cells.case_stages`), each stage reading the outputs of the ones before.
The negative checks and their outcomes are written down from the wire document, not computed;
``build`` refuses to return vectors that the suite does not pass.
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

from conformance import cells as suite
from zmesh.sansio.onion.cells import (
    BODY_SIZE,
    CELL_HEADER,
    CELL_SIZE,
    CIRCUIT_ID_HIGH_BIT,
    CREATE_EPOCH_SIZE,
    DATA_SIZE,
    MAX_RELAY_PAYLOAD,
    CellCommand,
    DestroyReason,
    RelayKind,
    encode_relay_message,
)
from zmesh.sansio.onion.session import RECORD_SIZE
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY

OUTPUT = suite.CELLS_V1
_LABEL = b"zmesh cell vectors v1: "
_HEADER_START = CELL_HEADER.size + CREATE_EPOCH_SIZE  # where the Sphinx header sits in a CREATE
_HEADER_END = _HEADER_START + ZMESH_GEOMETRY.header_length


def _bytes(label: str, size: int) -> bytes:
    return hashlib.shake_256(_LABEL + label.encode()).digest(size)


def _circuit_id(label: str, sender: bytes, receiver: bytes) -> int:
    # docs/wire/cells.md §1: the end whose node id sorts lower allocates ids with the high bit.
    value = int.from_bytes(_bytes(label, 4), "big") & ~CIRCUIT_ID_HIGH_BIT or 1
    return value | CIRCUIT_ID_HIGH_BIT if sender < receiver else value


def _inputs(name: str, hops: int, aead: str, forward: list[Any], backward: list[Any]) -> Any:
    g = ZMESH_GEOMETRY
    client_id = _bytes(f"{name} client id", 32)
    node_ids = [_bytes(f"{name} node {i} id", 32) for i in range(hops)]
    senders = [client_id, *node_ids[:-1]]
    hop_inputs = []
    for i in range(hops):
        private = _bytes(f"{name} node {i} sphinx key", 32)
        public = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
        hop_inputs.append(
            {
                "node_id": node_ids[i].hex(),
                "sphinx_private_key": private.hex(),
                "sphinx_public_key": public.hex(),
                "client_ephemeral_private": _bytes(f"{name} client ephemeral {i}", 32).hex(),
                "circuit_tag": _bytes(f"{name} circuit tag {i}", 4).hex(),
                "hop_ephemeral_private": _bytes(f"{name} hop ephemeral {i}", 32).hex(),
            }
        )
    inputs: dict[str, Any] = {
        "aead": aead,
        "epoch": int.from_bytes(_bytes(f"{name} epoch", 2), "big") + 160_000,
        "client_node_id": client_id.hex(),
        "hops": hop_inputs,
        "sphinx_ephemeral_private": _bytes(f"{name} sphinx ephemeral", 32).hex(),
    }
    if hops < g.max_hops:
        unused = (g.max_hops - hops) * g.per_hop_routing_info_length
        inputs["sphinx_padding"] = _bytes(f"{name} sphinx padding", unused).hex()
    padding = BODY_SIZE - CREATE_EPOCH_SIZE - g.header_length
    inputs["links"] = [
        {
            "circuit_id": _circuit_id(f"{name} circuit id {i}", senders[i], node_ids[i]),
            "create_padding": _bytes(f"{name} create padding {i}", padding).hex(),
        }
        for i in range(hops)
    ]
    inputs["created_filler"] = _bytes(f"{name} created filler", BODY_SIZE - RECORD_SIZE).hex()
    filler = 32 - 16 * (hops - 1)  # docs/wire/cells.md §5.5 step 2
    inputs["client_fillers"] = [
        _bytes(f"{name} client filler {m}", filler).hex() for m in range(len(forward))
    ]
    inputs["forward_messages"] = forward
    inputs["backward_messages"] = backward
    return inputs


def _message(kind: RelayKind, payload: bytes, record: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": kind.name, "payload": payload.hex()}
    if record is not None:
        entry["record"] = record
    return entry


def _negatives(hops: int) -> list[dict[str, Any]]:
    """Tampering and replay, with the outcome docs/wire/cells.md §3-§5 promises."""
    last = hops - 1
    created_filler_offset = CELL_HEADER.size + RECORD_SIZE * hops + 10
    out: list[dict[str, Any]] = [
        # CREATE: the Sphinx MAC covers AD, alpha and routing info; the padding is not covered.
        _neg("create_tamper", "routing info", link=0, offset=_HEADER_START + 40, expect="rejected"),
        _neg("create_tamper", "header MAC", link=0, offset=_HEADER_END - 1, expect="rejected"),
        _neg("create_tamper", "alpha", link=last, offset=_HEADER_START + 7, expect="rejected"),
        _neg("create_tamper", "padding", link=0, offset=_HEADER_END + 100, expect="accepted"),
        # CREATED: records are confirmed by the client; the filler is not.
        _neg("created_tamper", "hop 1 confirm", link=0, offset=5 + 40, expect="rejected", layer=1),
        _neg(
            "created_tamper",
            "last hop share",
            link=0,
            offset=5 + RECORD_SIZE * last + 3,
            expect="rejected",
            layer=hops,
        ),
        _neg("created_tamper", "filler", link=0, offset=created_filler_offset, expect="accepted"),
        _neg(
            "created_tamper", "at the exit", link=last, offset=5 + 10, expect="rejected", layer=hops
        ),
        _neg("created_tamper", "dropped tail", link=last, offset=CELL_SIZE - 5, expect="accepted"),
    ]
    for link in range(hops):
        # Forward: the receiving hop authenticates every body byte, pads included.
        out.append(_relay("tamper", "forward", link, offset=5, layer=link + 1))
        out.append(_relay("tamper", "forward", link, offset=CELL_SIZE - 1, layer=link + 1))
        out.append(_relay("replay", "forward", link, message=1, layer=link + 1))
    out.append(_relay("tamper", "forward", 0, message=1, offset=600, layer=1))
    # Backward: the client checks; bytes the next hop drops (body[0:16]) are never seen.
    out.append(_relay("tamper", "backward", 0, offset=5, layer=1))
    out.append(_relay("replay", "backward", 0, message=1, layer=1))
    for link in range(1, hops):
        out.append(_relay("tamper", "backward", link, offset=5 + 3, expect="accepted"))
        out.append(_relay("tamper", "backward", link, offset=600, layer=link + 1))
        out.append(_relay("tamper", "backward", link, offset=CELL_SIZE - 1, layer=link + 1))
    return out


def _neg(kind: str, what: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "name": f"{kind} {what} link {fields['link']}", "xor": 1, **fields}


def _relay(
    kind: str,
    direction: str,
    link: int,
    *,
    message: int = 0,
    offset: int | None = None,
    layer: int | None = None,
    expect: str = "rejected",
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": kind,
        "name": f"{direction} {kind} link {link} message {message}"
        + (f" offset {offset}" if offset is not None else ""),
        "direction": direction,
        "link": link,
        "message": message,
        "expect": expect,
    }
    if offset is not None:
        entry.update(offset=offset, xor=1)
    if layer is not None:
        entry["layer"] = layer
    return entry


def _case(description: str, hops: int, aead: str, long: bool = False) -> dict[str, Any]:
    name = description
    if long:
        # 66 forward cells: the relays' pad streams cross their first 1024-byte block at cell 64.
        forward = [
            _message(RelayKind.STREAM, _bytes(f"{name} f{m}", 16), None if m >= 64 else "sha256")
            for m in range(66)
        ]
        backward = [
            _message(RelayKind.STREAM, _bytes(f"{name} b0", 100)),
            _message(RelayKind.PONG, _bytes(f"{name} b1", 8)),
        ]
    else:
        forward = [
            _message(RelayKind.STREAM, _bytes(f"{name} f0", MAX_RELAY_PAYLOAD)),
            _message(RelayKind.E2E_MESSAGE, b"hello"),
            _message(RelayKind.PING, _bytes(f"{name} f2", 8)),
        ]
        backward = [
            _message(RelayKind.STREAM, _bytes(f"{name} b0", MAX_RELAY_PAYLOAD)),
            _message(RelayKind.PONG, _bytes(f"{name} b1", 8)),
            _message(RelayKind.PADDING, b""),
        ]
    case: dict[str, Any] = {
        "description": description,
        "inputs": _inputs(name, hops, aead, forward, backward),
        "expected": {},
        "negative": _negatives(hops),
    }
    suite.fill_expected(ZMESH_GEOMETRY, case)
    return case


def _cell(circuit_id: int, command: int, body: bytes, size: int = CELL_SIZE) -> str:
    cell = CELL_HEADER.pack(circuit_id, command) + body
    return (cell + bytes(max(0, size - len(cell))))[:size].hex()


def _framing() -> list[dict[str, Any]]:
    random_body = _bytes("framing random body", BODY_SIZE)
    relay = int(CellCommand.RELAY)
    out: list[dict[str, Any]] = [
        {
            "name": "PADDING",
            "cell": _cell(0, CellCommand.PADDING, random_body),
            "circuit_id": 0,
            "command": "PADDING",
        },
        {
            "name": "RELAY",
            "cell": _cell(0x8000_0001, relay, random_body),
            "circuit_id": 0x8000_0001,
            "command": "RELAY",
        },
    ]
    for reason in DestroyReason:
        out.append(
            {
                "name": f"DESTROY {reason.name}",
                "cell": _cell(77, CellCommand.DESTROY, bytes((int(reason),))),
                "circuit_id": 77,
                "command": "DESTROY",
                "destroy_reason": reason.name,
            }
        )
    bad_destroy = bytearray(BODY_SIZE)
    bad_destroy[-1] = 1
    out += [
        {"name": "unknown command 5", "cell": _cell(9, 5, random_body), "error": "MalformedInput"},
        {"name": "unknown command 255", "cell": _cell(9, 255, b""), "error": "MalformedInput"},
        {
            "name": "PADDING with a circuit id",
            "cell": _cell(7, CellCommand.PADDING, b""),
            "error": "MalformedInput",
        },
        {"name": "RELAY on id 0", "cell": _cell(0, relay, random_body), "error": "MalformedInput"},
        {
            "name": "CREATED on id 0",
            "cell": _cell(0, CellCommand.CREATED, random_body),
            "error": "MalformedInput",
        },
        {"name": "empty", "cell": "", "error": "TruncatedInput"},
        {
            "name": "1023 bytes",
            "cell": _cell(9, relay, random_body, CELL_SIZE - 1),
            "error": "TruncatedInput",
        },
        {
            "name": "1025 bytes",
            "cell": _cell(9, relay, random_body + b"\x00", CELL_SIZE + 1),
            "error": "OversizedInput",
        },
        {
            "name": "DESTROY reason 7",
            "cell": _cell(9, CellCommand.DESTROY, b"\x07"),
            "error": "MalformedInput",
        },
        {
            "name": "DESTROY with a non-zero tail",
            "cell": _cell(9, CellCommand.DESTROY, bytes(bad_destroy)),
            "error": "MalformedInput",
        },
    ]
    return out


def _relay_messages() -> list[dict[str, Any]]:
    valid = [
        ("PADDING empty", RelayKind.PADDING, b""),
        ("STREAM one zero byte", RelayKind.STREAM, b"\x00"),
        ("STREAM largest", RelayKind.STREAM, _bytes("relay message max", MAX_RELAY_PAYLOAD)),
        ("E2E_MESSAGE hello", RelayKind.E2E_MESSAGE, b"hello"),
        ("PING", RelayKind.PING, _bytes("relay message ping", 8)),
        ("PONG", RelayKind.PONG, _bytes("relay message ping", 8)),
    ]
    out: list[dict[str, Any]] = [
        {
            "name": name,
            "kind": kind.name,
            "payload": payload.hex(),
            "encoded": encode_relay_message(kind, payload).hex(),
        }
        for name, kind, payload in valid
    ]

    def raw(kind: int, length: int, payload: bytes, size: int = DATA_SIZE) -> str:
        body = bytes((kind,)) + length.to_bytes(2, "big") + payload
        return (body + bytes(max(0, size - len(body))))[:size].hex()

    out += [
        {"name": "unknown kind 5", "encoded": raw(5, 1, b"x"), "error": "MalformedInput"},
        {
            "name": "length 969",
            "encoded": raw(1, MAX_RELAY_PAYLOAD + 1, b""),
            "error": "MalformedInput",
        },
        {
            "name": "non-zero fill",
            "encoded": raw(1, 1, b"x\x00\x00\x01"),
            "error": "MalformedInput",
        },
        {
            "name": "970 bytes",
            "encoded": raw(1, 1, b"x", DATA_SIZE - 1),
            "error": "MalformedInput",
        },
        {
            "name": "972 bytes",
            "encoded": raw(1, 1, b"x", DATA_SIZE + 1),
            "error": "MalformedInput",
        },
    ]
    return out


def build() -> dict[str, Any]:
    g = ZMESH_GEOMETRY
    data = {
        "format": (
            "zmesh onion cells v1 (docs/wire/cells.md); checked by python -m conformance cells; "
            "hex strings; links numbered from the client (link i ends at hop i); cell offsets "
            "count from the first byte of the 1024-byte cell"
        ),
        "draw_order": suite.DRAW_ORDER,
        "geometry": {
            "max_hops": g.max_hops,
            "per_hop_routing_info_length": g.per_hop_routing_info_length,
            "header_length": g.header_length,
        },
        "cases": [
            _case("2 hops, CHACHA20_POLY1305", 2, "CHACHA20_POLY1305"),
            _case("3 hops, AES_256_GCM", 3, "AES_256_GCM"),
            _case("2 hops, AES_256_GCM", 2, "AES_256_GCM"),
            _case("3 hops, CHACHA20_POLY1305, 66 forward cells", 3, "CHACHA20_POLY1305", True),
        ],
        "framing": _framing(),
        "relay_messages": _relay_messages(),
    }
    # What we write must pass; round-trip through JSON so the check sees the file's types.
    data = dict(json.loads(json.dumps(data)))
    problems: list[str] = []
    _, failed = _check(data, problems.append)
    if failed:
        raise SystemExit("generated vectors do not pass:\n" + "\n".join(problems))
    return data


def _check(data: dict[str, Any], out: Any) -> tuple[int, int]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "cells.json"
        path.write_text(json.dumps(data))
        return suite.check_file(path, out)


def main() -> None:
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
