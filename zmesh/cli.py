"""The ``zmesh`` command: one sub-command per job, each implemented in its own module.

Sub-commands import their implementation lazily so that ``zmesh --help`` is instant and a
missing optional part names itself instead of breaking every command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# sub-command -> (module, function, one-line help). The function takes the parsed namespace
# and returns the process exit status.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("zmesh.sim.demo", "run", "run an embedded local mesh and show a circuit at work"),
}


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    parser.add_argument("--nodes", type=int, default=8, help="relay/exit nodes (default 8)")
    parser.add_argument("--hops", type=int, choices=(2, 3), default=2, help="circuit length")


_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {"demo": _add_demo}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zmesh",
        description="zmesh: a peer-to-peer onion mesh VPN (2 or 3 Sphinx-built hops).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, _func, help_text) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        _ARGUMENTS[name](sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module_name, func_name, _ = _COMMANDS[args.command]
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
