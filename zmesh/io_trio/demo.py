"""``zmesh demo``: a whole mesh on loopback in one command, then a SOCKS5 proxy into it.

Starts, in this process and on 127.0.0.1 only (no accounts, no internet): a rendezvous
service, ``--nodes`` relay/exit nodes (default 5) that publish signed peer records to it, a
small local website, and a client node. The client builds a ``--hops`` circuit (default 2),
fetches the website through it twice as a self-check (once through the node API, once through
the SOCKS5 port with a hostname the exit resolves), shows a status view (nodes, path, per-hop
RTT, bytes, circuits) and keeps the SOCKS5 proxy open on ``--socks-port`` (default 1080) until
Ctrl-C, refreshing the view.

The exits' policy allows loopback explicitly (``ExitPolicy(allow_loopback=True)``) so they can
reach the demo website; a real node refuses loopback by default.

``--self-test`` runs the self-check and exits 0, or 1 with the reason. ``--simulated`` runs
the virtual-time simulator demo (``zmesh.sim.demo``) instead.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import signal
import struct
import sys
import time

import trio

from zmesh.io_trio.node import Node, NodeConfig
from zmesh.io_trio.rendezvous import PATH, RendezvousService
from zmesh.io_trio.state import NodeIdentity
from zmesh.io_trio.testsite import serve_test_site
from zmesh.io_trio.websocket_link import LinkSettings, WebSocketLink
from zmesh.sansio.exit.policy import ExitPolicy

__all__ = ["run", "Demo", "SelfCheckFailed", "socks5_http_get"]

INDEX = (
    b"<!doctype html><html><head><title>zmesh demo</title></head><body>"
    b"<h1>Hello through zmesh</h1><p>This page came to you through an onion circuit "
    b"on your own machine.</p></body></html>\n"
)
DEMO_LINK = LinkSettings(keepalive_interval=1.0, keepalive_timeout=10.0)


class SelfCheckFailed(Exception):
    pass


async def _read_all(stream: trio.abc.Stream, limit: int = 1 << 20) -> bytes:
    out = bytearray()
    while len(out) <= limit:
        data = await stream.receive_some(65536)
        if not data:
            break
        out += data
    return bytes(out)


async def socks5_http_get(socks_port: int, host: str, port: int, path: str = "/") -> bytes:
    """GET ``http://host:port/path`` through a SOCKS5 proxy (RFC 1928, no auth, domain name
    address type so the exit resolves the name); returns the HTTP body."""
    s = await trio.open_tcp_stream("127.0.0.1", socks_port)
    try:
        await s.send_all(b"\x05\x01\x00")
        if await _exactly(s, 2) != b"\x05\x00":
            raise SelfCheckFailed("SOCKS5 method negotiation failed")
        name = host.encode()
        await s.send_all(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
        head = await _exactly(s, 4)
        if head[1] != 0:
            raise SelfCheckFailed(f"SOCKS5 CONNECT refused with reply code {head[1]}")
        await _exactly(s, {1: 4, 4: 16}.get(head[3], 0) + 2 if head[3] != 3 else 0)
        if head[3] == 3:
            await _exactly(s, (await _exactly(s, 1))[0] + 2)
        await s.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        response = await _read_all(s)
    finally:
        await s.aclose()
    head_part, _, body = response.partition(b"\r\n\r\n")
    if not head_part.startswith(b"HTTP/1.1 200"):
        raise SelfCheckFailed(f"unexpected HTTP reply {head_part[:40]!r}")
    return body


async def _exactly(stream: trio.abc.Stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))
        if not data:
            raise SelfCheckFailed("connection closed early")
        buf += data
    return bytes(buf)


class Demo:
    """The demo mesh; usable from tests (``async with Demo(...)``)."""

    def __init__(self, nodes: int = 5, hops: int = 2) -> None:
        if nodes < hops + 1:
            raise ValueError(f"{hops} hops need at least {hops + 1} nodes")
        self.n_nodes = nodes
        self.hops = hops
        self.nodes: list[Node] = []
        self.client: Node | None = None
        self.web_port = 0
        self.rendezvous_url = ""
        self._stack = contextlib.AsyncExitStack()

    async def start(self, nursery: trio.Nursery) -> None:
        service = RendezvousService(NodeIdentity.generate())
        port = await nursery.start(service.serve)
        self.rendezvous_url = f"wss://127.0.0.1:{port}{PATH}"
        self.web_port = await nursery.start(
            lambda task_status: serve_test_site(
                {"/": INDEX, "/index.html": INDEX}, task_status=task_status
            )
        )
        policy = ExitPolicy(allow_loopback=True)
        for _ in range(self.n_nodes):
            node = Node(
                NodeConfig(
                    rendezvous=(self.rendezvous_url,),
                    exit_policy=policy,
                    link=DEMO_LINK,
                    refresh_interval=5.0,
                )
            )
            self.nodes.append(await self._stack.enter_async_context(node))
        self.client = Node(
            NodeConfig(
                rendezvous=(self.rendezvous_url,),
                listen=False,
                relay=False,
                exit=False,
                link=DEMO_LINK,
                refresh_interval=5.0,
            )
        )
        await self._stack.enter_async_context(self.client)

    async def stop(self) -> None:
        # The exit stack closes the nodes in reverse order and passes a cancellation from one
        # to the next, so every node's nursery closes inside the scope it was opened in; each
        # node shields its own DESTROY-sending shutdown.
        await self._stack.aclose()

    async def self_check(self, socks_port: int | None) -> list[str]:
        """Fetch the site through the circuit (API, then SOCKS5); returns lines to print."""
        assert self.client is not None
        lines = []
        t0 = time.perf_counter()
        info = await self.client.current_circuit(self.hops)
        lines.append(
            f"circuit built through {len(info.path)} hops in "
            f"{(time.perf_counter() - t0) * 1e3:.1f} ms"
        )
        await self._measure_path_rtts(info.path)
        t0 = time.perf_counter()
        stream = await self.client.open_tcp_stream("127.0.0.1", self.web_port, hops=self.hops)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n")
        response = await _read_all(stream)
        await stream.aclose()
        if not response.endswith(INDEX):
            raise SelfCheckFailed("the page fetched through the circuit is not the page served")
        lines.append(
            f"fetched the demo page through the circuit: {len(INDEX)} bytes, "
            f"sha256 {hashlib.sha256(INDEX).hexdigest()[:16]}…, "
            f"{(time.perf_counter() - t0) * 1e3:.1f} ms"
        )
        if socks_port is not None:
            body = await socks5_http_get(socks_port, "localhost", self.web_port)
            if body != INDEX:
                raise SelfCheckFailed("the page fetched through SOCKS5 is not the page served")
            lines.append("fetched it again through SOCKS5 with a hostname (resolved at the exit)")
        return lines

    async def _measure_path_rtts(self, path: tuple[bytes, ...]) -> None:
        """Ping every link along the path now, so the status view has RTTs at once."""
        assert self.client is not None
        by_id = {n.node_id: n for n in self.nodes}
        links = []
        prev: Node | None = self.client
        for hop in path:
            link = prev.links.get(hop) if prev is not None else None
            if isinstance(link, WebSocketLink):
                await link.ping()
                links.append(link)
            prev = by_id.get(hop)
        with trio.move_on_after(1.0):
            while any(link.stats.rtt is None for link in links):
                await trio.sleep(0.01)

    def status_lines(self) -> list[str]:
        assert self.client is not None
        by_id = {n.node_id: n for n in self.nodes}
        out = ["nodes:"]
        for n in self.nodes:
            st = n.status()
            out.append(
                f"  {st['node']}  port {st['port']:<5}  links {len(n.links):<2}"
                f"  exit circuits {st['exit_circuits']:<3} relayed {n.onion.relayed_circuit_count}"
            )
        out.append("client circuits:")
        for info in list(self.client._circuits.values()):
            hops = []
            prev = self.client
            for hop_id in info.path:
                link = prev.links.get(hop_id) if prev is not None else None
                rtt = link.stats.rtt if link is not None else None
                hops.append(f"{hop_id[:4].hex()} ({'?' if rtt is None else f'{rtt * 1e3:.2f}'} ms)")
                prev = by_id.get(hop_id)  # type: ignore[assignment]
            streams = info.streams
            sent = streams.bytes_sent if streams is not None else 0
            recv = streams.bytes_received if streams is not None else 0
            build = "?" if info.build_rtt is None else f"{info.build_rtt * 1e3:.1f} ms"
            out.append(f"  client -> {' -> '.join(hops)} -> exit")
            out.append(
                f"    built in {build}; streams open {len(streams) if streams is not None else 0};"
                f" bytes up {sent}, down {recv}"
            )
        if not self.client._circuits:
            out.append("  (none yet)")
        return out


async def _run_demo(args: argparse.Namespace, nodes: int, cancel: trio.CancelScope) -> int:
    from zmesh.io_trio.socks5 import serve_socks5

    demo = Demo(nodes, args.hops)
    socks_port = args.socks_port if args.socks_port is not None else (0 if args.self_test else 1080)
    async with trio.open_nursery() as nursery:
        try:
            print(
                f"zmesh demo: starting a rendezvous, {nodes} relay/exit nodes and a client on "
                "127.0.0.1 ...",
                flush=True,
            )
            await demo.start(nursery)
            assert demo.client is not None
            client = demo.client

            async def open_stream(host: str, port: int) -> trio.abc.Stream:
                return await client.open_tcp_stream(host, port, hops=args.hops)

            try:
                listeners = await nursery.start(
                    lambda task_status: serve_socks5(
                        open_stream, host="127.0.0.1", port=socks_port, task_status=task_status
                    )
                )
            except OSError as exc:
                raise SelfCheckFailed(
                    f"cannot listen on SOCKS5 port {socks_port} ({exc.strerror}); "
                    "pick another with --socks-port"
                ) from exc
            bound = listeners[0].socket.getsockname()[1]
            print(
                f"rendezvous {demo.rendezvous_url}; demo website http://127.0.0.1:{demo.web_port}/",
                flush=True,
            )
            with trio.fail_after(60):
                for line in await demo.self_check(bound):
                    print("  ok:", line, flush=True)
            print("\n".join(demo.status_lines()), flush=True)
            if args.self_test:
                print("self-test passed", flush=True)
                return 0
            print(
                f"\nSOCKS5 proxy open on 127.0.0.1:{bound}. Try:\n"
                f"  curl --socks5-hostname 127.0.0.1:{bound} http://localhost:{demo.web_port}/\n"
                "or set your browser's SOCKS5 proxy to 127.0.0.1:"
                f"{bound} (with 'proxy DNS when using SOCKS v5').\nCtrl-C stops the demo.\n",
                flush=True,
            )
            tty = sys.stdout.isatty()
            while True:
                await trio.sleep(2.0)
                lines = demo.status_lines()
                if tty:
                    # Redraw the status block in place.
                    sys.stdout.write(f"\x1b[{len(lines)}F\x1b[J" if _drawn[0] else "")
                    _drawn[0] = True
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()
        except Exception as exc:  # the self-test reports every failure with its reason
            reason = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
            print(f"self-test FAILED: {type(exc).__name__}: {reason}", file=sys.stderr, flush=True)
            return 1
        finally:
            await demo.stop()
            nursery.cancel_scope.cancel()
    return 0


_drawn = [False]


def run(args: argparse.Namespace) -> int:
    if getattr(args, "simulated", False):
        from zmesh.sim.demo import run as run_simulated

        if args.nodes is None:
            args.nodes = 8
        return int(run_simulated(args))
    nodes = args.nodes if args.nodes is not None else 5
    result = [130]

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        print("\nstopping: closing circuits and links ...", flush=True)
                        result[0] = 0
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(watch)
            result[0] = await _run_demo(args, nodes, nursery.cancel_scope)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return result[0]
