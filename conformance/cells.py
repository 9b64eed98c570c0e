"""Onion cell conformance: ``python -m conformance cells [FILE ...]`` (``docs/wire/cells.md``).

A vector file (``conformance/vectors/cells-v1.json``, written by
``conformance/make_cell_vectors.py``) holds ``cases`` (one circuit each), ``framing`` (single
cells: what parses and what is refused) and ``relay_messages`` (the innermost plaintext).

Per case, every stage is checked on its own, from the file's inputs and the file's outputs of the
stage before, so a failure names the first stage that differs:

- ``create``: the client's random draws (see :data:`DRAW_ORDER`) reproduce the
  CircuitSetup commands, the Sphinx shared secrets and the CREATE cell on link 0;
- ``hop i``: the CREATE cell on link i, unwrapped with node i's Sphinx key, gives that hop's
  shared secret, CircuitSetup and next hop; the hop's ephemeral key gives its CREATED record,
  reply key and cell keys; a non-final hop's padding gives the CREATE cell on link i + 1; the
  circuit id on link i lies in the half its sender allocates from (``docs/wire/cells.md`` §1);
- ``created``: the records wrapped from the last hop back give the CREATED cell on every link,
  and the client, peeling them, derives the same cell keys as every hop;
- ``forward`` / ``backward``: from the hop keys, the client filler and the relay messages, the
  RELAY cell on every link (messages marked ``"record": "sha256"`` are pinned by digest);
- ``negative N``: a tampered or replayed CREATE, CREATED or RELAY cell is refused with
  ``AuthenticationFailed`` by the hop the document names, or (where the document says the bytes
  are not authenticated or are dropped) changes nothing.

Links are numbered from the client: link 0 joins the client and hop 0, link i joins hop i - 1
and hop i. Backward cell lists are also in link order. Offsets are offsets in the whole
1024-byte cell.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib
import re
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from zmesh.sansio.onion.cells import (
    CELL_HEADER,
    CIRCUIT_ID_HIGH_BIT,
    CellCommand,
    DestroyReason,
    RelayKind,
    encode_cell,
    encode_create_body,
    encode_relay_message,
    parse_cell,
    parse_create_body,
    parse_destroy_body,
    parse_relay_message,
)
from zmesh.sansio.onion.commands import CellAead, CircuitSetup
from zmesh.sansio.onion.layers import ClientLayers, ExitLayers, RelayLayers
from zmesh.sansio.onion.session import (
    ClientHopHandshake,
    HopKeys,
    derive_reply_key,
    respond,
    unwrap_created,
    wrap_created,
)
from zmesh.sansio.onion.sphinx import Geometry, PathHop, create_header, unwrap_header
from zmesh.sansio.wire import AuthenticationFailed, ProtocolError

_HERE = pathlib.Path(__file__).resolve().parent
CELLS_V1 = _HERE / "vectors" / "cells-v1.json"

DEFAULT_FILES: list[pathlib.Path] = [CELLS_V1]

#: Every party's random draws, in order (``zmesh/sansio/onion/node.py``); the file repeats it.
DRAW_ORDER = {
    "client, building": [
        "per hop: client_ephemeral_private (32), circuit_tag (4)",
        "sphinx_ephemeral_private (32)",
        "sphinx_padding ((3 - n) * 104; absent for 3 hops)",
        "links[0].create_padding (637)",
    ],
    "client, per forward cell": ["client_fillers[m] (32 - 16 * (n - 1))"],
    "relay hop i": ["hop_ephemeral_private (32)", "links[i + 1].create_padding (637)"],
    "last hop": ["hop_ephemeral_private (32)", "created_filler (971)"],
}

_NOT_CHECKED = (
    "not checked: PADDING cell bodies (random, ignored by the receiver), the Sphinx header "
    "beyond what each hop unwraps (suite 'sphinx'), which id within its half a node "
    "allocates, timers, and the epoch key ring (the epoch is only carried in the CREATE body)"
)

Problem = str | None
_KEY_FIELDS = ("forward_key", "backward_key", "forward_pad_key", "backward_pad_key", "confirm_key")


class Replay:
    """A RandomSource that hands out recorded byte strings, checking each requested length."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = deque(chunks)

    def __call__(self, n: int) -> bytes:
        if not self._chunks:
            raise ValueError(f"asked for {n} random bytes beyond the recorded ones")
        chunk = self._chunks.popleft()
        if len(chunk) != n:
            raise ValueError(f"asked for {n} random bytes, the vector recorded {len(chunk)}")
        return chunk

    def check_used_up(self) -> None:
        if self._chunks:
            raise ValueError(f"{len(self._chunks)} recorded random chunks were not drawn")


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def geometry_of(data: dict[str, Any]) -> Geometry:
    g = data["geometry"]
    return Geometry(g["max_hops"], g["per_hop_routing_info_length"])


