"""``python -m zmesh.tools.webrtc_echo`` as a process: page, POST /offer, echo, /status."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest
import trio

from zmesh.io_trio.udp import UdpEndpoint
from zmesh.io_trio.webrtc import WebRtcPeer

pytestmark = [pytest.mark.integration, pytest.mark.trio]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_echo_tool_process() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zmesh.tools.webrtc_echo",
                             "--http", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            with trio.fail_after(20):
                while True:
                    try:
                        page = await client.get(base + "/")
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.1)
            assert page.status_code == 200 and "runEcho" in page.text
            bad = await client.post(base + "/offer", content=b"v=0\r\ns=-\r\n")
            assert bad.status_code == 400 and "m=" in bad.text
            async with UdpEndpoint(("127.0.0.1", 0)) as endpoint, WebRtcPeer(endpoint) as peer:
                offer = await peer.create_offer()
                answer = await client.post(base + "/offer", content=offer.encode())
                assert answer.status_code == 200
                assert answer.headers["content-type"] == "application/sdp"
                await peer.set_remote_answer(answer.text)
                with trio.fail_after(15):
                    await peer.wait_connected()
                channel = await peer.create_channel("echo")
                for message in (b"\x00" * 1, "string", b"x" * 100_000, b""):
                    await channel.send(message)
                    with trio.fail_after(10):
                        assert await channel.receive() == message
                status = await client.get(base + "/status")
                assert '"state": "connected"' in status.text and "ECDHE" in status.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
