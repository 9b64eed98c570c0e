"""``python -m conformance <suite> [FILE ...]``: check vector files, print ``N passed, M failed``.

Each suite is a module ``conformance.<suite>`` exposing::

    DEFAULT_FILES: list[pathlib.Path]           # what ``all`` (or no FILE) checks
    def check_file(path: pathlib.Path, out: Callable[[str], None]) -> tuple[int, int]

``check_file`` returns (passed, failed) and prints one line per failure plus what it does not
check. ``all`` runs every suite on its default files. Exit status is non-zero on any failure or
when nothing was checked.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys

SUITES = ("sphinx", "tetrys", "cells", "streams")


def _run_suite(name: str, files: list[str]) -> tuple[int, int]:
    module = importlib.import_module(f"conformance.{name}")
    paths = [pathlib.Path(f) for f in files] or list(module.DEFAULT_FILES)
    passed = failed = 0
    for path in paths:
        p, f = module.check_file(path, print)
        print(f"{name} {path.name}: {p} passed, {f} failed")
        passed += p
        failed += f
    return passed, failed


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        print("suites:", ", ".join(SUITES), "or all")
        return 0 if argv else 2
    suite, files = argv[0], argv[1:]
    if suite == "all":
        names = [s for s in SUITES if importlib.util.find_spec(f"conformance.{s}") is not None]
    elif suite in SUITES:
        names = [suite]
    else:
        print(f"unknown suite {suite!r}; choose from {', '.join(SUITES)} or all", file=sys.stderr)
        return 2
    passed = failed = 0
    for name in names:
        p, f = _run_suite(name, files if suite != "all" else [])
        passed += p
        failed += f
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