# -- stages: each returns [(("field", index or None), value)] computed from the file ---------

Output = list[tuple[tuple[str, int | None], Any]]


def _client_handshakes(case: dict[str, Any]) -> list[ClientHopHandshake]:
    inputs = case["inputs"]
    n = len(inputs["hops"])
    aead = CellAead[inputs["aead"]]
    return [
        ClientHopHandshake(
            is_exit=i == n - 1,
            aead=aead,
            random=Replay([_hex(h["client_ephemeral_private"]), _hex(h["circuit_tag"])]),
        )
        for i, h in enumerate(inputs["hops"])
    ]


def stage_create(geometry: Geometry, case: dict[str, Any]) -> Output:
    """Client: handshakes, Sphinx header and the CREATE cell on link 0, from one draw stream."""
    inputs = case["inputs"]
    hops = inputs["hops"]
    n = len(hops)
    chunks = [_hex(x) for h in hops for x in (h["client_ephemeral_private"], h["circuit_tag"])]
    chunks.append(_hex(inputs["sphinx_ephemeral_private"]))
    if n < geometry.max_hops:
        chunks.append(_hex(inputs["sphinx_padding"]))
    chunks.append(_hex(inputs["links"][0]["create_padding"]))
    draw = Replay(chunks)
    aead = CellAead[inputs["aead"]]
    handshakes = [ClientHopHandshake(is_exit=i == n - 1, aead=aead, random=draw) for i in range(n)]
    for h in hops:
        public = _private(h["sphinx_private_key"]).public_key().public_bytes_raw()
        if public.hex() != h["sphinx_public_key"]:
            raise ValueError("a node's Sphinx public key does not match its private key")
    path = [
        PathHop(_hex(h["node_id"]), _hex(h["sphinx_public_key"]), (hs.setup,))
        for h, hs in zip(hops, handshakes, strict=True)
    ]
    created = create_header(geometry, path, draw)
    body = encode_create_body(inputs["epoch"], created.header, draw)
    draw.check_used_up()
    cell = encode_cell(inputs["links"][0]["circuit_id"], CellCommand.CREATE, body)
    out: Output = [(("create_cells", 0), cell.hex())]
    out += [(("circuit_setups", i), hs.setup.encode().hex()) for i, hs in enumerate(handshakes)]
    out += [(("sphinx_secrets", i), s.hex()) for i, s in enumerate(created.shared_secrets)]
    return out


