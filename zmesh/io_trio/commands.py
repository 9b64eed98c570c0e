"""``zmesh node``, ``zmesh proxy`` and ``zmesh rendezvous``: the pieces of a real deployment.

Each command reads its settings from flags and, with ``--config FILE``, a TOML file whose keys
are the long flag names (``socks-port = 1080`` or ``socks_port = 1080``); a flag given on the
command line wins over the file. When a command is ready it prints ONE JSON line on stdout
(``{"ready": true, ...}``) so scripts and tests can wait for it; logs go to stderr. SIGINT and
SIGTERM shut down gracefully: circuits get DESTROY cells and links close.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import signal
import sys
import tomllib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

# Only argparse-level imports at module level: ``zmesh --help`` builds these parsers, and
# must stay instant. The runtime is imported when a command actually runs.
if TYPE_CHECKING:
    import trio

    from zmesh.io_trio.node import NodeConfig

__all__ = [
    "add_status_arguments",
    "run_status",
    "add_node_arguments",
    "add_proxy_arguments",
    "add_rendezvous_arguments",
    "run_node",
    "run_proxy",
    "run_rendezvous",
]

log = logging.getLogger(__name__)

DEFAULT_STATE = pathlib.Path(os.environ.get("XDG_DATA_HOME", "~/.local/share")) / "zmesh"

# option name -> default, for everything a TOML file may set
_NODE_DEFAULTS: dict[str, Any] = {
    "state_dir": str(DEFAULT_STATE / "node"),
    "host": "127.0.0.1",
    "port": 4433,
    "advertise_host": None,
    "rendezvous": [],
    "relay": True,
    "exit": True,
    "exit_allow_loopback": False,
    "exit_allow_private": False,
    "exit_policy": [],
    "socks_host": "127.0.0.1",
    "socks_port": 0,
    "socks_user": None,
    "socks_password": None,
    "hops": 2,
    "cell_aead": "auto",
    "keepalive": 10.0,
    "record_lifetime": 3600.0,
    "refresh_interval": 60.0,
    "status_file": None,
}
_PROXY_DEFAULTS: dict[str, Any] = {
    **_NODE_DEFAULTS,
    "state_dir": str(DEFAULT_STATE / "proxy"),
    "socks_port": 1080,
    "relay": False,
    "exit": False,
}
_RENDEZVOUS_DEFAULTS: dict[str, Any] = {
    "state_dir": str(DEFAULT_STATE / "rendezvous"),
    "host": "127.0.0.1",
    "port": 8443,
    "capacity": 4096,
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML file with any of these options")
    parser.add_argument("--state-dir", help="keys and record sequence (created 0700)")


def _node_like(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    _common(parser)
    parser.add_argument(
        "--rendezvous",
        action="append",
        metavar="URL",
        help="wss://host:port/zmesh/rendezvous (repeatable)",
    )
    parser.add_argument("--host", help=f"link listener address (default {defaults['host']})")
    parser.add_argument("--port", type=int, help=f"link listener port (default {defaults['port']})")
    parser.add_argument("--advertise-host", help="host other nodes dial (default: --host)")
    parser.add_argument("--socks-host", help="SOCKS5 listen address (default 127.0.0.1)")
    parser.add_argument(
        "--socks-port", type=int, help=f"SOCKS5 port, 0 = none (default {defaults['socks_port']})"
    )
    parser.add_argument("--socks-user", help="require RFC 1929 auth (with --socks-password)")
    parser.add_argument("--socks-password", help="password for --socks-user")
    parser.add_argument(
        "--hops",
        type=int,
        choices=(1, 2, 3),
        help="circuit length (default 2; 1 is for benchmarks: no anonymity)",
    )
    parser.add_argument(
        "--cell-aead",
        choices=("auto", "aes-256-gcm", "chacha20-poly1305"),
        help="AEAD of the circuits this node builds (default auto: AES-256-GCM when the CPU "
        "has AES instructions, else ChaCha20-Poly1305)",
    )
    parser.add_argument("--keepalive", type=float, help="link keepalive interval in seconds")
    parser.add_argument(
        "--status-file",
        metavar="PATH",
        help="rewrite PATH with a JSON status snapshot every second "
        "(read it with 'zmesh status PATH')",
    )


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    _node_like(parser, _NODE_DEFAULTS)
    parser.add_argument(
        "--no-relay",
        dest="relay",
        action="store_const",
        const=False,
        help="do not forward cells for others",
    )
    parser.add_argument(
        "--no-exit",
        dest="exit",
        action="store_const",
        const=False,
        help="refuse every stream (relay only)",
    )
    parser.add_argument(
        "--exit-allow-loopback",
        action="store_const",
        const=True,
        help="let the exit reach 127.0.0.0/8 and ::1 (demos and tests only)",
    )
    parser.add_argument(
        "--exit-allow-private",
        action="store_const",
        const=True,
        help="let the exit reach private and link-local ranges",
    )
    parser.add_argument(
        "--exit-policy",
        action="append",
        metavar="RULE",
        help="exit rule such as 'reject *:22' or 'accept 1.2.3.0/24:443' "
        "(repeatable, first match wins; default tail rejects port 25)",
    )


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    _node_like(parser, _PROXY_DEFAULTS)


def add_rendezvous_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8443)")
    parser.add_argument("--capacity", type=int, help="records held at most (default 4096)")


def _settings(args: argparse.Namespace, defaults: dict[str, Any]) -> dict[str, Any]:
    """defaults < TOML file < command-line flags."""
    merged = dict(defaults)
    if getattr(args, "config", None):
        with open(args.config, "rb") as f:
            data = tomllib.load(f)
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in defaults:
                raise SystemExit(f"{args.config}: unknown option {key!r}")
            merged[name] = value
    for name in defaults:
        value = getattr(args, name, None)
        if value is not None:
            merged[name] = value
    return merged


def _node_config(s: dict[str, Any], *, listen: bool) -> NodeConfig:
    from zmesh.io_trio.node import NodeConfig
    from zmesh.io_trio.websocket_link import LinkSettings
    from zmesh.sansio.exit.policy import ExitPolicy, PolicySyntaxError

    try:
        policy = ExitPolicy.from_lines(
            s["exit_policy"],
            allow_loopback=bool(s["exit_allow_loopback"]),
            allow_private=bool(s["exit_allow_private"]),
        )
    except PolicySyntaxError as exc:
        raise SystemExit(f"exit policy: {exc}") from exc
    if listen and s["host"] in ("0.0.0.0", "::", "") and not s["advertise_host"]:
        raise SystemExit(
            f"--host {s['host']} listens on every address; say which one other nodes should "
            "dial with --advertise-host"
        )
    keepalive = float(s["keepalive"])
    return NodeConfig(
        state_dir=s["state_dir"],
        host=s["host"],
        port=int(s["port"]) if listen else 0,
        advertise_host=s["advertise_host"],
        listen=listen,
        relay=bool(s["relay"]),
        exit=bool(s["exit"]),
        exit_policy=policy,
        rendezvous=tuple(s["rendezvous"]),
        record_lifetime=float(s["record_lifetime"]),
        refresh_interval=float(s["refresh_interval"]),
        cell_aead=str(s["cell_aead"]),
        link=LinkSettings(keepalive_interval=keepalive, keepalive_timeout=3 * keepalive + 5),
    )


def _ready(**fields: Any) -> None:
    print(json.dumps({"ready": True, **fields}), flush=True)


async def _until_signal(main: Callable[[trio.Nursery], Awaitable[None]]) -> None:
    """Run ``main(nursery)``; SIGINT/SIGTERM cancel everything (graceful via ``async with``)."""
    import trio

    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("signal %s: shutting down", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch)
        await main(nursery)
        nursery.cancel_scope.cancel()


async def _serve_node(s: dict[str, Any], config: NodeConfig, role: str) -> None:
    import trio

    from zmesh.io_trio.node import Node
    from zmesh.io_trio.socks5 import serve_socks5

    async with Node(config) as node:
        socks_port = None
        if int(s["socks_port"]) or role == "proxy":
            auth = None
            if s["socks_user"]:
                auth = {str(s["socks_user"]): str(s["socks_password"] or "")}

            async def open_stream(host: str, port: int) -> trio.abc.Stream:
                return await node.open_tcp_stream(host, port, hops=int(s["hops"]))

            assert node._nursery is not None
            listeners = await node._nursery.start(
                lambda task_status: serve_socks5(
                    open_stream,
                    host=s["socks_host"],
                    port=int(s["socks_port"]),
                    auth=auth,
                    task_status=task_status,
                )
            )
            socks_port = listeners[0].socket.getsockname()[1]
        if s["status_file"]:
            assert node._nursery is not None
            node._nursery.start_soon(_write_status, node, pathlib.Path(s["status_file"]))
        _ready(
            role=role,
            node_id=node.node_id.hex(),
            link_url=node.link_url,
            socks_port=socks_port,
            peers=len(node.peers),
        )
        await trio.sleep_forever()


async def _write_status(node: Any, path: pathlib.Path) -> None:
    import trio

    while True:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(node.status(full_ids=True), indent=1))
        tmp.replace(path)
        await trio.sleep(1.0)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "status_file",
        metavar="PATH",
        help="the --status-file of a running 'zmesh node' or 'zmesh proxy'",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def run_status(args: argparse.Namespace) -> int:
    try:
        st = json.loads(pathlib.Path(args.status_file).read_text())
    except (OSError, ValueError) as exc:
        print(f"zmesh status: cannot read {args.status_file}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    print(f"node {st['node'][:16]}  listening on {st['port']}  peers known {st['peers']}")
    print(f"links ({len(st['links'])}):")
    for ln in st["links"]:
        rtt = "?" if ln["rtt_ms"] is None else f"{ln['rtt_ms']:.2f} ms"
        print(
            f"  {ln['peer'][:8]}  {ln['kind']:<9} rtt {rtt:<10} cells out {ln['cells_sent']}"
            f" in {ln['cells_received']}"
        )
    print(f"circuits built here ({len(st['circuits'])}):")
    for c in st["circuits"]:
        print(
            f"  {' -> '.join(p[:8] for p in c['path'])}  streams {c['streams']}  "
            f"bytes up {c['bytes_sent']} down {c['bytes_received']}"
        )
    print(f"circuits ending here (exit): {st['exit_circuits']}")
    return 0


def run_node(args: argparse.Namespace) -> int:
    import trio

    s = _settings(args, _NODE_DEFAULTS)
    config = _node_config(s, listen=True)
    trio.run(_until_signal, lambda _n: _serve_node(s, config, "node"))
    return 0


def run_proxy(args: argparse.Namespace) -> int:
    import trio

    s = _settings(args, _PROXY_DEFAULTS)
    if not s["rendezvous"]:
        print("zmesh proxy: give at least one --rendezvous URL", file=sys.stderr)
        return 2
    config = _node_config(s, listen=False)
    config.relay = config.exit = False
    trio.run(_until_signal, lambda _n: _serve_node(s, config, "proxy"))
    return 0


def run_rendezvous(args: argparse.Namespace) -> int:
    import trio

    from zmesh.io_trio.rendezvous import PATH, RendezvousService
    from zmesh.io_trio.state import StateDir

    s = _settings(args, _RENDEZVOUS_DEFAULTS)
    identity = StateDir(s["state_dir"]).load_or_create()
    service = RendezvousService(identity, capacity=int(s["capacity"]))

    async def main(nursery: trio.Nursery) -> None:
        port = await nursery.start(
            lambda task_status: service.serve(s["host"], int(s["port"]), task_status=task_status)
        )
        host = s["host"] if ":" not in s["host"] else f"[{s['host']}]"
        _ready(
            role="rendezvous",
            url=f"wss://{host}:{port}{PATH}",
            cert_sha256=identity.cert_sha256.hex(),
        )
        await trio.sleep_forever()

    trio.run(_until_signal, main)
    return 0
