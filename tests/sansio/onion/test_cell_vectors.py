"""The cell known-answer vectors (vectors/cells-v1.json) still hold."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # pytest 9 imports tests without their dir
from cell_vectors import PATH, run_case


def test_vectors_reproduce() -> None:
    data = json.loads(PATH.read_text())
    assert len(data["cases"]) == 2
    for case in data["cases"]:
        assert run_case(case) == case["expected"], case["description"]


def test_vectors_have_the_documented_shape() -> None:
    data = json.loads(PATH.read_text())
    for case in data["cases"]:
        hops = len(case["inputs"]["hops"])
        expected = case["expected"]
        assert len(expected["created_bodies"]) == hops
        for links in expected["forward_cells"] + expected["backward_cells"]:
            assert len(links) == hops and all(len(cell) == 2048 for cell in links)
