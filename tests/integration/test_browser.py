"""A real browser through the demo's SOCKS5 proxy: headless Chromium fetches the demo page."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium"),
]


def test_chromium_fetches_the_demo_page_through_the_circuit(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "zmesh.cli", "demo", "--socks-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert demo.stdout is not None
    try:
        text = ""
        deadline = time.monotonic() + 60
        while "Ctrl-C stops the demo" not in text and time.monotonic() < deadline:
            text += demo.stdout.readline()
        socks = re.search(r"SOCKS5 proxy open on 127\.0\.0\.1:(\d+)", text)
        web = re.search(r"demo website http://127\.0\.0\.1:(\d+)/", text)
        assert socks and web, text
        before = max(int(d) for d in re.findall(r"down (\d+)", text))
        page = subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                f"--user-data-dir={tmp_path}",
                f"--proxy-server=socks5://127.0.0.1:{socks.group(1)}",
                "--proxy-bypass-list=<-loopback>",  # Chromium never proxies loopback otherwise
                "--dump-dom",
                f"http://localhost:{web.group(1)}/",
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert "Hello through zmesh" in page.stdout, page.stderr[-2000:]
        # The client's circuit counted the browser's bytes (the status view refreshes every 2 s).
        later = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            later += demo.stdout.readline()
            downs = [int(d) for d in re.findall(r"down (\d+)", later)]
            if downs and max(downs) > before:
                break
        assert downs and max(downs) > before, later
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(20)
        except subprocess.TimeoutExpired:
            demo.kill()
