"""DataChannel throughput and round-trip latency on loopback: zmesh↔zmesh vs aiortc↔aiortc.

``python bench/datachannel.py [--seconds 3] [--size 65536] [--pings 200] [--repeat N]
[--profile FILE]`` prints one JSON object: zmesh's and aiortc's throughput (Mbit/s) and RTT
(median, p99 ms) measured in the same run, and the throughput ratio. With ``--repeat N`` the
two stacks run alternately N times (so both see the same moments of a shared machine); the
``zmesh``/``aiortc_baseline`` figures are then per-field medians, ``runs`` lists every pair and
``spread`` gives min/median/max of each stack's throughput and of the per-pair ratio. Each
stack runs as two processes (offerer here, answerer as a child of this same file with ``--child
zmesh|aiortc``), so each side has its own interpreter as it would in real use. Throughput: the
offerer sends ``size``-byte binary messages on a reliable ordered channel for ``seconds``, then
asks the answerer how many bytes it received; the figure is received bits over the time until
that answer. Latency: ``pings`` sequential 64-byte round trips on a second channel; median and
99th percentile. ``--profile FILE`` runs the zmesh offerer under cProfile and writes the stats
to FILE; ``ZMESH_BENCH_CHILD_PROFILE=FILE`` does the same for the answering child.
``--inprocess MB`` adds the CPU ceiling: two sans-IO peers in this process, no sockets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


# ---------------------------------------------------------------------------------- zmesh side

def _offload() -> bool:
    """``--no-offload`` (inherited by the child through the environment) turns UDP GSO/GRO off."""
    return os.environ.get("ZMESH_BENCH_NO_OFFLOAD") != "1"


def _zmesh_child() -> None:
    import trio

    sys.path.insert(0, ROOT)
    from zmesh.io_trio.udp import UdpEndpoint
    from zmesh.io_trio.webrtc import ChannelClosedError, WebRtcChannel, WebRtcError, WebRtcPeer

    async def sink(channel: WebRtcChannel) -> None:
        received = 0
        try:
            async for message in channel:
                if message == "done":
                    await channel.send(str(received))
                elif message == "cpu":
                    await channel.send(repr(time.process_time()))
                elif isinstance(message, bytes):
                    received += len(message)
                else:
                    await channel.send(message)
        except (ChannelClosedError, WebRtcError):
            return

    async def main() -> None:
        offer = json.loads(sys.stdin.readline())["sdp"]
        async with UdpEndpoint(("127.0.0.1", 0), offload=_offload()) as endpoint, \
                WebRtcPeer(endpoint) as peer:
            answer = await peer.create_answer(offer)
            print(json.dumps({"sdp": answer}), flush=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_exit_when_stdin_closes, nursery)
                try:
                    while True:
                        nursery.start_soon(sink, await peer.accept_channel())
                except WebRtcError:
                    nursery.cancel_scope.cancel()

    async def _exit_when_stdin_closes(nursery: Any) -> None:
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()

    trio.run(main)


def _zmesh_parent(seconds: float, size: int, pings: int) -> dict[str, float]:
    import trio

    sys.path.insert(0, ROOT)
    from zmesh.io_trio.udp import UdpEndpoint
    from zmesh.io_trio.webrtc import WebRtcPeer

    result: dict[str, float] = {}

    async def main() -> None:
        child = subprocess.Popen([sys.executable, HERE, "--child", "zmesh"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdin is not None and child.stdout is not None
        try:
            async with UdpEndpoint(("127.0.0.1", 0), offload=_offload()) as endpoint, \
                WebRtcPeer(endpoint) as peer:
                offer = await peer.create_offer()
                child.stdin.write(json.dumps({"sdp": offer}) + "\n")
                child.stdin.flush()
                answer = await trio.to_thread.run_sync(child.stdout.readline)
                await peer.set_remote_answer(json.loads(answer)["sdp"])
                await peer.wait_connected()
                bulk = await peer.create_channel("bulk")
                payload = os.urandom(size)
                await bulk.send("cpu")
                child_cpu = float(await bulk.receive())
                cpu = time.process_time()
                start = time.perf_counter()
                sent = 0
                while time.perf_counter() - start < seconds:
                    await bulk.send(payload)
                    sent += size
                await bulk.send("done")
                received = int(await bulk.receive())
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu
                await bulk.send("cpu")
                child_cpu = float(await bulk.receive()) - child_cpu
                result["throughput_mbit_s"] = received * 8 / elapsed / 1e6
                result["bytes_received"] = received
                result.update(_cpu_figures(received, elapsed, cpu, child_cpu))
                sctp_stats = getattr(getattr(peer.pc.sctp, "association", None), "stats", None)
                if sctp_stats is not None:
                    for name in ("retransmissions", "fast_retransmissions", "t3_expirations",
                                 "packets_sent", "packets_received", "cwnd"):
                        result[f"sender_{name}"] = getattr(sctp_stats, name, None)
                ping = await peer.create_channel("ping")
                rtts = []
                for i in range(pings):
                    t0 = time.perf_counter()
                    await ping.send(f"{i:064d}")
                    await ping.receive()
                    rtts.append((time.perf_counter() - t0) * 1000)
                result.update(_latency(rtts))
        finally:
            child.stdin.close()
            child.wait(timeout=10)

    trio.run(main)
    return result


# --------------------------------------------------------------------------------- aiortc side

def _aiortc_child() -> None:
    import asyncio

    from aiortc import RTCPeerConnection, RTCSessionDescription

    async def main() -> None:
        loop = asyncio.get_running_loop()
        offer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))["sdp"]
        pc = RTCPeerConnection()

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            received = 0

            @channel.on("message")
            def on_message(message: Any) -> None:
                nonlocal received
                if message == "done":
                    channel.send(str(received))
                elif message == "cpu":
                    channel.send(repr(time.process_time()))
                elif isinstance(message, bytes):
                    received += len(message)
                else:
                    channel.send(message)

        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        await pc.close()

    asyncio.run(main())


def _aiortc_parent(seconds: float, size: int, pings: int) -> dict[str, float]:
    import asyncio

    from aiortc import RTCPeerConnection, RTCSessionDescription

    result: dict[str, float] = {}

    async def main() -> None:
        child = subprocess.Popen([sys.executable, HERE, "--child", "aiortc"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdin is not None and child.stdout is not None
        loop = asyncio.get_running_loop()
        pc = RTCPeerConnection()
        try:
            bulk = pc.createDataChannel("bulk")
            opened = asyncio.Event()
            bulk.on("open", opened.set)
            replies: asyncio.Queue[Any] = asyncio.Queue()
            bulk.on("message", replies.put_nowait)
            await pc.setLocalDescription(await pc.createOffer())
            child.stdin.write(json.dumps({"sdp": pc.localDescription.sdp}) + "\n")
            child.stdin.flush()
            answer = json.loads(await loop.run_in_executor(None, child.stdout.readline))["sdp"]
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            await asyncio.wait_for(opened.wait(), 20)
            payload = os.urandom(size)
            bulk.send("cpu")
            child_cpu = float(await asyncio.wait_for(replies.get(), 20))
            cpu = time.process_time()
            low = asyncio.Event()
            bulk.bufferedAmountLowThreshold = 1 << 20
            bulk.on("bufferedamountlow", low.set)
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                if bulk.bufferedAmount > 4 << 20:
                    low.clear()
                    await low.wait()
                bulk.send(payload)
                await asyncio.sleep(0)
            bulk.send("done")
            received = int(await asyncio.wait_for(replies.get(), 120))
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
            bulk.send("cpu")
            child_cpu = float(await asyncio.wait_for(replies.get(), 20)) - child_cpu
            result["throughput_mbit_s"] = received * 8 / elapsed / 1e6
            result["bytes_received"] = received
            result.update(_cpu_figures(received, elapsed, cpu, child_cpu))
            ping = pc.createDataChannel("ping")
            ping_open = asyncio.Event()
            ping.on("open", ping_open.set)
            pongs: asyncio.Queue[Any] = asyncio.Queue()
            ping.on("message", pongs.put_nowait)
            await asyncio.wait_for(ping_open.wait(), 20)
            rtts = []
            for i in range(pings):
                t0 = time.perf_counter()
                ping.send(f"{i:064d}")
                await asyncio.wait_for(pongs.get(), 20)
                rtts.append((time.perf_counter() - t0) * 1000)
            result.update(_latency(rtts))
        finally:
            await pc.close()
            child.stdin.close()
            child.wait(timeout=10)

    asyncio.run(main())
    return result


def _inprocess(megabytes: int, size: int) -> dict[str, float]:
    """Two sans-IO PeerConnections wired together in this process (no sockets, one core):
    the CPU ceiling of the stack for both directions of work together."""
    sys.path.insert(0, ROOT)
    from zmesh.sansio.webrtc.peerconnection import ConnectionState, PeerConnection

    a_addr, b_addr = ("127.0.0.1", 40001), ("127.0.0.1", 40002)
    a, b = PeerConnection(), PeerConnection()
    a.add_host_address(a_addr)
    b.add_host_address(b_addr)
    now = 0.0
    a.create_offer(now)
    a.finish_gathering()
    b.set_remote_description(a.current_local_description(), now)
    b.finish_gathering()
    a.set_remote_description(b.create_answer(now), now)
    received = 0

    def step() -> None:
        nonlocal now, received
        for data, _ in a.datagrams_to_send(now):
            b.receive_datagram(data, a_addr, now)
        for data, _ in b.datagrams_to_send(now):
            a.receive_datagram(data, b_addr, now)
        while a.next_event() is not None:
            pass
        while (event := b.next_event()) is not None:
            if type(event).__name__ == "MessageReceived":
                received += len(event.data)
        now += 0.0005
        timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
        if timers and min(timers) <= now:
            a.handle_timer(now)
            b.handle_timer(now)

    while a.state is not ConnectionState.CONNECTED or b.state is not ConnectionState.CONNECTED:
        step()
    channel = a.create_channel("bulk", now=now)
    payload = os.urandom(size)
    total = megabytes * 1024 * 1024
    sent = 0
    start = time.perf_counter()
    while received < total:
        sctp = a.sctp
        while sent < total and sctp.buffered_amount(channel.id) < 1 << 20:
            a.send(channel.id, payload, now)
            sent += size
        step()
    elapsed = time.perf_counter() - start
    return {"throughput_mbit_s": received * 8 / elapsed / 1e6, "bytes_received": received}


def _cpu_figures(received: int, elapsed: float, sender_cpu: float,
                 receiver_cpu: float) -> dict[str, float]:
    """CPU seconds each end spent during the transfer, and throughput per CPU second of the
    busier end: on a shared machine this moves far less than the wall-clock figure."""
    busiest = max(sender_cpu, receiver_cpu, 1e-9)
    return {
        "sender_cpu_s": round(sender_cpu, 3),
        "receiver_cpu_s": round(receiver_cpu, 3),
        "sender_cpu_share": round(sender_cpu / elapsed, 2),
        "receiver_cpu_share": round(receiver_cpu / elapsed, 2),
        "mbit_per_cpu_s": round(received * 8 / busiest / 1e6, 1),
    }


def _median_fields(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field median over repeated runs (numeric fields; others from the first run)."""
    merged: dict[str, Any] = {}
    for name, first in results[0].items():
        values = [r[name] for r in results if isinstance(r.get(name), int | float)]
        merged[name] = (round(statistics.median(values), 3) if len(values) == len(results)
                        else first)
    return merged


