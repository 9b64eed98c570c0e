"""The cell known-answer vectors still hold.

The vectors and their generator live in ``conformance/`` (``python -m conformance cells``,
``conformance/make_cell_vectors.py``); ``tests/conformance/test_cells_conformance.py`` tests the
suite itself. This test keeps the onion room's own run honest: the implementation reproduces every
stage of every committed case.
"""

from __future__ import annotations

import json

from conformance import cells as suite
from zmesh.sansio.onion.cells import CELL_SIZE


def test_vectors_reproduce() -> None:
    lines: list[str] = []
    passed, failed = suite.check_file(suite.CELLS_V1, lines.append)
    assert failed == 0, [line for line in lines if line.startswith("FAIL")]
    assert passed > 0


def test_vectors_have_the_documented_shape() -> None:
    data = json.loads(suite.CELLS_V1.read_text())
    assert {len(c["inputs"]["hops"]) for c in data["cases"]} == {2, 3}
    assert {c["inputs"]["aead"] for c in data["cases"]} == {"CHACHA20_POLY1305", "AES_256_GCM"}
    for case in data["cases"]:
        hops = len(case["inputs"]["hops"])
        expected = case["expected"]
        for name in ("create_cells", "created_cells", "sphinx_secrets", "hop_keys"):
            assert len(expected[name]) == hops, name
        for cell in expected["create_cells"] + expected["created_cells"]:
            assert len(cell) == 2 * CELL_SIZE
        messages = case["inputs"]["forward_messages"] + case["inputs"]["backward_messages"]
        cells = expected["forward_cells"] + expected["backward_cells"]
        for message, links in zip(messages, cells, strict=True):
            width = 64 if message.get("record") == "sha256" else 2 * CELL_SIZE
            assert len(links) == hops and all(len(cell) == width for cell in links)