def _private(hex_key: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(_hex(hex_key))


def stage_hop(geometry: Geometry, case: dict[str, Any], i: int) -> Output:
    """Hop i: receive the CREATE on link i; answer (record, keys) and extend on link i + 1."""
    inputs, expected = case["inputs"], case["expected"]
    hops, links = inputs["hops"], inputs["links"]
    n = len(hops)
    parsed = parse_cell(_hex(expected["create_cells"][i]))
    if parsed.command is not CellCommand.CREATE or parsed.circuit_id != links[i]["circuit_id"]:
        raise ValueError(f"link {i} does not carry a CREATE on circuit {links[i]['circuit_id']}")
    sender = inputs["client_node_id"] if i == 0 else hops[i - 1]["node_id"]
    high = bool(parsed.circuit_id & CIRCUIT_ID_HIGH_BIT)
    if high != (_hex(sender) < _hex(hops[i]["node_id"])):
        raise ValueError(f"circuit id on link {i} is in the receiver's half (cells.md §1)")
    epoch, header = parse_create_body(parsed.body, geometry.header_length)
    if epoch != inputs["epoch"]:
        raise ValueError(f"CREATE epoch {epoch} != {inputs['epoch']}")
    unwrapped = unwrap_header(geometry, _private(hops[i]["sphinx_private_key"]), header)
    if len(unwrapped.commands) != 1 or not isinstance(unwrapped.commands[0], CircuitSetup):
        raise ValueError(f"hop {i} did not find exactly one CircuitSetup: {unwrapped.commands}")
    setup = unwrapped.commands[0]
    if setup.is_exit != (i == n - 1):
        raise ValueError(f"hop {i} CircuitSetup exit flag is {setup.is_exit}")
    next_hop = unwrapped.next_hop.hex() if unwrapped.next_hop is not None else None
    if next_hop != (hops[i + 1]["node_id"] if i + 1 < n else None):
        raise ValueError(f"hop {i} next hop is {next_hop}")
    response = respond(
        setup, unwrapped.shared_secret, Replay([_hex(hops[i]["hop_ephemeral_private"])])
    )
    out: Output = [
        (("sphinx_secrets", i), unwrapped.shared_secret.hex()),
        (("replay_tags", i), unwrapped.replay_tag.hex()),
        (("circuit_setups", i), setup.encode().hex()),
        (("created_records", i), response.record.hex()),
        (("reply_keys", i), response.reply_key.hex()),
        (("hop_keys", i), {f: getattr(response.keys, f).hex() for f in _KEY_FIELDS}),
    ]
    if i + 1 < n:
        assert unwrapped.next_header is not None
        body = encode_create_body(
            epoch, unwrapped.next_header, Replay([_hex(links[i + 1]["create_padding"])])
        )
        cell = encode_cell(links[i + 1]["circuit_id"], CellCommand.CREATE, body)
        out.append((("create_cells", i + 1), cell.hex()))
    return out


def _created_cells(case: dict[str, Any], records: Sequence[bytes]) -> list[bytes]:
    """The CREATED cell on every link, wrapped from the last hop back (link order)."""
    inputs, expected = case["inputs"], case["expected"]
    links = inputs["links"]
    body: bytes | None = None
    cells: list[bytes] = []
    for i in range(len(records) - 1, -1, -1):
        filler = Replay([_hex(inputs["created_filler"])] if body is None else [])
        body = wrap_created(_hex(expected["reply_keys"][i]), records[i], body, filler)
        cells.append(encode_cell(links[i]["circuit_id"], CellCommand.CREATED, body))
    cells.reverse()
    return cells


def _client_finish(case: dict[str, Any], created_cell: bytes) -> list[HopKeys]:
    """The client's side of CREATED: peel every layer and confirm every hop's record."""
    secrets = [_hex(s) for s in case["expected"]["sphinx_secrets"]]
    parsed = parse_cell(created_cell)
    if parsed.command is not CellCommand.CREATED:
        raise ValueError("link 0 does not carry a CREATED cell")
    records = unwrap_created([derive_reply_key(s) for s in secrets], parsed.body)
    keys = []
    for i, (hs, s, r) in enumerate(zip(_client_handshakes(case), secrets, records, strict=True)):
        try:
            keys.append(hs.finish(s, r))
        except AuthenticationFailed as exc:
            raise AuthenticationFailed(f"hop {i + 1}: {exc}") from None
    return keys


def _keys_json(keys: HopKeys) -> dict[str, str]:
    return {f: getattr(keys, f).hex() for f in _KEY_FIELDS}


def stage_created(geometry: Geometry, case: dict[str, Any]) -> Output:
    records = [_hex(r) for r in case["expected"]["created_records"]]
    cells = _created_cells(case, records)
    keys = _client_finish(case, cells[0])
    out: Output = [(("created_cells", i), c.hex()) for i, c in enumerate(cells)]
    # The client's keys must be the ones every hop derived on its own.
    out += [(("hop_keys", i), _keys_json(k)) for i, k in enumerate(keys)]
    return out


def _hop_keys(case: dict[str, Any]) -> list[HopKeys]:
    aead = CellAead[case["inputs"]["aead"]]
    return [
        HopKeys(**{f: _hex(k[f]) for f in _KEY_FIELDS}, aead=aead)
        for k in case["expected"]["hop_keys"]
    ]


def _relay_header(circuit_id: int) -> bytes:
    return CELL_HEADER.pack(circuit_id, CellCommand.RELAY)


class _Circuit:
    """Every party's layers on one circuit, built from the vector's hop keys."""

    def __init__(self, case: dict[str, Any]) -> None:
        keys = _hop_keys(case)
        fillers = [_hex(f) for f in case["inputs"]["client_fillers"]]
        self.ids = [link["circuit_id"] for link in case["inputs"]["links"]]
        self.client_random = Replay(fillers)
        self.client = ClientLayers(keys, self.client_random)
        self.relays = [RelayLayers(k) for k in keys[:-1]]
        self.exit = ExitLayers(keys[-1])

    def forward_from_client(self, message: bytes) -> bytes:
        return self.client.seal_forward(message, _relay_header(self.ids[0]))

    def forward_at(self, hop: int, cell: bytes) -> bytes:
        """Hop ``hop`` receives ``cell``: a relay's output cell, or the exit's relay message.
        A tag failure names the hop (1-based), as the client's backward failures do."""
        try:
            if hop < len(self.relays):
                return self.relays[hop].forward(cell, _relay_header(self.ids[hop + 1]))
            return self.exit.open_forward(cell)
        except AuthenticationFailed as exc:
            raise AuthenticationFailed(f"hop {hop + 1}: {exc}") from None

    def backward_from_exit(self, message: bytes) -> bytes:
        return self.exit.seal_backward(message, _relay_header(self.ids[-1]))

    def backward_at(self, hop: int, cell: bytes) -> bytes:
        return self.relays[hop].backward(cell, _relay_header(self.ids[hop]))


def _message(entry: dict[str, Any]) -> bytes:
    return encode_relay_message(RelayKind[entry["kind"]], _hex(entry["payload"]))


def _recorded(entry: dict[str, Any], cells: list[bytes]) -> list[str]:
    if entry.get("record") == "sha256":
        return [hashlib.sha256(c).hexdigest() for c in cells]
    return [c.hex() for c in cells]


def stage_forward(geometry: Geometry, case: dict[str, Any]) -> Output:
    circuit = _Circuit(case)
    out: Output = []
    for m, entry in enumerate(case["inputs"]["forward_messages"]):
        message = _message(entry)
        cell = circuit.forward_from_client(message)
        links = [cell]
        for hop in range(len(circuit.relays)):
            cell = circuit.forward_at(hop, cell)
            links.append(cell)
        if circuit.exit.open_forward(cell) != message:
            raise ValueError(f"forward message {m}: the exit read a different relay message")
        out.append((("forward_cells", m), _recorded(entry, links)))
    circuit.client_random.check_used_up()
    return out


def stage_backward(geometry: Geometry, case: dict[str, Any]) -> Output:
    circuit = _Circuit(case)
    out: Output = []
    for m, entry in enumerate(case["inputs"]["backward_messages"]):
        message = _message(entry)
        cell = circuit.backward_from_exit(message)
        links = [cell]
        for hop in range(len(circuit.relays) - 1, -1, -1):
            cell = circuit.backward_at(hop, cell)
            links.append(cell)
        links.reverse()
        if circuit.client.open_backward(cell) != message:
            raise ValueError(f"backward message {m}: the client read a different relay message")
        out.append((("backward_cells", m), _recorded(entry, links)))
    return out


# -- negative checks ------------------------------------------------------------------------


def _flip(cell: bytes, offset: int, mask: int) -> bytes:
    if not 5 <= offset < len(cell) or not 1 <= mask <= 255:
        raise ValueError(f"tamper offset {offset} / mask {mask} outside the cell body")
    tampered = bytearray(cell)
    tampered[offset] ^= mask
    return bytes(tampered)


def _expect_outcome(neg: dict[str, Any], run: Callable[[], Problem]) -> Problem:
    """Run a negative check: ``rejected`` wants AuthenticationFailed (naming ``layer`` if
    given); ``accepted`` wants ``run`` to succeed and return no problem."""
    if neg["expect"] == "rejected":
        try:
            problem = run()
        except AuthenticationFailed as exc:
            layer = neg.get("layer")
            if layer is not None:
                found = re.search(r"\bhop (\d+)\b", str(exc))
                if found is None or int(found.group(1)) != layer:
                    return f"failed, but not at layer {layer}: {exc}"
            return None
        return f"was accepted ({problem or 'no error'}), expected AuthenticationFailed"
    if neg["expect"] == "accepted":
        return run()
    raise ValueError(f"unknown expectation {neg['expect']!r}")


def check_negative(geometry: Geometry, case: dict[str, Any], neg: dict[str, Any]) -> Problem:
    kind = neg["type"]
    expected = case["expected"]
    if kind == "create_tamper":
        link = neg["link"]
        cell = _flip(_hex(expected["create_cells"][link]), neg["offset"], neg["xor"])

        def unwrap() -> Problem:
            _, header = parse_create_body(parse_cell(cell).body, geometry.header_length)
            key = _private(case["inputs"]["hops"][link]["sphinx_private_key"])
            secret = unwrap_header(geometry, key, header).shared_secret
            return None if secret.hex() == expected["sphinx_secrets"][link] else "secret changed"

        return _expect_outcome(neg, unwrap)
    if kind == "created_tamper":
        link = neg["link"]
        records = [_hex(r) for r in expected["created_records"]]
        tampered = _flip(_hex(expected["created_cells"][link]), neg["offset"], neg["xor"])
        # Hops before the tampered link wrap what they receive as usual.
        body = bytes(parse_cell(tampered).body)
        for i in range(link - 1, -1, -1):
            body = wrap_created(_hex(expected["reply_keys"][i]), records[i], body, Replay([]))
        first = encode_cell(case["inputs"]["links"][0]["circuit_id"], CellCommand.CREATED, body)

        def finish() -> Problem:
            keys = [_keys_json(k) for k in _client_finish(case, first)]
            return None if keys == expected["hop_keys"] else "client derived other keys"

        return _expect_outcome(neg, finish)
    if kind in {"tamper", "replay"}:
        return _relay_negative(case, neg)
    raise ValueError(f"unknown negative check type {kind!r}")


def _relay_negative(case: dict[str, Any], neg: dict[str, Any]) -> Problem:
    """Deliver messages 0 .. ``message`` - 1 normally, then a changed cell on ``link``."""
    forward = neg["direction"] == "forward"
    link, target = neg["link"], neg["message"]
    messages = case["inputs"]["forward_messages" if forward else "backward_messages"]
    circuit = _Circuit(case)
    n = len(circuit.relays) + 1
    if not 0 <= link < n or not 0 <= target < len(messages):
        raise ValueError("negative check names a link or message the case does not have")
    sent: list[bytes] = []  # the genuine cell of each message on ``link``

    for m in range(target + 1):
        message = _message(messages[m])
        if forward:
            # Up to the tampered link every hop sees the genuine cell of message m.
            cell = circuit.forward_from_client(message)
            for hop in range(link):
                cell = circuit.forward_at(hop, cell)
        else:
            # The hops behind the link (exit side) produce the genuine cell of message m.
            cell = circuit.backward_from_exit(message)
            for hop in range(n - 2, link - 1, -1):
                cell = circuit.backward_at(hop, cell)
        sent.append(cell)
        if m < target:
            if forward:
                for hop in range(link, n):
                    cell = circuit.forward_at(hop, cell)
            else:
                for hop in range(link - 1, -1, -1):
                    cell = circuit.backward_at(hop, cell)
                circuit.client.open_backward(cell)
    if neg["type"] == "replay":
        if target < 1:
            raise ValueError("a replay check needs an earlier message to replay")
        bad = sent[target - 1]
    else:
        bad = _flip(sent[target], neg["offset"], neg["xor"])
    message = _message(messages[target])

    def deliver() -> Problem:
        if forward:
            cell = bad
            for hop in range(link, n - 1):
                cell = circuit.forward_at(hop, cell)
            read = circuit.forward_at(n - 1, cell)
        else:
            cell = bad
            for hop in range(link - 1, -1, -1):
                cell = circuit.backward_at(hop, cell)
            read = circuit.client.open_backward(cell)
        return None if read == message else "a different relay message was read"

    return _expect_outcome(neg, deliver)


# -- single cells and relay messages -------------------------------------------------------


def check_framing(entry: dict[str, Any]) -> Problem:
    cell = _hex(entry["cell"])
    error = entry.get("error")
    try:
        parsed = parse_cell(cell)
        reason = None
        if parsed.command is CellCommand.DESTROY:
            reason = parse_destroy_body(parsed.body).name
    except ProtocolError as exc:
        if error == type(exc).__name__:
            return None
        return f"raised {type(exc).__name__} ({exc}), expected {error or 'success'}"
    if error is not None:
        return f"was accepted, expected {error}"
    got = {"circuit_id": parsed.circuit_id, "command": parsed.command.name}
    if reason is not None:
        got["destroy_reason"] = reason
    want = {k: entry[k] for k in ("circuit_id", "command", "destroy_reason") if k in entry}
    if got != want:
        return f"parsed as {got}, expected {want}"
    if reason is not None:
        rebuilt = encode_cell(
            parsed.circuit_id, parsed.command, bytes((int(DestroyReason[reason]),))
        )
        if rebuilt != cell:
            return "encoding the parsed DESTROY gives other bytes"
    return None


def check_relay_message(entry: dict[str, Any]) -> Problem:
    encoded = _hex(entry["encoded"])
    error = entry.get("error")
    try:
        kind, payload = parse_relay_message(encoded)
    except ProtocolError as exc:
        if error == type(exc).__name__:
            return None
        return f"raised {type(exc).__name__} ({exc}), expected {error or 'success'}"
    if error is not None:
        return f"was accepted, expected {error}"
    if (kind.name, payload.hex()) != (entry["kind"], entry["payload"]):
        return f"parsed as {kind.name} {payload.hex()[:40]}..."
    if encode_relay_message(RelayKind[entry["kind"]], _hex(entry["payload"])) != encoded:
        return "encoding the fields gives other bytes"
    return None


# -- driver ----------------------------------------------------------------------------------


def case_stages(geometry: Geometry, case: dict[str, Any]) -> list[tuple[str, Callable[[], Output]]]:
    """The ordered stages of one case; the generator runs the same list to fill ``expected``."""
    n = len(case["inputs"]["hops"])
    stages: list[tuple[str, Callable[[], Output]]] = [
        ("create", lambda: stage_create(geometry, case))
    ]
    stages += [(f"hop {i}", _bind_hop(geometry, case, i)) for i in range(n)]
    stages += [
        ("created", lambda: stage_created(geometry, case)),
        ("forward", lambda: stage_forward(geometry, case)),
        ("backward", lambda: stage_backward(geometry, case)),
    ]
    return stages


def fill_expected(geometry: Geometry, case: dict[str, Any]) -> dict[str, Any]:
    """Run every stage in order, storing its outputs in ``case["expected"]`` (the generator's
    way of computing a case; a later stage reads what the earlier ones stored)."""
    expected: dict[str, Any] = case.setdefault("expected", {})
    for _, stage in case_stages(geometry, case):
        for (field, index), value in stage():
            if index is None:
                expected[field] = value
                continue
            slots = expected.setdefault(field, [])
            slots.extend([None] * (index + 1 - len(slots)))
            slots[index] = value
    return expected


def _bind_hop(geometry: Geometry, case: dict[str, Any], i: int) -> Callable[[], Output]:
    return lambda: stage_hop(geometry, case, i)


def compare(expected: dict[str, Any], output: Output) -> Problem:
    for (name, index), value in output:
        want = expected.get(name)
        if index is not None:
            want = want[index] if isinstance(want, list) and index < len(want) else None
        if want != value:
            where = f"{name}[{index}]" if index is not None else name
            if isinstance(value, list) and isinstance(want, list):
                for link, (a, b) in enumerate(zip(value, want, strict=False)):
                    if a != b:
                        return f"{where} differs on link {link}"
            return f"{where} differs"
    return None


def _bind_stage(expected: dict[str, Any], stage: Callable[[], Output]) -> Callable[[], Problem]:
    return lambda: compare(expected, stage())


def _bind_negative(
    geometry: Geometry, case: dict[str, Any], neg: dict[str, Any]
) -> Callable[[], Problem]:
    return lambda: check_negative(geometry, case, neg)


def _run(check: Callable[[], Problem]) -> Problem:
    try:
        return check()
    except (ProtocolError, ValueError, KeyError, IndexError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"


def check_file(path: pathlib.Path, out: Callable[[str], None]) -> tuple[int, int]:
    """Check one vector file; return (passed, failed)."""
    try:
        data = json.loads(path.read_text())
        geometry = geometry_of(data)
        cases = data["cases"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        out(f"{path}: cannot read cell vectors: {exc}")
        return 0, 1
    passed = failed = 0

    def record(label: str, problem: Problem) -> None:
        nonlocal passed, failed
        if problem is None:
            passed += 1
        else:
            failed += 1
            out(f"FAIL {label}: {problem}")

    for case in cases:
        name = case.get("description", "?")
        for label, stage in case_stages(geometry, case):
            record(f"{name} {label}", _run(_bind_stage(case["expected"], stage)))
        for k, neg in enumerate(case.get("negative", [])):
            record(
                f"{name} negative {k} ({neg.get('name', neg.get('type'))})",
                _run(_bind_negative(geometry, case, neg)),
            )
    for entry in data.get("framing", []):
        record(f"framing {entry.get('name', '?')}", _run(functools.partial(check_framing, entry)))
    for entry in data.get("relay_messages", []):
        record(
            f"relay message {entry.get('name', '?')}",
            _run(functools.partial(check_relay_message, entry)),
        )
    out(_NOT_CHECKED)
    return passed, failed
