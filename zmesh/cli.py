"""The ``zmesh`` command: one sub-command per job, each implemented in its own module.

Sub-commands import their implementation lazily so that ``zmesh --help`` is instant and a
missing optional part names itself instead of breaking every command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

# sub-command -> (module, function, one-line help). The function takes the parsed namespace
# and returns the process exit status.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "zmesh.io_trio.demo",
        "run",
        "run a local mesh on loopback (rendezvous, relays, exits, SOCKS5) and self-check it",
    ),
    "node": ("zmesh.io_trio.commands", "run_node", "run a relay/exit node (optionally SOCKS5)"),
    "proxy": ("zmesh.io_trio.commands", "run_proxy", "run a SOCKS5 client of a mesh"),
    "rendezvous": (
        "zmesh.io_trio.commands",
        "run_rendezvous",
        "run a self-hosted rendezvous service (WebSocket over HTTPS)",
    ),
    "status": (
        "zmesh.io_trio.commands",
        "run_status",
        "show links, circuits and RTTs of a running node (from its --status-file)",
    ),
}


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--simulated",
        action="store_true",
        help="run the virtual-time simulator demo instead of real sockets",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="run the self-check and exit: 0 on success, 1 with the reason",
    )
    parser.add_argument(
        "--socks-port",
        type=int,
        default=None,
        help="SOCKS5 port (default 1080; a free one with --self-test)",
    )
    parser.add_argument(
        "--nodes", type=int, default=None, help="relay/exit nodes (default 5; 8 with --simulated)"
    )
    parser.add_argument("--hops", type=int, choices=(2, 3), default=2, help="circuit length")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (--simulated only)")


def _lazy_arguments(module: str, func: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        getattr(importlib.import_module(module), func)(parser)

    return add


_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "demo": _add_demo,
    "node": _lazy_arguments("zmesh.io_trio.commands", "add_node_arguments"),
    "proxy": _lazy_arguments("zmesh.io_trio.commands", "add_proxy_arguments"),
    "rendezvous": _lazy_arguments("zmesh.io_trio.commands", "add_rendezvous_arguments"),
    "status": _lazy_arguments("zmesh.io_trio.commands", "add_status_arguments"),
}


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
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    module_name, func_name, _ = _COMMANDS[args.command]
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
