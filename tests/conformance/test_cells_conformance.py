"""The cells conformance suite passes on its vectors, and notices broken vectors and code."""

from __future__ import annotations

import copy
import json
import pathlib
import random
import tempfile
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance import __main__ as runner
from conformance import cells as suite
from zmesh.sansio.onion import CircuitBuilt, CircuitOpened, OnionNode, RouteHop, layers
from zmesh.sansio.onion.cells import DATA_SIZE, CellCommand, RelayKind
from zmesh.sansio.onion.keyring import SphinxKeyRing
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY
from zmesh.sansio.wire import AuthenticationFailed

DATA: dict[str, Any] = json.loads(suite.CELLS_V1.read_text())


def run(data: dict[str, Any], tmp_path: pathlib.Path) -> tuple[int, int, list[str]]:
    path = tmp_path / "cells.json"
    path.write_text(json.dumps(data))
    lines: list[str] = []
    passed, failed = suite.check_file(path, lines.append)
    return passed, failed, [line for line in lines if line.startswith("FAIL")]


def expected_count(data: dict[str, Any]) -> int:
    # Per case: create, one per hop, created, forward, backward; then one per negative check,
    # framing entry and relay message.
    stages = sum(len(c["inputs"]["hops"]) + 4 for c in data["cases"])
    negatives = sum(len(c["negative"]) for c in data["cases"])
    return stages + negatives + len(data["framing"]) + len(data["relay_messages"])


def test_committed_vectors_pass() -> None:
    lines: list[str] = []
    passed, failed = suite.check_file(suite.CELLS_V1, lines.append)
    assert (passed, failed) == (expected_count(DATA), 0)
    assert passed == 152
    assert any(line.startswith("not checked:") for line in lines)


def test_vectors_cover_what_the_document_promises() -> None:
    shapes = {(len(c["inputs"]["hops"]), c["inputs"]["aead"]) for c in DATA["cases"]}
    assert shapes >= {(2, "CHACHA20_POLY1305"), (3, "AES_256_GCM"), (3, "CHACHA20_POLY1305")}
    # Some case sends more than 64 forward cells: the relays' pad block is refilled.
    assert max(len(c["inputs"]["forward_messages"]) for c in DATA["cases"]) > 64
    for case in DATA["cases"]:
        kinds = {(n["type"], n.get("direction"), n["expect"]) for n in case["negative"]}
        assert {
            ("create_tamper", None, "rejected"),
            ("created_tamper", None, "rejected"),
            ("tamper", "forward", "rejected"),
            ("tamper", "backward", "rejected"),
            ("replay", "forward", "rejected"),
            ("replay", "backward", "rejected"),
        } <= kinds
    errors = {e.get("error") for e in DATA["framing"]}
    assert {"MalformedInput", "TruncatedInput", "OversizedInput"} <= errors


def test_generator_reproduces_the_file_byte_for_byte() -> None:
    from conformance import make_cell_vectors

    assert json.dumps(make_cell_vectors.build(), indent=1) + "\n" == suite.CELLS_V1.read_text()


def test_changed_outputs_fail_at_their_stage(tmp_path: pathlib.Path) -> None:
    data = copy.deepcopy(DATA)
    case = data["cases"][1]  # 3 hops
    cell = bytearray.fromhex(case["expected"]["create_cells"][1])
    cell[200] ^= 1
    case["expected"]["create_cells"][1] = cell.hex()
    case["expected"]["forward_cells"][2][2] = "00" * 1024
    passed, failed, lines = run(data, tmp_path)
    assert failed == 3 and passed == expected_count(DATA) - 3
    assert any("hop 0: create_cells[1] differs" in line for line in lines)
    assert any("hop 1: AuthenticationFailed" in line for line in lines)  # MAC over the change
    assert any("forward: forward_cells[2] differs on link 2" in line for line in lines)


def test_changed_inputs_fail(tmp_path: pathlib.Path) -> None:
    data = copy.deepcopy(DATA)
    data["cases"][0]["inputs"]["client_fillers"].append("00" * 16)  # one draw too many
    data["cases"][0]["inputs"]["hops"][1]["hop_ephemeral_private"] = "11" * 32
    data["cases"][3]["inputs"]["forward_messages"][10]["payload"] = "00" * 16  # a digest entry
    _, failed, lines = run(data, tmp_path)
    assert any("not drawn" in line for line in lines)
    assert any("hop 1: created_records[1] differs" in line for line in lines)
    assert any("forward_cells[10] differs" in line for line in lines)
    assert failed == 3