def _latency(rtts: list[float]) -> dict[str, float]:
    ordered = sorted(rtts)
    return {
        "rtt_ms_median": round(statistics.median(ordered), 3),
        "rtt_ms_p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--no-offload", action="store_true",
                        help="zmesh without UDP GSO/GRO (one system call per datagram)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="alternate the two stacks N times and report the spread")
    parser.add_argument("--only", choices=["zmesh", "aiortc"], default=None)
    parser.add_argument("--child", choices=["zmesh", "aiortc"], default=None)
    parser.add_argument("--inprocess", type=int, default=0, metavar="MB",
                        help="also move MB megabytes between two sans-IO peers in-process")
    args = parser.parse_args()
    if args.no_offload:
        os.environ["ZMESH_BENCH_NO_OFFLOAD"] = "1"
    if args.child == "zmesh":
        child_profile = os.environ.get("ZMESH_BENCH_CHILD_PROFILE")
        if child_profile:
            import cProfile

            cProfile.runctx("_zmesh_child()", globals(), locals(), child_profile)
        else:
            _zmesh_child()
        return
    if args.child == "aiortc":
        _aiortc_child()
        return
    report: dict[str, Any] = {"message_size": args.size, "seconds": args.seconds,
                              "pings": args.pings, "cpus": os.cpu_count(),
                              "repeat": args.repeat, "udp_offload": not args.no_offload}
    runs: list[dict[str, Any]] = []
    for _ in range(max(1, args.repeat)):
        run: dict[str, Any] = {}
        if args.only in (None, "zmesh"):
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                run["zmesh"] = profiler.runcall(_zmesh_parent, args.seconds, args.size,
                                                args.pings)
                profiler.dump_stats(args.profile)
            else:
                run["zmesh"] = _zmesh_parent(args.seconds, args.size, args.pings)
        if args.only in (None, "aiortc"):
            run["aiortc_baseline"] = _aiortc_parent(args.seconds, args.size, args.pings)
        runs.append(run)
    for key in ("zmesh", "aiortc_baseline"):
        if key in runs[0]:
            report[key] = _median_fields([run[key] for run in runs])
    if args.inprocess:
        report["zmesh_inprocess_one_core"] = _inprocess(args.inprocess, args.size)
    if "zmesh" in report and "aiortc_baseline" in report:
        base = report["aiortc_baseline"]["throughput_mbit_s"]
        report["throughput_ratio_vs_aiortc"] = round(
            report["zmesh"]["throughput_mbit_s"] / base, 2) if base else None
        cpu_base = report["aiortc_baseline"].get("mbit_per_cpu_s")
        if cpu_base:
            report["cpu_efficiency_ratio_vs_aiortc"] = round(
                report["zmesh"]["mbit_per_cpu_s"] / cpu_base, 2)
    for key in ("zmesh", "aiortc_baseline", "zmesh_inprocess_one_core"):
        if key in report:
            report[key]["throughput_mbit_s"] = round(report[key]["throughput_mbit_s"], 1)
    if args.repeat > 1:
        pairs = []
        for run in runs:
            pair = {key: round(run[key]["throughput_mbit_s"], 1) for key in run}
            if "zmesh" in run and "aiortc_baseline" in run and pair["aiortc_baseline"]:
                pair["ratio"] = round(pair["zmesh"] / pair["aiortc_baseline"], 2)
            pairs.append(pair)
        report["runs"] = pairs
        report["spread"] = {
            key: [min(values), round(statistics.median(values), 2), max(values)]
            for key in pairs[0]
            if (values := [pair[key] for pair in pairs if key in pair])
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
