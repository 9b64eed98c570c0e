"""End-to-end benchmark on loopback: zmesh through 1, 2 and 3 hops vs. direct vs. Tor.

Starts real processes (``zmesh rendezvous``, ``--nodes`` ``zmesh node``\\ s, one ``zmesh proxy``
per hop count, and, like ``../shared/tools/tor_loopback.sh``, ``python3 -m http.server`` on
127.0.0.2 serving random files) and measures with curl, exactly as that script measures Tor:

- throughput: ``--runs`` downloads of ``--mb`` MiB, Mbit/s = bytes·8 / curl ``time_total``, on a
  circuit built beforehand by a small fetch (circuit setup is not part of the timed download);
- time to first byte: ``--ttfb-runs`` fetches of a 1 KiB file, curl ``time_starttransfer``
  (SOCKS handshake + stream open + HTTP request/response on the built circuit);
- uploads: ``--runs`` POSTs of the same file to the test site (``zmesh.io_trio.testsite``),
  which answers with the SHA-256 of what it received (checked), reported as ``upload_mbit_s``;
- the same downloads and uploads directly (no proxy) as the same-run baseline;
- Tor's figures from ``tor_loopback.sh`` in the same run (skipped with ``--no-tor`` or when
  ``tor`` is not installed; the reason is in the JSON).

Prints ONE JSON object on stdout; progress goes to stderr. Usage::

    python bench/e2e.py [--mb 50] [--runs 3] [--ttfb-runs 5] [--hops 1,2,3] [--no-tor]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOR_SCRIPT = ROOT.parent / "shared" / "tools" / "tor_loopback.sh"
WEB_HOST = "127.0.0.2"  # like tor_loopback.sh: the destination is not a relay's address


def log(msg: str) -> None:
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


class Proc:
    def __init__(self, args: list[str], logfile: pathlib.Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.logf = open(logfile, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=self.logf, cwd=ROOT, env=env
        )
        assert self.p.stdout is not None
        deadline = time.monotonic() + 30
        self.info: dict[str, Any] = {}
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            if not line:
                break
            try:
                info = json.loads(line)
            except ValueError:
                continue
            if info.get("ready"):
                self.info = info
                return
        self.stop()
        raise RuntimeError(f"{args} did not start; see {logfile}")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()


class StaticServer:
    """``python3 -m http.server`` on WEB_HOST serving ``root`` (tor_loopback.sh's server)."""

    def __init__(self, root: pathlib.Path, logfile: pathlib.Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind((WEB_HOST, 0))
            self.port = s.getsockname()[1]
        self.logf = open(logfile, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", WEB_HOST,
             "--directory", str(root)],
            stdout=self.logf, stderr=self.logf,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((WEB_HOST, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"http.server did not start; see {logfile}")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            self.p.wait(5)
        self.logf.close()


def stop_all(procs: list[Proc] | list[Proc | StaticServer], tmp: pathlib.Path) -> None:
    """Stop every process, newest first, and remove the scratch directory."""
    for p in reversed(procs):
        p.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def curl(url: str, socks: int | None, write_out: str, timeout: float = 300) -> dict[str, float]:
    args = ["curl", "-sS", "-o", os.devnull, "--max-time", str(int(timeout)), "-w", write_out]
    if socks is not None:
        args += ["--socks5-hostname", f"127.0.0.1:{socks}"]
    r = subprocess.run([*args, url], capture_output=True, text=True, timeout=timeout + 10)
    if r.returncode != 0:
        raise RuntimeError(f"curl {url} failed: {r.stderr.strip()}")
    keys = [k.strip("%{}") for k in write_out.split()]
    return {k: float(v) for k, v in zip(keys, r.stdout.split(), strict=True)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upload(upload_base: str, socks: int | None, path: pathlib.Path, runs: int) -> list[float]:
    """Mbit/s of ``runs`` POSTs of ``path`` to the test site's /sha256, each checked against
    the SHA-256 the server computed of what it received."""
    import hashlib

    want = hashlib.sha256(path.read_bytes()).hexdigest()
    size = path.stat().st_size
    out = []
    for _ in range(runs):
        args = ["curl", "-sS", "--max-time", "300", "--data-binary", f"@{path}",
                "-H", "Content-Type: application/octet-stream", "-w", "\n%{time_total}"]
        if socks is not None:
            args += ["--socks5-hostname", f"127.0.0.1:{socks}"]
        r = subprocess.run([*args, f"{upload_base}/sha256"], capture_output=True, text=True,
                           timeout=320)
        body, _, total = r.stdout.rpartition("\n")
        if r.returncode != 0 or body.strip() != want:
            raise RuntimeError(f"upload failed or corrupted: {r.stderr.strip()} {body[:80]!r}")
        out.append(round(size * 8 / float(total) / 1e6, 1))
    return out


def measure(
    base: str,
    socks: int | None,
    size: int,
    runs: int,
    ttfb_runs: int,
    cpu_pids: dict[str, list[int]] | None = None,
    upload_from: tuple[str, pathlib.Path] | None = None,
) -> dict[str, Any]:
    curl(f"{base}/bytes/1024", socks, "%{time_total}")  # builds the circuit, warms up
    mbit = []
    before = {k: sum(cpu_seconds(p) for p in v) for k, v in (cpu_pids or {}).items()}
    for _ in range(runs):
        r = curl(f"{base}/bytes/{size}", socks, "%{size_download} %{time_total}")
        if int(r["size_download"]) != size:
            raise RuntimeError(f"short download: {r['size_download']} of {size}")
        mbit.append(round(size * 8 / r["time_total"] / 1e6, 1))
    per_100mb = 100e6 / (size * runs)
    cpu = {
        k: round((sum(cpu_seconds(p) for p in v) - before[k]) * per_100mb, 2)
        for k, v in (cpu_pids or {}).items()
    }
    ttfb = [
        round(
            curl(f"{base}/bytes/1024", socks, "%{time_starttransfer}")["time_starttransfer"] * 1e3,
            2,
        )
        for _ in range(ttfb_runs)
    ]
    up = upload(upload_from[0], socks, upload_from[1], runs) if upload_from else []
    return {
        "mbit_s": mbit,
        "mbit_s_median": statistics.median(mbit),
        "ttfb_ms": ttfb,
        "ttfb_ms_median": statistics.median(ttfb),
        **({"cpu_s_per_100mb": cpu} if cpu else {}),
        **({"upload_mbit_s": up, "upload_mbit_s_median": statistics.median(up)} if up else {}),
    }


def link_only(cells: int = 50_000) -> float:
    """Raw WebSocketLink throughput (Mbit/s) between two tasks of this process: the ceiling the
    link layer alone puts on a hop."""
    import trio

    sys.path.insert(0, str(ROOT))
    from zmesh.io_trio.state import NodeIdentity
    from zmesh.io_trio.websocket_link import (
        CELL_SIZE,
        WebSocketLink,
        connect_websocket_link,
        serve_websocket_links,
    )

    server, client = NodeIdentity.generate(), NodeIdentity.generate()
    result: list[float] = []

    async def main() -> None:
        done = trio.Event()

        async def on_link(link: WebSocketLink) -> None:
            async with trio.open_nursery() as n:
                n.start_soon(link.run)
                got = 0
                while got < cells:
                    got += len(await link.receive_cells())
                done.set()
                n.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: serve_websocket_links(server, on_link, task_status=task_status)
            )
            link = await connect_websocket_link("127.0.0.1", port, client)
            nursery.start_soon(link.run)
            cell = bytes(CELL_SIZE)
            t0 = time.perf_counter()
            sent = 0
            while sent < cells:
                k = link.send_cells_nowait([cell] * min(256, cells - sent))
                sent += k
                if k == 0:
                    await link.wait_send_space()
            await done.wait()
            result.append(cells * CELL_SIZE * 8 / (time.perf_counter() - t0) / 1e6)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return round(result[0], 1)


def profile_client(rendezvous: str, host: str, port: int, size: int, top: int = 15) -> list[Any]:
    """cProfile a client node (in this process) fetching ``size`` bytes through 2 hops of the
    running nodes; returns the ``top`` functions by own time as [name, share of total]."""
    import cProfile
    import pstats

    import trio

    sys.path.insert(0, str(ROOT))
    from zmesh.io_trio.node import Node, NodeConfig

    profiler = cProfile.Profile()

    async def main() -> None:
        config = NodeConfig(rendezvous=(rendezvous,), listen=False, relay=False, exit=False)
        async with Node(config) as client:
            for n, prof in ((1024, None), (size, profiler)):
                stream = await client.open_tcp_stream(host, port)
                if prof:
                    prof.enable()
                await stream.send_all(f"GET /bytes/{n} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
                while await stream.receive_some():
                    pass
                if prof:
                    prof.disable()
                await stream.aclose()

    trio.run(main)
    stats = pstats.Stats(profiler)
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in rows.values()) or 1.0
    ranked = sorted(rows.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return [
        [f"{pathlib.Path(f).name}:{line}({name})", round(v[2] / total, 3)]
        for (f, line, name), v in ranked
    ]


def run_tor(mb: int, runs: int, ttfb_runs: int) -> dict[str, Any]:
    if shutil.which("tor") is None:
        return {"skipped": "tor is not installed (apt-get install tor)"}
    if not TOR_SCRIPT.exists():
        return {"skipped": f"{TOR_SCRIPT} not found"}
    env = {**os.environ, "BIG_MB": str(mb), "RUNS_BIG": str(runs), "RUNS_TTFB": str(ttfb_runs)}
    log("running tor_loopback.sh (private Tor network on loopback) ...")
    r = subprocess.run(
        ["bash", str(TOR_SCRIPT)], capture_output=True, text=True, env=env, timeout=600
    )
    if r.returncode != 0:
        return {"skipped": f"tor_loopback.sh failed: {r.stderr.strip()[-400:]}"}
    data = json.loads(r.stdout.strip().splitlines()[-1])
    return {
        k: data[k]
        for k in (
            "tor_version",
            "hops",
            "tor_mbit_s",
            "tor_mbit_s_median",
            "tor_ttfb_ms",
            "tor_ttfb_ms_median",
        )
        if k in data
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ttfb-runs", type=int, default=5)
    ap.add_argument("--hops", default="1,2,3")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--no-tor", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile an in-process client (2 hops) and report its top functions")
    args = ap.parse_args()
    if shutil.which("curl") is None:
        print(json.dumps({"bench": "e2e", "error": "curl not found"}))
        return 1
    size = args.mb * 1024 * 1024
    hops_list = [int(h) for h in args.hops.split(",")]
    started = time.monotonic()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="zmesh-e2e-"))
    procs: list[Proc | StaticServer] = []
    result: dict[str, Any] = {"bench": "e2e", "file_bytes": size, "cpus": os.cpu_count()}
    try:
        rv = Proc(
            ["-m", "zmesh.cli", "rendezvous", "--port", "0", "--state-dir", str(tmp / "rv")],
            tmp / "rv.log",
        )
        procs.append(rv)
        # The destination is what tor_loopback.sh measures Tor against: `python3 -m
        # http.server` serving random files, so every path here (direct, zmesh, Tor) pays the
        # same small server cost.
        www = tmp / "www"
        (www / "bytes").mkdir(parents=True)
        for n in (1024, size):
            with open(www / "bytes" / str(n), "wb") as f:
                f.write(os.urandom(n))
        web = StaticServer(www, tmp / "web.log")
        procs.append(web)
        base = f"http://{WEB_HOST}:{web.port}"
        # Uploads go to the test site, which hashes what it receives (integrity check too).
        sink = Proc(["-m", "zmesh.io_trio.testsite", "--host", WEB_HOST], tmp / "sink.log")
        procs.append(sink)
        upload_from = (f"http://{WEB_HOST}:{sink.info['port']}", www / "bytes" / str(size))
        for i in range(args.nodes):
            procs.append(
                Proc(
                    [
                        "-m",
                        "zmesh.cli",
                        "node",
                        "--port",
                        "0",
                        "--state-dir",
                        str(tmp / f"n{i}"),
                        "--rendezvous",
                        rv.info["url"],
                        "--exit-allow-loopback",
                    ],
                    tmp / f"n{i}.log",
                )
            )
        log(f"{args.nodes} nodes up")
        node_pids = [p.p.pid for p in procs[-args.nodes :]]
        result["link_only_mbit_s"] = link_only()
        log("direct baseline ...")
        result["direct"] = measure(
            base, None, size, args.runs, args.ttfb_runs, upload_from=upload_from
        )
        for hops in hops_list:
            proxy = Proc(
                [
                    "-m",
                    "zmesh.cli",
                    "proxy",
                    "--socks-port",
                    "0",
                    "--hops",
                    str(hops),
                    "--state-dir",
                    str(tmp / f"p{hops}"),
                    "--rendezvous",
                    rv.info["url"],
                ],
                tmp / f"p{hops}.log",
            )
            procs.append(proxy)
            log(f"zmesh {hops} hop(s) ...")
            result[f"zmesh_{hops}_hops"] = measure(
                base,
                proxy.info["socks_port"],
                size,
                args.runs,
                args.ttfb_runs,
                cpu_pids={"client": [proxy.p.pid], "nodes": node_pids, "web": [web.p.pid]},
                upload_from=upload_from,
            )
            proxy.stop()
            procs.remove(proxy)
        if args.profile:
            log("profiling an in-process client through 2 hops ...")
            result["client_profile_top"] = profile_client(rv.info["url"], WEB_HOST, web.port, size)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        result["error"] = str(exc)
    finally:
        stop_all(procs, tmp)
    result["tor"] = (
        {"skipped": "--no-tor"} if args.no_tor else run_tor(args.mb, args.runs, args.ttfb_runs)
    )
    two = result.get("zmesh_2_hops", {}).get("mbit_s_median")
    tor = result["tor"].get("tor_mbit_s_median")
    if two and tor:
        result["zmesh_2_hops_vs_tor_3_hops"] = round(two / tor, 2)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
