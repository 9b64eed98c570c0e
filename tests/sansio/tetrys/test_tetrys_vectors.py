"""The Tetrys conformance vectors: they pass, they are reproducible, and the checker can fail."""

from __future__ import annotations

import copy
import json
import pathlib

from conformance import make_tetrys_vectors, tetrys


def test_default_vectors_pass() -> None:
    assert tetrys.DEFAULT_FILES, "no tetrys vector files"
    lines: list[str] = []
    total = 0
    for path in tetrys.DEFAULT_FILES:
        passed, failed = tetrys.check_file(path, lines.append)
        assert failed == 0, lines
        total += passed
    assert total >= 10


def test_generator_reproduces_committed_vectors() -> None:
    written: dict[pathlib.Path, str] = {}
    make_tetrys_vectors.main(write=lambda path, text: written.__setitem__(path, text))
    assert written
    for path, text in written.items():
        assert path.read_text() == text, f"{path.name} is stale: rerun the generator"


def _first_case() -> dict[str, object]:
    path = tetrys.VECTORS / "tetrys-gf256.json"
    case: dict[str, object] = json.loads(path.read_text())[0]
    return case


def test_checker_detects_wrong_symbol() -> None:
    case = copy.deepcopy(_first_case())
    symbols = case["source_symbols"]
    assert isinstance(symbols, dict)
    sid = next(iter(symbols))
    symbols[sid] = "00" * (len(symbols[sid]) // 2)
    assert tetrys.check_case(case)


def test_checker_detects_missing_coded_packets() -> None:
    case = copy.deepcopy(_first_case())
    packets = case["packets"]
    assert isinstance(packets, list)
    case["packets"] = [p for p in packets if bytes.fromhex(p)[3] != 1]  # drop coded packets
    assert any("not delivered" in p for p in tetrys.check_case(case))


def test_checker_detects_corrupted_coded_symbol() -> None:
    case = copy.deepcopy(_first_case())
    packets = case["packets"]
    assert isinstance(packets, list)
    for i, p in enumerate(packets):
        raw = bytearray(bytes.fromhex(p))
        if raw[3] == 1:
            raw[-1] ^= 0x55
            packets[i] = raw.hex()
    assert any("differs" in p for p in tetrys.check_case(case))
