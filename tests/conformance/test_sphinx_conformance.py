"""The Sphinx conformance suite passes on its vectors and notices broken ones."""

from __future__ import annotations

import json
import pathlib

import pytest

from conformance import sphinx as suite


def run(path: pathlib.Path) -> tuple[int, int, list[str]]:
    lines: list[str] = []
    passed, failed = suite.check_file(path, lines.append)
    return passed, failed, lines


def test_zmesh_creation_vectors_pass() -> None:
    passed, failed, _ = run(suite.ZMESH_CREATE)
    # 4 cases: 1 creation check each plus 2 + 2 + 3 + 2 hops.
    assert (passed, failed) == (13, 0)


@pytest.mark.skipif(not suite.SHARED_KATZENPOST.exists(), reason="shared vectors not present")
def test_katzenpost_unwrap_vectors_pass() -> None:
    passed, failed, lines = run(suite.SHARED_KATZENPOST)
    assert failed == 0
    assert passed == 17  # 1+2+3+5 forward and 1+2+3 SURB-reply hop transitions
    assert any("not checked" in line and "AEZ" in line for line in lines)


def test_generator_is_deterministic() -> None:
    from conformance import make_sphinx_vectors

    built = make_sphinx_vectors.build()
    assert json.loads(suite.ZMESH_CREATE.read_text()) == json.loads(json.dumps(built))


def test_corrupted_zmesh_vector_fails(tmp_path: pathlib.Path) -> None:
    data = json.loads(suite.ZMESH_CREATE.read_text())
    header = bytearray.fromhex(data["cases"][0]["header"])
    header[100] ^= 1
    data["cases"][0]["header"] = header.hex()
    data["cases"][1]["random"][0] = "00" * 32
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    passed, failed, lines = run(broken)
    assert failed == 2 and passed == 11
    assert sum(line.startswith("FAIL") for line in lines) == 2


@pytest.mark.skipif(not suite.SHARED_KATZENPOST.exists(), reason="shared vectors not present")
def test_corrupted_katzenpost_vector_fails(tmp_path: pathlib.Path) -> None:
    cases = json.loads(suite.SHARED_KATZENPOST.read_text())
    packet = bytearray.fromhex(cases[1]["Packets"][1])
    packet[300] ^= 4  # inside the routing info of what hop 1 receives
    cases[1]["Packets"][1] = packet.hex()
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(cases))
    passed, failed, _ = run(broken)
    # Hop 0's forwarded header no longer matches and hop 1's MAC fails.
    assert (passed, failed) == (15, 2)


def test_missing_and_unknown_files(tmp_path: pathlib.Path) -> None:
    assert run(tmp_path / "absent.json")[:2] == (0, 1)
    odd = tmp_path / "odd.json"
    odd.write_text('{"something": 1}')
    assert run(odd)[:2] == (0, 1)
