"""The ``zmesh`` command as a user runs it: help texts, the demo self-test, a TOML config."""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

import pytest

from zmesh.io_trio import commands

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def zmesh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zmesh.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=ENV,
    )


@pytest.mark.parametrize("command", ["demo", "node", "proxy", "rendezvous", "status"])
def test_every_command_has_help(command: str) -> None:
    r = zmesh(command, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: zmesh " + command in r.stdout


@pytest.mark.integration
def test_demo_self_test_passes() -> None:
    r = zmesh("demo", "--self-test", "--nodes", "5", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "self-test passed" in r.stdout
    assert "client ->" in r.stdout  # the status view shows the path


@pytest.mark.integration
def test_demo_self_test_reports_a_busy_port() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = zmesh("demo", "--self-test", "--socks-port", str(port), timeout=90)
    assert r.returncode == 1
    assert "--socks-port" in r.stderr


def test_toml_config_and_flags_merge(tmp_path: pathlib.Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('port = 5555\nexit-policy = ["reject *:22"]\nrendezvous = ["wss://a/x"]\n')
    parser = argparse.ArgumentParser()
    commands.add_node_arguments(parser)
    args = parser.parse_args(["--config", str(cfg), "--port", "6666"])
    s = commands._settings(args, commands._NODE_DEFAULTS)
    assert s["port"] == 6666  # the flag wins
    assert s["exit_policy"] == ["reject *:22"]
    assert s["rendezvous"] == ["wss://a/x"]
    bad = tmp_path / "bad.toml"
    bad.write_text("no-such-option = 1\n")
    with pytest.raises(SystemExit, match="unknown option"):
        commands._settings(parser.parse_args(["--config", str(bad)]), commands._NODE_DEFAULTS)


@pytest.mark.integration
def test_demo_stops_cleanly_on_ctrl_c() -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "zmesh.cli", "demo", "--socks-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if "Ctrl-C stops the demo" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    assert "stopping: closing circuits and links" in out
    assert "Traceback" not in err
