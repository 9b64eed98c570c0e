"""Every atheris harness under fuzz/ still starts and survives a short run (no bit rot)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

FUZZ_DIR = pathlib.Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES = sorted(p for p in FUZZ_DIR.glob("*.py") if not p.name.startswith("_"))

pytest.importorskip("atheris")


def test_there_are_harnesses() -> None:
    assert len(HARNESSES) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("harness", HARNESSES, ids=lambda p: p.stem)
def test_harness_runs(harness: pathlib.Path) -> None:
    result = subprocess.run(
        [sys.executable, str(harness), "-runs=200", "-seed=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Done 200 runs" in result.stderr