def test_wrong_negative_expectations_fail(tmp_path: pathlib.Path) -> None:
    data = copy.deepcopy(DATA)
    negatives = data["cases"][1]["negative"]
    flipped = 0
    for neg in negatives:
        if neg["expect"] == "accepted":
            neg["expect"] = "rejected"
            flipped += 1
        elif "layer" in neg:
            neg["layer"] += 1
            flipped += 1
    _, failed, lines = run(data, tmp_path)
    assert failed == flipped > 10
    assert all("negative" in line for line in lines)


def test_code_that_misses_tagging_fails(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that ignored backward tag failures would be caught by the negative checks."""
    real = layers.ClientLayers.open_backward

    def lenient(self: layers.ClientLayers, cell: bytes) -> bytes:
        try:
            return real(self, cell)
        except AuthenticationFailed:
            self.backward_count += 1
            return bytes(DATA_SIZE)

    monkeypatch.setattr(layers.ClientLayers, "open_backward", lenient)
    _, failed, lines = run(DATA, tmp_path)
    backward_rejections = sum(
        n["direction"] == "backward" and n["expect"] == "rejected"
        for c in DATA["cases"]
        for n in c["negative"]
        if "direction" in n
    )
    assert failed == backward_rejections
    assert all("backward" in line and "was accepted" in line for line in lines)


def test_missing_and_unreadable_files(tmp_path: pathlib.Path) -> None:
    lines: list[str] = []
    assert suite.check_file(tmp_path / "absent.json", lines.append) == (0, 1)
    odd = tmp_path / "odd.json"
    odd.write_text('{"cases": []}')
    assert suite.check_file(odd, lines.append) == (0, 1)  # no geometry


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.binary(max_size=1100), encoded=st.binary(max_size=1000))
def test_random_single_cells_never_crash_the_suite(cell: bytes, encoded: bytes) -> None:
    """Arbitrary framing / relay-message bytes give a pass or a FAIL line, never an exception."""
    data = {
        "geometry": DATA["geometry"],
        "cases": [],
        "framing": [{"name": "random", "cell": cell.hex(), "error": "MalformedInput"}],
        "relay_messages": [{"name": "random", "encoded": encoded.hex(), "error": "MalformedInput"}],
    }
    lines: list[str] = []
    # hypothesis and function-scoped fixtures do not mix: a temporary directory per example.
    with tempfile.TemporaryDirectory() as tmp:
        target = pathlib.Path(tmp) / "r.json"
        target.write_text(json.dumps(data))
        passed, failed = suite.check_file(target, lines.append)
    assert passed + failed == 2
    assert sum(line.startswith("FAIL") for line in lines) == failed


def test_runner_lists_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert "cells" in runner.SUITES
    assert runner.main(["cells"]) == 0
    out = capsys.readouterr().out
    assert f"cells cells-v1.json: {expected_count(DATA)} passed, 0 failed" in out
    assert out.rstrip().endswith(f"{expected_count(DATA)} passed, 0 failed")


class _Recorder:
    """A deterministic RandomSource that remembers every draw, in order."""

    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed)
        self.draws: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        chunk = self._rng.randbytes(n)
        self.draws.append(chunk)
        return chunk


def test_vectors_describe_what_onion_nodes_send() -> None:
    """Real OnionNodes, fed the same random draws, put exactly the suite's cells on the links.

    Three nodes build a 2-hop circuit and exchange messages; their draws and cells are recorded.
    A vector case built from those draws alone (the documented draw order, the keys, the circuit
    ids) must reproduce every CREATE, CREATED and RELAY cell the nodes sent, link by link.
    """
    now = 5000.0
    geometry = ZMESH_GEOMETRY
    names = ("client", "hop0", "hop1")
    draws = {name: _Recorder(f"{name} node") for name in names}
    key_draws = {name: _Recorder(f"{name} keys") for name in names}
    nodes = {
        name: OnionNode(
            bytes([3 - i]) * 32,  # ids sort against the path order: both id halves are used
            SphinxKeyRing(geometry, now, random=key_draws[name]),
            random=draws[name],
        )
        for i, name in enumerate(names)
    }
    for a, b in (("client", "hop0"), ("hop0", "hop1")):
        nodes[a].link_up(b, nodes[b].node_id, now)
        nodes[b].link_up(a, nodes[a].node_id, now)
    links = {frozenset(("client", "hop0")): 0, frozenset(("hop0", "hop1")): 1}
    cells: dict[tuple[int, int], list[bytes]] = {}  # (link, command) -> cells in order
    ends: dict[str, Any] = {}

    def pump() -> None:
        moved = True
        while moved:
            moved = False
            for name, node in nodes.items():
                while (event := node.next_event()) is not None:
                    if isinstance(event, CircuitBuilt | CircuitOpened):
                        ends[name] = event.circuit
                for link, cell in node.cells_to_send():
                    moved = True
                    peer = str(link)  # links are named after the peer
                    cells.setdefault((links[frozenset((name, peer))], cell[4]), []).append(cell)
                    nodes[peer].receive_cell(name, cell, now)

    epoch = nodes["hop0"].keyring.epoch_at(now)
    route = [
        RouteHop(nodes[h].node_id, nodes[h].keyring.public_keys(now)[epoch], epoch)
        for h in ("hop0", "hop1")
    ]
    nodes["client"].build_circuit(route, now)
    pump()
    assert set(ends) == {"client", "hop1"}
    forward = [(RelayKind.STREAM, b"x" * 968), (RelayKind.E2E_MESSAGE, b"hello")]
    backward = [(RelayKind.PONG, b"12345678"), (RelayKind.PADDING, b"")]
    for kind, payload in forward:
        nodes["client"].send_relay_message(ends["client"], kind, payload, now)
    for kind, payload in backward:
        nodes["hop1"].send_relay_message(ends["hop1"], kind, payload, now)
    pump()

    def private_key(name: str) -> str:
        public = nodes[name].keyring.public_keys(now)[epoch]
        return next(
            d.hex()
            for d in key_draws[name].draws
            if X25519PrivateKey.from_private_bytes(d).public_key().public_bytes_raw() == public
        )

    c, h0, h1 = (draws[n].draws for n in names)
    # The documented draw order (DRAW_ORDER); fails if the node draws differently.
    assert [len(d) for d in c] == [32, 4, 32, 4, 32, 104, 637, 16, 16]
    assert [len(d) for d in h0] == [32, 637] and [len(d) for d in h1] == [32, 971]
    hops = [
        {
            "node_id": nodes[name].node_id.hex(),
            "sphinx_private_key": private_key(name),
            "sphinx_public_key": nodes[name].keyring.public_keys(now)[epoch].hex(),
            "client_ephemeral_private": c[2 * i].hex(),
            "circuit_tag": c[2 * i + 1].hex(),
            "hop_ephemeral_private": hop[0].hex(),
        }
        for i, (name, hop) in enumerate((("hop0", h0), ("hop1", h1)))
    ]
    create = {link: cells[(link, CellCommand.CREATE)] for link in (0, 1)}
    case: dict[str, Any] = {
        "inputs": {
            "aead": "CHACHA20_POLY1305",
            "epoch": epoch,
            "client_node_id": nodes["client"].node_id.hex(),
            "hops": hops,
            "sphinx_ephemeral_private": c[4].hex(),
            "sphinx_padding": c[5].hex(),
            "links": [
                {
                    "circuit_id": int.from_bytes(create[0][0][:4], "big"),
                    "create_padding": c[6].hex(),
                },
                {
                    "circuit_id": int.from_bytes(create[1][0][:4], "big"),
                    "create_padding": h0[1].hex(),
                },
            ],
            "created_filler": h1[1].hex(),
            "client_fillers": [d.hex() for d in c[7:]],
            "forward_messages": [{"kind": k.name, "payload": p.hex()} for k, p in forward],
            "backward_messages": [{"kind": k.name, "payload": p.hex()} for k, p in backward],
        },
        "expected": {},
    }
    expected = suite.fill_expected(geometry, case)
    for link in (0, 1):
        assert [bytes.fromhex(expected["create_cells"][link])] == create[link]
        assert [bytes.fromhex(expected["created_cells"][link])] == cells[
            (link, CellCommand.CREATED)
        ]
        relay = cells[(link, CellCommand.RELAY)]
        sent = [bytes.fromhex(m[link]) for m in expected["forward_cells"]]
        sent += [bytes.fromhex(m[link]) for m in expected["backward_cells"]]
        assert sorted(sent) == sorted(relay) and len(relay) == 4
