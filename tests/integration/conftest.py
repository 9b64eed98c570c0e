"""Fixtures for the integration tests (the process helpers live in ``mesh_processes.py``)."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterator

import pytest

# The helpers sit beside this file; make them importable however pytest was started.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from mesh_processes import Mesh


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path_factory.mktemp("mesh"))
    try:
        for _ in range(5):
            m.add_node()
        yield m
    finally:
        m.close()
