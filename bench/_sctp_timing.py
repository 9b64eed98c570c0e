"""SCTP + DCEP throughput in memory: our sans-IO stack against aiortc's RTCSctpTransport.

``measure() -> dict`` moves data over one data channel between two ends wired back to back in
one process (no DTLS, no sockets), so the figure is the SCTP/DCEP CPU cost alone: both ends'
work is on the one core that runs the benchmark. ``bench/datachannel.py`` (the peer-connection
engineer's) builds on it. Run directly to print one JSON object::

    python bench/_sctp_timing.py [--mib 64] [--aiortc-mib 8] [--message 65536]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import contextlib

from zmesh.sansio.webrtc.datachannel import (
    ChannelOpened,
    DataChannelEndpoint,
    MessageReceived,
)
from zmesh.sansio.webrtc.sctp import CRC32C_BACKEND, SctpAssociation, SendBufferFull
from zmesh.sansio.wire import ProtocolError


def _pair(seed: int) -> tuple[DataChannelEndpoint, DataChannelEndpoint]:
    rng = random.Random(seed)
    a = DataChannelEndpoint(
        SctpAssociation(is_client=True, random=rng.randbytes), is_dtls_client=True
    )
    b = DataChannelEndpoint(
        SctpAssociation(is_client=False, random=rng.randbytes), is_dtls_client=False
    )
    return a, b


def measure_ours(total_bytes: int, message_size: int, *, per_packet: bool) -> dict[str, Any]:
    """Send ``total_bytes`` in ``message_size`` messages a→b. ``per_packet``: the receiver
    answers after every packet (a driver that handles one datagram at a time); otherwise it
    takes every packet of a flight before answering (a recvmmsg-style driver)."""
    a, b = _pair(1)
    now = 0.0
    a.connect(now)
    b.connect(now)
    received = 0
    packets = 0
    opened = False

    def drain(end: DataChannelEndpoint) -> None:
        nonlocal received, opened
        while (event := end.next_event()) is not None:
            if isinstance(event, MessageReceived):
                received += len(event.data)
            elif isinstance(event, ChannelOpened):
                opened = True

    def exchange(src: DataChannelEndpoint, dst: DataChannelEndpoint) -> int:
        nonlocal packets
        out = src.data_to_send(now)
        for packet in out:
            with contextlib.suppress(ProtocolError):
                dst.receive_data(packet, now)
            if per_packet:
                drain(dst)
                for reply in dst.data_to_send(now):
                    src.receive_data(reply, now)
        packets += len(out)
        return len(out)

    chan = a.create_channel("bench", now=now)
    while not opened:
        exchange(a, b)
        exchange(b, a)
        drain(a)
        drain(b)
    message = os.urandom(message_size)
    count = total_bytes // message_size
    queued = 0
    packets = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    while received < count * message_size:
        while queued < count:
            try:
                a.send(chan.id, message, now)
            except SendBufferFull:
                break
            queued += 1
        moved = exchange(a, b) + exchange(b, a)
        drain(a)
        drain(b)
        if not moved:
            timer = min(t for t in (a.get_timer(), b.get_timer()) if t is not None)
            now = max(now, timer)
            a.handle_timer(now)
            b.handle_timer(now)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    stats = a.association.stats
    return {
        "mbit_per_s": round(received * 8 / elapsed / 1e6, 1),
        "seconds": round(elapsed, 3),
        "bytes": received,
        "packets_a_to_b": stats.packets_sent,
        "retransmissions": stats.retransmissions,
        "us_per_packet_both_ends": round(elapsed / max(1, stats.packets_sent) * 1e6, 2),
        "cpu_mbit_per_s": round(received * 8 / cpu / 1e6, 1),
    }


class _FakeDtls:
    def __init__(self, role: str) -> None:
        self._role = role
        self.state = "connected"
        self._data_receiver: Any = None
        self.peer: _FakeDtls | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    def _register_data_receiver(self, receiver: Any) -> None:
        self._data_receiver = receiver

    def _unregister_data_receiver(self, receiver: Any) -> None:
        self._data_receiver = None

    async def _send_data(self, data: bytes) -> None:
        # Hand over on the next loop turn, as a socket would.
        asyncio.get_running_loop().call_soon(self._deliver, bytes(data))

    def _deliver(self, data: bytes) -> None:
        receiver = None if self.peer is None else self.peer._data_receiver
        if receiver is not None:
            task = asyncio.ensure_future(receiver._handle_data(data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _aiortc_run(total_bytes: int, message_size: int) -> dict[str, Any]:
    from aiortc.rtcdatachannel import RTCDataChannel, RTCDataChannelParameters
    from aiortc.rtcsctptransport import RTCSctpCapabilities, RTCSctpTransport

    da, db = _FakeDtls("client"), _FakeDtls("server")
    da.peer, db.peer = db, da
    sa, sb = RTCSctpTransport(da), RTCSctpTransport(db)  # type: ignore[arg-type]
    caps = RTCSctpCapabilities(maxMessageSize=262144)
    await asyncio.gather(sa.start(caps, 5000), sb.start(caps, 5000))
    done = asyncio.Event()
    received = 0
    count = total_bytes // message_size

    def on_channel(channel: Any) -> None:
        @channel.on("message")  # type: ignore[misc]
        def on_message(message: bytes) -> None:
            nonlocal received
            received += len(message)
            if received >= count * message_size:
                done.set()

    sb.on("datachannel", on_channel)
    chan = RTCDataChannel(sa, RTCDataChannelParameters(label="bench"))
    while chan.readyState != "open":
        await asyncio.sleep(0.001)
    message = os.urandom(message_size)
    start = time.perf_counter()
    cpu_start = time.process_time()
    for _ in range(count):
        chan.send(message)
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    await sa.stop()
    await sb.stop()
    return {
        "mbit_per_s": round(received * 8 / elapsed / 1e6, 1),
        "seconds": round(elapsed, 3),
        "bytes": received,
        "cpu_mbit_per_s": round(received * 8 / cpu / 1e6, 1),
    }


def measure_aiortc(total_bytes: int, message_size: int) -> dict[str, Any]:
    try:
        import aiortc  # noqa: F401
    except ImportError:
        return {"error": "aiortc not installed"}
    return asyncio.run(_aiortc_run(total_bytes, message_size))


def measure(
    total_mib: float = 64, aiortc_mib: float = 8, message_size: int = 65536
) -> dict[str, Any]:
    """Throughput of our SCTP+DCEP and aiortc's, one data channel, in memory."""
    total = int(total_mib * 1024 * 1024)
    ours = measure_ours(total, message_size, per_packet=True)
    ours_batched = measure_ours(total, message_size, per_packet=False)
    theirs = measure_aiortc(int(aiortc_mib * 1024 * 1024), message_size)
    result: dict[str, Any] = {
        "benchmark": "sctp_in_memory",
        "message_size": message_size,
        "crc32c_backend": CRC32C_BACKEND,
        "ours_per_packet": ours,
        "ours_batched": ours_batched,
        "baseline_aiortc": theirs,
    }
    if theirs.get("mbit_per_s"):
        # CPU-time ratios: the wall clock on a shared machine is noisy.
        result["speedup_vs_aiortc_per_packet"] = round(
            ours["cpu_mbit_per_s"] / theirs["cpu_mbit_per_s"], 1
        )
        result["speedup_vs_aiortc_batched"] = round(
            ours_batched["cpu_mbit_per_s"] / theirs["cpu_mbit_per_s"], 1
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=float, default=64)
    parser.add_argument("--aiortc-mib", type=float, default=8)
    parser.add_argument("--message", type=int, default=65536)
    args = parser.parse_args()
    print(json.dumps(measure(args.mib, args.aiortc_mib, args.message)))


if __name__ == "__main__":
    main()
