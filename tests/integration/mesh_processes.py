"""Helpers for the integration tests: a rendezvous, relay/exit nodes, SOCKS5 proxies and a web
server as real processes on loopback.

Every process is started with ``python -m zmesh.cli ...`` (or the test site module), waited
for through the one JSON line it prints when ready, and killed by its own PID at the end.
"""

from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Proc:
    def __init__(self, args: list[str], name: str, log_dir: pathlib.Path) -> None:
        self.name = name
        self.log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        self.p = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT, env=env
        )
        self.info: dict[str, Any] = self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.p.stdout], [], [], 0.2)
            if ready:
                line = self.p.stdout.readline()
                if not line:
                    break
                try:
                    info = json.loads(line)
                except ValueError:
                    continue
                if info.get("ready"):
                    return dict(info)
            if self.p.poll() is not None:
                break
        self.stop()
        log = pathlib.Path(self.log.name).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not become ready:\n{log}")

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(5)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class Mesh:
    """A rendezvous, ``n`` nodes and the proxies tests ask for, under ``tmp``."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.rendezvous = self.start(
            ["-m", "zmesh.cli", "rendezvous", "--port", "0", "--state-dir", str(tmp / "rv")],
            "rendezvous",
        )
        self.url: str = self.rendezvous.info["url"]
        self.web = self.start(["-m", "zmesh.io_trio.testsite"], "web")
        self.web_port: int = self.web.info["port"]
        self.nodes: list[Proc] = []

    def start(self, args: list[str], name: str) -> Proc:
        proc = Proc(args, name, self.tmp)
        self.procs.append(proc)
        return proc

    def add_node(self, *extra: str) -> Proc:
        name = f"node{len(self.nodes)}"
        proc = self.start(
            [
                "-m",
                "zmesh.cli",
                "node",
                "--port",
                "0",
                "--state-dir",
                str(self.tmp / name),
                "--rendezvous",
                self.url,
                "--keepalive",
                "1",
                "--exit-allow-loopback",
                "--status-file",
                str(self.tmp / f"{name}.status"),
                *extra,
            ],
            name,
        )
        self.nodes.append(proc)
        return proc

    def add_proxy(self, hops: int = 2, name: str = "proxy") -> Proc:
        return self.start(
            [
                "-m",
                "zmesh.cli",
                "proxy",
                "--socks-port",
                "0",
                "--state-dir",
                str(self.tmp / name),
                "--rendezvous",
                self.url,
                "--hops",
                str(hops),
                "--keepalive",
                "1",
                "--status-file",
                str(self.tmp / f"{name}.status"),
            ],
            name,
        )

    def status(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while True:
            try:
                return dict(json.loads((self.tmp / f"{name}.status").read_text()))
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
