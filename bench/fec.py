"""Tetrys FEC benchmark: GF kernels, encoder/decoder goodput, and delay against plain ARQ.

``python bench/fec.py`` prints ONE JSON object:

- ``gf256_GBps``, ``numpy_GBps``, ``python_GBps`` (and the rest of ``bench/_gf_timing.py``'s
  figures): region multiply-add throughput, the default backend against the same-run NumPy
  and pure-Python baselines;
- ``goodput``: for 0, 5, 10 and 20 % loss, at 1 KiB symbols, the encoder's and the decoder's
  goodput in Gbit/s of source data (one core, CPU time of this process, best of 3 encoder and
  5 decoder rounds, interleaved across loss rates, with the decoder rounds' spread in
  ``decoder_Gbps_range``: the sandbox is shared, and wall-clock time would count other
  processes' load). The encoder runs at the
  repair ratio the rate controller settles on for that loss, with window updates every 16
  packets arriving 32 packets late; the decoder replays the packets that survived the loss and
  produces its window updates. ``baseline_no_fec_Gbps`` is the same-run goodput of a
  receiver without FEC that only reads each packet's ID and keeps its payload;
- ``delay``: in the virtual-time simulator (20 ms one way, 40 ms RTT), the extra in-order
  delivery delay per cell (delivery time - send time - 20 ms) for Tetrys and for a selective-
  repeat ARQ that re-sends a lost packet after one RTT (plus a 10 % margin), at the same
  losses: mean, p95, p99, max in milliseconds, and the bytes the sender put on the wire per
  byte of cell data delivered (``sent_per_data_byte``).

``python bench/fec.py --plot docs/img/tetrys-rate.svg`` also runs a simulation whose loss rate
changes over time and draws the measured loss, the sender's loss EMA and its repair ratio.
``--quick`` shortens every run (for smoke tests).

``python bench/fec.py --decode-only 5 --runs R`` builds the 5 %-loss session and decodes it R
times, printing only ``{"delivered": ...}``: a fixed workload for an instruction counter, which
the noise of a shared machine does not reach. Instructions per delivered symbol =
(instructions with ``--runs 1`` - instructions with ``--runs 0``) / delivered, e.g. with
``valgrind --tool=callgrind`` ("Collected" line).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from zmesh.sansio.tetrys import (
    CellReceived,
    RateConfig,
    RateController,
    SymbolDelivered,
    TetrysConfig,
    TetrysDecoder,
    TetrysEncoder,
    TetrysLink,
    WindowUpdate,
    parse_packet,
)
from zmesh.sim import LinkProfile, Simulator

SYMBOL = 1024
LOSSES = (0.0, 0.05, 0.10, 0.20)
FEEDBACK_EVERY = 16
FEEDBACK_LAG = 32  # packets between a window update's sending and its arrival
LATENCY = 0.020


def steady_ratio(loss: float) -> float:
    """The repair ratio the controller settles on when the receiver reports ``loss``."""
    rc = RateController()
    for _ in range(200):
        rc.on_report(loss, FEEDBACK_EVERY)
    return rc.repair_ratio


# ---- goodput -------------------------------------------------------------------------------


def _best(fn: Callable[[], None], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def encode_session(
    n: int, loss: float, seed: int = 1
) -> tuple[list[bytes], float, dict[str, float]]:
    """Run encoder -> lossy channel -> decoder once; return the delivered packets and timing.

    The returned time is the encoder's alone (source and coded packets and window updates).
    """
    rng = random.Random(seed)
    cfg = TetrysConfig(symbol_size=SYMBOL, rate=RateConfig(fixed_ratio=steady_ratio(loss)))
    payloads = [rng.randbytes(SYMBOL) for _ in range(64)]
    enc = TetrysEncoder(cfg, random=rng.randbytes)
    dec = TetrysDecoder(TetrysConfig(symbol_size=SYMBOL, feedback_every=FEEDBACK_EVERY))
    delivered: list[bytes] = []
    pending_updates: list[tuple[int, WindowUpdate]] = []
    enc_time = 0.0
    clock = time.process_time
    for i in range(n):
        now = i * 1e-4
        t0 = clock()
        enc.send_source(payloads[i & 63], now)
        out = enc.datagrams_to_send(now)
        while pending_updates and pending_updates[0][0] <= i:
            enc.receive_window_update(pending_updates.pop(0)[1], now)
            out += enc.datagrams_to_send(now)
        enc_time += clock() - t0
        for d in out:
            if rng.random() >= loss:
                delivered.append(d)
                dec.receive_datagram(d, now)
        while dec.next_event() is not None:
            pass
        for raw in dec.datagrams_to_send(now):
            update = parse_packet(raw)
            assert isinstance(update, WindowUpdate)
            pending_updates.append((i + FEEDBACK_LAG, update))
    stats = enc.stats
    return delivered, enc_time, {"coded_sent": stats.coded_sent, "source_sent": stats.source_sent}


def decode_once(packets: list[bytes]) -> tuple[float, int]:
    """CPU seconds one fresh decoder takes for ``packets`` (and a driver's event loop), and
    how many symbols it delivered."""
    dec = TetrysDecoder(
        TetrysConfig(symbol_size=SYMBOL, feedback_every=FEEDBACK_EVERY, max_events=1 << 20)
    )
    count = 0
    start = time.process_time()
    for k, d in enumerate(packets):
        dec.receive_datagram(d, k * 1e-4)
        while (e := dec.next_event()) is not None:
            count += isinstance(e, SymbolDelivered)
        if k % FEEDBACK_EVERY == 0:
            dec.datagrams_to_send(k * 1e-4)
    return time.process_time() - start, count


def no_fec_baseline(packets: list[bytes]) -> float:
    """Goodput of a receiver with no FEC at all: read the ID, keep the payload. The floor."""
    sources = [p for p in packets if p[3] == 0]
    unpack = struct.Struct("!I").unpack_from

    def run() -> None:
        out: dict[int, bytes] = {}
        for d in sources:
            out[unpack(d, 4)[0]] = d[8:]

    return len(sources) * SYMBOL * 8 / _best(run) / 1e9


def goodput(n: int, rounds: int) -> dict[str, object]:
    """Encoder and decoder goodput per loss rate, best of ``rounds``.

    The rounds are interleaved (every loss rate once per round), so a burst of load from other
    processes on the shared machine hits one round of every figure rather than every round of
    one; ``decoder_Gbps_range`` shows the spread of the decoder's rounds.
    """
    enc_times: dict[float, list[float]] = {loss: [] for loss in LOSSES}
    dec_runs: dict[float, list[tuple[float, int]]] = {loss: [] for loss in LOSSES}
    packets: dict[float, list[bytes]] = {}
    info: dict[float, dict[str, float]] = {}
    for r in range(rounds):
        for loss in LOSSES:
            if r < 3:  # an encoder session also runs a decoder for feedback: slower, 3 suffice
                packets[loss], t, info[loss] = encode_session(n, loss)
                enc_times[loss].append(t)
            dec_runs[loss].append(decode_once(packets[loss]))
    rows: dict[str, object] = {}
    for loss in LOSSES:
        rates = sorted(count * SYMBOL * 8 / t / 1e9 for t, count in dec_runs[loss])
        decoded = dec_runs[loss][0][1]
        rows[f"{round(loss * 100)}%"] = {
            "repair_ratio": round(steady_ratio(loss), 4),
            "coded_per_source": round(info[loss]["coded_sent"] / info[loss]["source_sent"], 4),
            "encoder_Gbps": round(n * SYMBOL * 8 / min(enc_times[loss]) / 1e9, 3),
            "decoder_Gbps": round(rates[-1], 3),
            "decoder_Gbps_range": [round(rates[0], 3), round(rates[-1], 3)],
            "decoded_fraction": round(decoded / n, 5),
        }
    rows["baseline_no_fec_Gbps"] = round(no_fec_baseline(packets[0.0]), 3)
    return rows


# ---- delay in the simulator: Tetrys against ARQ ---------------------------------------------


@dataclass
class _Sink:
    received: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class TetrysNode:
    link: TetrysLink
    sink: _Sink = field(default_factory=_Sink)
    bytes_sent: int = 0

    def receive(self, port: Hashable, data: bytes, now: float) -> None:
        self.link.receive_datagram(data, now)
        self._collect(now)

    def transmit(self, now: float) -> list[tuple[Hashable, bytes]]:
        out = self.link.datagrams_to_send(now)
        self.bytes_sent += sum(len(d) for d in out)
        return [("p", d) for d in out]

    def get_timer(self) -> float | None:
        return self.link.get_timer()

    def handle_timer(self, now: float) -> None:
        self.link.handle_timer(now)
        self._collect(now)

    def _collect(self, now: float) -> None:
        while (e := self.link.next_event()) is not None:
            if isinstance(e, CellReceived):
                self.sink.received.append((now, int.from_bytes(e.cell[:4], "big")))


class ArqNode:
    """Selective-repeat ARQ: per-packet ACKs; a packet unacknowledged one RTT (+10 %) after it
    was sent is sent again; the receiver delivers in order. The comparison baseline."""

    def __init__(self, rtt: float) -> None:
        self.rto = rtt * 1.1
        self.unacked: dict[int, tuple[float, bytes]] = {}
        self.out: list[bytes] = []
        self.next_seq = 0
        self.buffer: dict[int, bytes] = {}
        self.deliver_next = 0
        self.sink = _Sink()
        self.bytes_sent = 0

    def send(self, cell: bytes, now: float) -> None:
        seq = self.next_seq
        self.next_seq += 1
        packet = b"D" + seq.to_bytes(4, "big") + cell
        self.unacked[seq] = (now, packet)
        self.out.append(packet)

    def receive(self, port: Hashable, data: bytes, now: float) -> None:
        seq = int.from_bytes(data[1:5], "big")
        if data[:1] == b"A":
            self.unacked.pop(seq, None)
            return
        self.out.append(b"A" + data[1:5])
        if seq >= self.deliver_next:
            self.buffer[seq] = data[5:]
        while self.deliver_next in self.buffer:
            cell = self.buffer.pop(self.deliver_next)
            self.sink.received.append((now, int.from_bytes(cell[:4], "big")))
            self.deliver_next += 1

    def transmit(self, now: float) -> list[tuple[Hashable, bytes]]:
        out, self.out = self.out, []
        self.bytes_sent += sum(len(p) for p in out)
        return [("p", d) for d in out]

    def get_timer(self) -> float | None:
        if not self.unacked:
            return None
        return min(t for t, _ in self.unacked.values()) + self.rto

    def handle_timer(self, now: float) -> None:
        for seq, (sent, packet) in list(self.unacked.items()):
            if sent + self.rto <= now:
                self.unacked[seq] = (now, packet)
                self.out.append(packet)


def _delay_stats(sent_at: list[float], received: list[tuple[float, int]]) -> dict[str, float]:
    extra = sorted((t - sent_at[i] - LATENCY) * 1000 for t, i in received)
    if not extra:
        return {}
    q = statistics.quantiles(extra, n=100)
    return {
        "mean_ms": round(statistics.fmean(extra), 3),
        "p95_ms": round(q[94], 3),
        "p99_ms": round(q[98], 3),
        "max_ms": round(extra[-1], 3),
    }


def _received_at_least(sink: _Sink, count: int) -> bool:
    return len(sink.received) >= count


def _cell(i: int) -> bytes:
    return i.to_bytes(4, "big") + bytes(SYMBOL - 4)


def delay(cells: int) -> dict[str, object]:
    rows: dict[str, object] = {}
    interval = 0.001  # 1000 cells/s, about 8 Mbit/s of cells
    for loss in LOSSES:
        profile = LinkProfile(latency=LATENCY, jitter=0.001, loss=loss)
        result: dict[str, object] = {}
        for kind in ("tetrys", "arq"):
            sim = Simulator(seed=7)
            a: TetrysNode | ArqNode
            b: TetrysNode | ArqNode
            if kind == "tetrys":
                a = TetrysNode(TetrysLink(random=sim.rng.randbytes))
                b = TetrysNode(TetrysLink(random=sim.rng.randbytes))
            else:
                a, b = ArqNode(2 * LATENCY), ArqNode(2 * LATENCY)
            sim.add_node("a", a)
            sim.add_node("b", b)
            sim.connect("a", "p", "b", "p", profile)
            sent_at: list[float] = []

            def send(
                i: int,
                a: TetrysNode | ArqNode = a,
                sent_at: list[float] = sent_at,
                sim: Simulator = sim,
            ) -> None:
                sent_at.append(sim.now)
                if isinstance(a, TetrysNode):
                    a.link.send_cell(_cell(i), sim.now)
                else:
                    a.send(_cell(i), sim.now)
                sim.poke("a")

            for i in range(cells):
                sim.schedule(i * interval, functools.partial(send, i))
            done = functools.partial(_received_at_least, b.sink, cells)
            sim.run_until(done, timeout=cells * interval + 30)
            stats = _delay_stats(sent_at, b.sink.received)
            stats["delivered"] = len(b.sink.received) / cells
            # every byte the sender put on the wire (source, coded, retransmissions, headers)
            # per byte of cell data delivered
            stats["sent_per_data_byte"] = round(
                a.bytes_sent / max(1, len(b.sink.received)) / SYMBOL, 4
            )
            if isinstance(b, TetrysNode):
                stats["recovered"] = b.link.stats.recovered
            result[kind] = stats
        rows[f"{round(loss * 100)}%"] = result
    return rows


# ---- the rate plot -------------------------------------------------------------------------


def rate_trace(quick: bool) -> list[tuple[float, float, float, float]]:
    """(time, configured loss, sender loss EMA, repair ratio) samples of a changing link."""
    phases = [(0.0, 0.0), (2.0, 0.05), (4.0, 0.20), (6.0, 0.02), (8.0, 0.0), (10.0, 0.10)]
    end = 6.0 if quick else 12.0
    sim = Simulator(seed=11)
    a = TetrysNode(TetrysLink(random=sim.rng.randbytes))
    b = TetrysNode(TetrysLink(random=sim.rng.randbytes))
    sim.add_node("a", a)
    sim.add_node("b", b)
    link = sim.connect("a", "p", "b", "p", LinkProfile(latency=0.02))
    trace: list[tuple[float, float, float, float]] = []
    current = [0.0]

    def set_loss(p: float) -> None:
        current[0] = p
        link.set_profile(LinkProfile(latency=0.02, loss=p))

    def send(i: int) -> None:
        a.link.send_cell(_cell(i), sim.now)
        sim.poke("a")
        if i % 25 == 0:
            s = a.link.stats
            trace.append((sim.now, current[0], s.loss_ema, s.repair_ratio))

    for at, p in phases:
        sim.schedule(at, functools.partial(set_loss, p))
    cells = int(end / 0.002)
    for i in range(cells):
        sim.schedule(i * 0.002, functools.partial(send, i))
    sim.run(until=end + 1.0)
    return trace


def write_svg(path: str, trace: list[tuple[float, float, float, float]]) -> None:
    width, height, pad = 720, 320, 48
    t_max = max(t for t, *_ in trace)
    y_max = max(0.4, max(max(p, e, r) for _, p, e, r in trace))

    def xy(t: float, v: float) -> str:
        x = pad + (width - 2 * pad) * t / t_max
        y = height - pad - (height - 2 * pad) * v / y_max
        return f"{x:.1f},{y:.1f}"

    series = [
        ("configured loss", "#999999", [(t, p) for t, p, _, _ in trace]),
        ("loss EMA (sender)", "#1f77b4", [(t, e) for t, _, e, _ in trace]),
        ("repair ratio", "#d62728", [(t, r) for t, _, _, r in trace]),
    ]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">time (s)</text>',
        f'<text x="{pad}" y="{pad - 14}">Tetrys repair ratio following the loss rate</text>',
    ]
    for k in range(5):
        v = y_max * k / 4
        x, y = xy(0, v).split(",")
        parts.append(f'<text x="{pad - 6}" y="{y}" text-anchor="end">{v:.2f}</text>')
        parts.append(f'<line x1="{pad}" y1="{y}" x2="{width - pad}" y2="{y}" stroke="#eeeeee"/>')
    for k in range(int(t_max) + 1):
        x, y = xy(k, 0).split(",")
        parts.append(f'<text x="{x}" y="{height - pad + 16}" text-anchor="middle">{k}</text>')
    for n, (label, colour, points) in enumerate(series):
        line = " ".join(xy(t, v) for t, v in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>')
        ly = pad + 16 * n
        parts.append(
            f'<line x1="{width - 210}" y1="{ly}" x2="{width - 190}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{width - 185}" y="{ly + 4}">{label}</text>')
    parts.append("</svg>")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot", metavar="SVG", help="also write the repair-rate plot here")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--decode-only", type=int, metavar="PCT", help="only decode the PCT %% loss session"
    )
    parser.add_argument("--runs", type=int, default=1, help="decodes for --decode-only")
    args = parser.parse_args()
    if args.decode_only is not None:
        packets, _, _ = encode_session(20000, args.decode_only / 100)
        delivered = 0
        for _ in range(args.runs):
            delivered = decode_once(packets)[1]
        print(json.dumps({"delivered": delivered}))
        return
    from _gf_timing import measure

    result: dict[str, object] = {}
    result.update(measure(min_time=0.02 if args.quick else 0.05, repeats=3 if args.quick else 5))
    result["symbol_bytes"] = SYMBOL
    result["goodput"] = goodput(2000 if args.quick else 20000, 3 if args.quick else 5)
    result["delay"] = delay(1000 if args.quick else 5000)
    if args.plot:
        trace = rate_trace(args.quick)
        write_svg(args.plot, trace)
        result["plot"] = args.plot
        result["plot_samples"] = len(trace)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
