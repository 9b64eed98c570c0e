"""Interop with aiortc on loopback: our peer as offerer and as answerer.

aiortc is asyncio and we are trio, so aiortc runs in a child process: this very file, run as
``python test_webrtc_aiortc.py offer|answer``, is the aiortc side. It speaks JSON lines on
stdin/stdout (SDP in, SDP out) and echoes every message back on the channel it came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

AIORTC_SIDE = os.path.abspath(__file__)


# ----------------------------------------------------------------------------------------------
# The aiortc child process
# ----------------------------------------------------------------------------------------------

def _aiortc_main(role: str) -> None:
    import asyncio

    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    async def run() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        done = asyncio.Event()

        def echo(channel: Any) -> None:
            @channel.on("message")
            def on_message(message: Any) -> None:
                if message == "__close__":
                    channel.close()
                    return
                channel.send(message)

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            echo(channel)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            print(json.dumps({"state": pc.connectionState}), flush=True)
            if pc.connectionState in ("failed", "closed"):
                done.set()

        if role == "offer":
            channel = pc.createDataChannel("aiortc")
            echo(channel)

            @channel.on("open")
            def on_open() -> None:
                channel.send("hello from aiortc")

            await pc.setLocalDescription(await pc.createOffer())
            print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
            answer = json.loads(await reader.readline())
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        else:
            offer = json.loads(await reader.readline())
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
        stdin_closed = asyncio.ensure_future(reader.read())
        closed = asyncio.ensure_future(done.wait())
        await asyncio.wait([stdin_closed, closed], return_when=asyncio.FIRST_COMPLETED)
        await pc.close()

    asyncio.run(run())


if __name__ == "__main__":
    _aiortc_main(sys.argv[1])
    sys.exit(0)


# ----------------------------------------------------------------------------------------------
# The tests (trio side)
# ----------------------------------------------------------------------------------------------

import trio  # noqa: E402

from zmesh.io_trio.udp import UdpEndpoint  # noqa: E402
from zmesh.io_trio.webrtc import ChannelClosedError, WebRtcChannel, WebRtcPeer  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.trio]


class AiortcChild:
    def __init__(self, role: str) -> None:
        self.proc: trio.Process | None = None
        self.role = role
        self._buffer = b""

    async def start(self, nursery: trio.Nursery) -> None:
        self.proc = await nursery.start(
            lambda task_status=trio.TASK_STATUS_IGNORED: trio.run_process(
                [sys.executable, AIORTC_SIDE, self.role], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, check=False, task_status=task_status))

    async def read_json(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise RuntimeError("aiortc child exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return dict(json.loads(line))

    async def read_sdp(self) -> str:
        while True:
            message = await self.read_json()
            if "sdp" in message:
                return str(message["sdp"])

    async def write_json(self, value: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        await self.proc.stdin.send_all(json.dumps(value).encode() + b"\n")

    async def close(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            await self.proc.stdin.aclose()


async def _echo_roundtrips(channel: WebRtcChannel, sizes: list[int]) -> None:
    for size in sizes:
        payload = os.urandom(size)
        await channel.send(payload)
        with trio.fail_after(10):
            assert await channel.receive() == payload
    await channel.send("text ✓")
    with trio.fail_after(10):
        assert await channel.receive() == "text ✓"


SIZES = [1, 1000, 1200, 5000, 65536, 262144]


async def _open_and_close_many(peer: WebRtcPeer, count: int) -> None:
    for i in range(count):
        channel = await peer.create_channel(f"many-{i}")
        await channel.send(f"ping {i}")
        with trio.fail_after(10):
            assert await channel.receive() == f"ping {i}"
        await channel.aclose()


async def test_we_offer_aiortc_answers() -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            child = AiortcChild("answer")
            await child.start(nursery)
            async with UdpEndpoint(("127.0.0.1", 0)) as endpoint, WebRtcPeer(endpoint) as peer:
                offer = await peer.create_offer()
                await child.write_json({"sdp": offer})
                await peer.set_remote_answer(await child.read_sdp())
                await peer.wait_connected()
                reliable = await peer.create_channel("reliable")
                await _echo_roundtrips(reliable, SIZES)
                unordered = await peer.create_channel("unordered", ordered=False)
                await _echo_roundtrips(unordered, [1, 100, 20000])
                partial = await peer.create_channel("partial", ordered=False, max_retransmits=0)
                await _echo_roundtrips(partial, [1, 100])
                lifetime = await peer.create_channel("lifetime", max_packet_lifetime=500)
                await _echo_roundtrips(lifetime, [1, 100])
                await _open_and_close_many(peer, 100)
                # aiortc closes this one on request; we see the close.
                theirs = await peer.create_channel("they-close")
                await theirs.send("__close__")
                with trio.fail_after(10):
                    with pytest.raises(ChannelClosedError):
                        await theirs.receive()
                await reliable.aclose()
            await child.close()


async def test_aiortc_offers_we_answer() -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            child = AiortcChild("offer")
            await child.start(nursery)
            async with UdpEndpoint(("127.0.0.1", 0)) as endpoint, WebRtcPeer(endpoint) as peer:
                offer = await child.read_sdp()
                answer = await peer.create_answer(offer)
                await child.write_json({"sdp": answer})
                await peer.wait_connected()
                with trio.fail_after(15):
                    theirs = await peer.accept_channel()
                    assert theirs.label == "aiortc"
                    assert await theirs.receive() == "hello from aiortc"
                await _echo_roundtrips(theirs, SIZES)
                ours = await peer.create_channel("ours")
                await _echo_roundtrips(ours, [10, 3000])
            await child.close()
