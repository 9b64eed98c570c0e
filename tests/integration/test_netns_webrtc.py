"""WebRTC across network namespaces with 5 % loss each way on one peer's link.

Topology (``netns.py``): namespace ``a`` runs ``python -m zmesh.tools.webrtc_echo``; namespace
``b`` runs this file as a script (the ``echo-client`` role), a :class:`WebRtcPeer` that talks
to it through the hub, whose forward path drops 5 % of b's packets in each direction.

- A reliable ordered channel must deliver every message, in order, byte-exact.
- An unreliable unordered channel (``maxRetransmits: 0``) loses about what the path loses: each
  message crosses the lossy link twice (there and echoed back), so ~1 - 0.95² ≈ 9.75 %.
- ``WebRtcLink(fec=True)`` (Tetrys over an unordered unreliable channel) between two of our own
  peers (``fec-offer`` in b, ``fec-answer`` in a, SDP passed through the test's pipes): the
  answerer echoes every cell; both ends report Tetrys's repair ratio (adaptive, at the end),
  repair packets per cell over the run, and the recovered count.

The scripts print one JSON line with their findings; the test asserts on them and prints them
(``pytest -s`` shows the figures and which impairments this kernel could emulate).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import pathlib
import random
import subprocess
import sys
import time
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import netns

# Probed only under pytest: the scripts below run inside a namespace and need no probe.
_SKIP = netns.skip_reason() if __name__ != "__main__" else None
pytestmark = [
    pytest.mark.integration,
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(_SKIP is not None, reason=f"netns: {_SKIP}"),
]

LOSS_PERCENT = 5
RELIABLE_MESSAGES = 120  # sizes 1..16 KiB: many span several SCTP packets
UNRELIABLE_MESSAGES = 500  # 1000 bytes each: one message per datagram, so loss is per message
UNRELIABLE_SIZE = 1000
FEC_CELLS = 600
CELL_SIZE = 1024  # must match zmesh.io_trio.webrtc's CELL_SIZE for the FEC link
ECHO_PORT = 8080
THIS = str(pathlib.Path(__file__).resolve())


def _message(index: int, size: int) -> bytes:
    """Deterministic, index-bearing payload: any corruption or mix-up is visible."""
    head = index.to_bytes(4, "big")
    body = hashlib.shake_256(head).digest(size - 4)
    return head + body


def _reliable_sizes() -> list[int]:
    rng = random.Random(7)
    return [rng.randrange(5, 16_384) for _ in range(RELIABLE_MESSAGES)]


# -- the scripts that run inside the namespaces -----------------------------------------------


def _coded_per_cell(link: Any) -> float | None:
    """Repair overhead over the whole run. ``LinkStats.fec_repair_ratio`` is the adaptive
    ratio *now* (it falls back to 0 once the loss EMA decays); the cumulative counts are in
    ``stats.extra`` (``coded_sent``, ``cells_sent``), so this is informational and never
    asserted on."""
    extra = link.stats.extra
    if "coded_sent" not in extra:
        return None
    return round(float(extra["coded_sent"]) / max(int(extra["cells_sent"]), 1), 4)


async def _echo_client(local: str, server: str) -> dict[str, Any]:
    import httpx
    import trio

    from zmesh.io_trio.udp import UdpEndpoint
    from zmesh.io_trio.webrtc import WebRtcPeer

    result: dict[str, Any] = {}
    async with httpx.AsyncClient(trust_env=False) as client:
        with trio.fail_after(15):
            while True:
                try:
                    await client.get(server + "/")
                    break
                except httpx.TransportError:
                    await trio.sleep(0.1)
        async with UdpEndpoint((local, 0)) as endpoint, WebRtcPeer(endpoint) as peer:
            started = time.monotonic()
            offer = await peer.create_offer()
            answer = await client.post(server + "/offer", content=offer.encode(), timeout=15)
            answer.raise_for_status()
            await peer.set_remote_answer(answer.text)
            with trio.fail_after(20):
                await peer.wait_connected()
            result["connect_s"] = round(time.monotonic() - started, 3)

            # Reliable, ordered: everything back, in order, byte-exact.
            reliable = await peer.create_channel("reliable")
            sent = [_message(i, size) for i, size in enumerate(_reliable_sizes())]
            got: list[bytes | str] = []
            started = time.monotonic()
            with trio.fail_after(25):
                async with trio.open_nursery() as nursery:
                    async def send_all() -> None:
                        for message in sent:
                            await reliable.send(message)
                    nursery.start_soon(send_all)
                    for _ in sent:
                        got.append(await reliable.receive())
            result["reliable_s"] = round(time.monotonic() - started, 3)
            result["reliable_sent"] = len(sent)
            result["reliable_in_order_exact"] = got == sent

            # Unreliable, unordered: count what comes back; check each for integrity.
            lossy = await peer.create_channel("lossy", ordered=False, max_retransmits=0)
            await trio.sleep(0.3)  # let DCEP's OPEN/ACK settle before the measured burst
            back: set[int] = set()
            corrupt = 0

            async def collect() -> None:
                nonlocal corrupt
                async for message in lossy:
                    assert isinstance(message, bytes)
                    index = int.from_bytes(message[:4], "big")
                    if index >= UNRELIABLE_MESSAGES or message != _message(index,
                                                                           UNRELIABLE_SIZE):
                        corrupt += 1
                    else:
                        back.add(index)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect)
                for index in range(UNRELIABLE_MESSAGES):
                    await lossy.send(_message(index, UNRELIABLE_SIZE))
                    await trio.sleep(0.002)  # one message per datagram, not a bundle
                await trio.sleep(1.5)  # stragglers; nothing is retransmitted
                nursery.cancel_scope.cancel()
            result["unreliable_sent"] = UNRELIABLE_MESSAGES
            result["unreliable_back"] = len(back)
            result["unreliable_corrupt"] = corrupt
    return result


async def _fec_offer(local: str) -> dict[str, Any]:
    import trio

    from zmesh.io_trio.udp import UdpEndpoint
    from zmesh.io_trio.webrtc import WebRtcLink, WebRtcPeer

    async with UdpEndpoint((local, 0)) as endpoint, WebRtcPeer(endpoint) as peer:
        print(json.dumps({"offer": await peer.create_offer()}), flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        await peer.set_remote_answer(json.loads(line)["answer"])
        with trio.fail_after(20):
            await peer.wait_connected()
            link = await WebRtcLink.open(peer, b"A" * 32, fec=True)
        cells = [_message(i, CELL_SIZE) for i in range(FEC_CELLS)]
        received: list[bytes] = []

        async def sender() -> None:
            for cell in cells:
                await link.send_cell(cell)
                await trio.sleep(0.002)  # paced, as a circuit's cells are

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            with trio.move_on_after(15):
                while len(received) + int(link.stats.extra.get("cells_lost", 0)) < len(cells):
                    received.append(await link.receive_cell())
            nursery.cancel_scope.cancel()
        stats = link.stats
        positions = [int.from_bytes(cell[:4], "big") for cell in received]
        exact = all(cell == _message(p, CELL_SIZE) for p, cell in zip(positions, received,
                                                                        strict=True))
        return {
            "elapsed_s": round(time.monotonic() - started, 3),
            "sent": len(cells),
            "received": len(received),
            "in_order_unique": positions == sorted(set(positions)),
            "byte_exact": exact,
            "cells_lost": int(stats.extra.get("cells_lost", 0)),
            "recovered": int(stats.extra.get("cells_recovered", 0)),
            "repair_ratio": round(stats.fec_repair_ratio or 0.0, 4),
            "coded_per_cell": _coded_per_cell(link),
            "loss_ema": round(float(stats.extra.get("loss_ema", 0.0)), 4),
        }


async def _fec_answer(local: str) -> dict[str, Any]:
    import trio

    from zmesh.io_trio.link import LinkClosed
    from zmesh.io_trio.udp import UdpEndpoint
    from zmesh.io_trio.webrtc import WebRtcLink, WebRtcPeer

    async with UdpEndpoint((local, 0)) as endpoint, WebRtcPeer(endpoint) as peer:
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        answer = await peer.create_answer(json.loads(line)["offer"])
        print(json.dumps({"answer": answer}), flush=True)
        with trio.fail_after(20):
            await peer.wait_connected()
            link = await WebRtcLink.accept(peer, b"B" * 32)
        echoed = 0

        async def echo() -> None:
            nonlocal echoed
            # The offerer hangs up once it has its figures: that ends the echo, not the run.
            with contextlib.suppress(LinkClosed):
                while True:
                    cell = await link.receive_cell()
                    await link.send_cell(cell)
                    echoed += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            # The test closes our stdin once the offerer has reported: then we report too.
            await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            nursery.cancel_scope.cancel()
        stats = link.stats
        return {
            "echoed": echoed,
            "cells_lost": int(stats.extra.get("cells_lost", 0)),
            "recovered": int(stats.extra.get("cells_recovered", 0)),
            "repair_ratio": round(stats.fec_repair_ratio or 0.0, 4),
            "coded_per_cell": _coded_per_cell(link),
            "loss_ema": round(float(stats.extra.get("loss_ema", 0.0)), 4),
        }


def main() -> None:
    import trio

    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["echo-client", "fec-offer", "fec-answer"])
    parser.add_argument("--local", required=True)
    parser.add_argument("--server", default="")
    args = parser.parse_args()
    if args.role == "echo-client":
        result = trio.run(_echo_client, args.local, args.server)
    elif args.role == "fec-offer":
        result = trio.run(_fec_offer, args.local)
    else:
        result = trio.run(_fec_answer, args.local)
    print(json.dumps({"result": result}), flush=True)


# -- the tests --------------------------------------------------------------------------------


def _report(topology: netns.Topology, title: str, figures: dict[str, Any]) -> None:
    print(f"\n[{title}] impairment: {'; '.join(topology.notes)}")
    print(f"[{title}] dropped by the emulated link: {topology.drop_counts()}")
    print(f"[{title}] {json.dumps(figures)}")


def test_echo_tool_across_namespaces_with_loss() -> None:
    with netns.Topology(["a", "b"]) as topology:
        topology.impair("b", netns.Impairment(loss_percent=LOSS_PERCENT))
        server_host = topology.address("a")
        port = ECHO_PORT  # a fresh namespace: nothing else listens there
        topology.popen("a", [sys.executable, "-m", "zmesh.tools.webrtc_echo",
                             "--http", f"{server_host}:{port}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = topology.popen(
            "b", [sys.executable, THIS, "echo-client", "--local", topology.address("b"),
                  "--server", f"http://{server_host}:{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        assert client.stdout is not None
        try:
            result = netns.read_json_line(client.stdout, 60, "echo client", "result")["result"]
        except netns.NetnsError:
            client.kill()
            raise AssertionError(client.stderr.read().decode(errors="replace")[-3000:]
                                 if client.stderr else "echo client failed") from None
        _report(topology, "webrtc echo", result)
        drops = topology.drop_counts()
    assert result["reliable_in_order_exact"], result
    assert result["unreliable_corrupt"] == 0
    lost = 1 - result["unreliable_back"] / result["unreliable_sent"]
    expected = 1 - (1 - LOSS_PERCENT / 100) ** 2  # there and back across the lossy link
    # ~9.75 % expected; with 500 messages the standard deviation is ~1.3 points.
    assert expected / 2.5 <= lost <= expected * 2.2, (lost, expected)
    if drops:  # the nftables fallback counts its drops: they must have happened both ways
        assert drops["up-b"] > 0 and drops["down-b"] > 0


def test_fec_link_across_namespaces_with_loss() -> None:
    with netns.Topology(["a", "b"]) as topology:
        topology.impair("b", netns.Impairment(loss_percent=LOSS_PERCENT))
        answerer = topology.popen(
            "a", [sys.executable, THIS, "fec-answer", "--local", topology.address("a")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        offerer = topology.popen(
            "b", [sys.executable, THIS, "fec-offer", "--local", topology.address("b")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        assert answerer.stdin and answerer.stdout and offerer.stdin and offerer.stdout
        try:
            offer = netns.read_json_line(offerer.stdout, 20, "fec offerer", "offer")
            answerer.stdin.write((json.dumps(offer) + "\n").encode())
            answer = netns.read_json_line(answerer.stdout, 20, "fec answerer", "answer")
            offerer.stdin.write((json.dumps(answer) + "\n").encode())
            sent_side = netns.read_json_line(offerer.stdout, 60, "fec offerer", "result")
            answerer.stdin.write(b"done\n")
            echo_side = netns.read_json_line(answerer.stdout, 20, "fec answerer", "result")
        except netns.NetnsError as exc:
            for proc in (offerer, answerer):
                proc.kill()
            logs = [proc.stderr.read().decode(errors="replace")[-2000:]
                    for proc in (offerer, answerer) if proc.stderr]
            raise AssertionError(f"{exc}\n" + "\n---\n".join(logs)) from None
        offer_side = sent_side["result"]
        answer_side = echo_side["result"]
        _report(topology, "webrtc fec", {"offerer": offer_side, "answerer": answer_side})
    assert offer_side["in_order_unique"] and offer_side["byte_exact"]
    # Every cell is accounted for: echoed back, or given up for lost by a Tetrys decoder on
    # the way out (counted at the answerer, so never echoed) or on the way back (counted here).
    lost = offer_side["cells_lost"] + answer_side["cells_lost"]
    assert offer_side["received"] + lost == offer_side["sent"]
    # Two crossings of a 5 % loss link: FEC keeps most of it (a fec=True link still gives up
    # cells it cannot repair in time; docs/transport-webrtc.md).
    assert offer_side["received"] >= 0.9 * offer_side["sent"]
    # Tetrys repaired losses (on the way out, at the answerer, or on the way back, here).
    assert offer_side["recovered"] + answer_side["recovered"] > 0
    # (``repair_ratio`` is only the adaptive ratio at the end, which may have decayed to 0.)
    for side in (offer_side, answer_side):
        if side["coded_per_cell"] is not None:
            assert side["coded_per_cell"] > 0


if __name__ == "__main__":
    main()
