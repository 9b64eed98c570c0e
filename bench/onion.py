"""Onion cell benchmark: the relay fast path against a raw AEAD call in the same run.

``python bench/onion.py`` prints one JSON object. Times are microseconds per operation, one
core, best of several batches (the machine is shared; the best batch is the least disturbed).

Keys:
  sphinx_create_us        2-hop Sphinx header creation (from bench/_sphinx_timing.py)
  sphinx_unwrap_us        one hop's Sphinx unwrap (from bench/_sphinx_timing.py)
  cell_relay_us           a middle hop's whole handling of one forward data cell:
                          OnionNode.receive_cell (framing checks, circuit lookup, AEAD open,
                          pad, queue) plus its share of cells_to_send()
                          (receive_cells on 50-cell batches, as the runtime hands them over)
  cell_relay_single_us    the same through receive_cell, one call per cell
  cell_relay_backward_us  the same for a backward cell (AEAD seal instead of open)
  cell_layer_us           RelayLayers.forward alone (the crypto core of cell_relay_us, through
                          the convenience method, so slightly slower than the node's pipe)
  client_seal_2hop_us     the client's work to send one cell on a 2-hop circuit
  client_open_2hop_us     the client's work to receive one cell on a 2-hop circuit
  baseline_aead_us        one ChaCha20-Poly1305 decrypt of a cell-sized buffer (the 1019-byte
                          body: 1003 ciphertext + 16 tag) with a cached key object, walking a
                          list of distinct buffers as the relay walks distinct cells
  baseline_aead_hot_us    the same call on one buffer over and over (always in cache)
  relay_over_baseline     cell_relay_us / baseline_aead_us (goal: <= 2)
  relay_over_hot_baseline cell_relay_us / baseline_aead_hot_us (the stricter reading)

  client_stream_cell_us   the client's whole sans-IO receive path per DATA cell of a 2-hop
                          circuit: OnionNode.receive_cells on 64-cell batches (as a WebSocket
                          message delivers them), draining its events, StreamMux.receive_message
                          per STREAM message, then next_event() and consumed() per batch
  client_stream_run_us    the same cells through the runtime's run path: OnionNode.receive_block on
                          whole 64-cell messages (batch kernels), StreamMux.receive_messages per
                          run of STREAM messages
  exit_stream_cell_us     the exit's sans-IO send path per DATA cell: StreamMux.send of 64 KiB,
                          messages_to_send, OnionNode.send_relay_messages, cells_to_send

Relay and baseline batches alternate so that both see the same load on a shared machine.
  cell_size               bytes per cell on every link
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from zmesh.sansio.onion import (
    CELL_SIZE,
    CircuitHandle,
    OnionConfig,
    OnionNode,
    RelayKind,
    RouteHop,
)
from zmesh.sansio.onion.cells import encode_relay_message
from zmesh.sansio.onion.keyring import SphinxKeyRing
from zmesh.sansio.onion.layers import ClientLayers, RelayLayers
from zmesh.sansio.onion.session import HopKeys
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY

BATCH = 2000
REPEATS = 9
# Relay-vs-baseline batches are short (a few hundred cells, well under a millisecond) and many,
# so that on a loaded machine some batches of each kind run without being descheduled.
SHORT_BATCH = 250
SHORT_REPEATS = 60


def _best_per_call(run_batch: Callable[[], None], calls: int, repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run_batch()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def _hop_keys(rng: random.Random) -> HopKeys:
    return HopKeys(*(rng.randbytes(32) for _ in range(5)))


def _three_nodes() -> tuple[OnionNode, OnionNode, OnionNode]:
    rng = random.Random(7)
    nodes = []
    for i in range(3):
        rnd = random.Random(rng.getrandbits(64)).randbytes
        ring = SphinxKeyRing(ZMESH_GEOMETRY, 0.0, random=rnd)
        try:  # the runtime's setting: one event per run of messages (older trees lack it)
            config = OnionConfig(batch_events=True)  # type: ignore[call-arg,unused-ignore]
        except TypeError:
            config = OnionConfig()
        nodes.append(OnionNode(bytes([i + 1]) * 32, ring, random=rnd, config=config))
    return nodes[0], nodes[1], nodes[2]


def _pump(nodes: dict[str, OnionNode]) -> None:
    moved = True
    while moved:
        moved = False
        for _name, node in nodes.items():
            while node.next_event() is not None:
                pass
            for link, cell in node.cells_to_send():
                moved = True
                src, dst = str(link).split("-")
                nodes[dst].receive_cell(f"{dst}-{src}", cell, 0.0)


def _two_hop_circuit() -> tuple[dict[str, OnionNode], CircuitHandle, list[RouteHop]]:
    """Client "c" → relay "r" → exit "x", linked, one circuit built; its path for more."""
    client, relay, exit_ = _three_nodes()
    nodes = {"c": client, "r": relay, "x": exit_}
    # Link ids are "<me>-<peer>" strings (str hashes are cached, like the object ids a real
    # driver would use; a tuple would be re-hashed on every cell).
    for a, b in (("c", "r"), ("r", "x")):
        nodes[a].link_up(f"{a}-{b}", nodes[b].node_id, 0.0)
        nodes[b].link_up(f"{b}-{a}", nodes[a].node_id, 0.0)
    path = []
    for node in (relay, exit_):
        epoch = node.keyring.epoch_at(0.0)
        path.append(RouteHop(node.node_id, node.keyring.public_keys(0.0)[epoch], epoch))
    handle = client.build_circuit(path, 0.0)
    _pump(nodes)
    return nodes, handle, path


def measure_cells() -> dict[str, float]:
    nodes, handle, path = _two_hop_circuit()
    client, relay, exit_ = nodes["c"], nodes["r"], nodes["x"]
    while exit_.next_event() is not None:
        pass
    payload = bytes(900)

    def cells_from(sender: OnionNode, circuit: object, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            sender.send_relay_message(circuit, RelayKind.STREAM, payload, 0.0)  # type: ignore[arg-type]
            out.extend(cell for _, cell in sender.cells_to_send())
        return out

    forward_batches = [cells_from(client, handle, SHORT_BATCH) for _ in range(SHORT_REPEATS + 1)]
    # A second circuit for the cell-by-cell figure: each circuit's cells must arrive in order.
    handle2 = client.build_circuit(path, 0.0)
    _pump(nodes)
    while exit_.next_event() is not None:
        pass
    single_forward = [cells_from(client, handle2, SHORT_BATCH) for _ in range(SHORT_REPEATS + 1)]
    exit_handle = exit_.circuits()[0]  # the first circuit (ends are in build order)
    backward_batches = [
        cells_from(exit_, exit_handle, SHORT_BATCH) for _ in range(SHORT_REPEATS + 1)
    ]

    def relay_batches(batches: list[list[bytes]], link: str) -> Iterator[None]:
        # A driver drains the node after a burst of input; 50 cells per drain here, handed
        # over with receive_cells as the runtime does (or cell by cell on older code).
        receive = relay.receive_cell
        receive_batch = getattr(relay, "receive_cells", None)
        drain = relay.cells_to_send
        for batch in batches:
            for start in range(0, len(batch), 50):
                if receive_batch is not None:
                    if receive_batch(link, batch[start : start + 50], 0.0):
                        raise RuntimeError("the relay refused a benchmark cell")
                else:
                    for cell in batch[start : start + 50]:
                        receive(link, cell, 0.0)
                drain()
            yield None

    def single_batches(batches: list[list[bytes]], link: str) -> Iterator[None]:
        receive = relay.receive_cell
        drain = relay.cells_to_send
        for batch in batches:
            for start in range(0, len(batch), 50):
                for cell in batch[start : start + 50]:
                    receive(link, cell, 0.0)
                drain()
            yield None

    # Relay batches and baseline batches alternate, so both see the same machine load (the
    # machine is shared); each figure is the best batch.
    aead = ChaCha20Poly1305(random.Random(5).randbytes(32))
    nonce = bytes(12)
    ad = None  # the forward layer has no associated data: the whole body is the AEAD input
    sealed_cells = [aead.encrypt(nonce, cell[5:1008], ad) for cell in forward_batches[0]]
    sealed_one = sealed_cells[0]

    def aead_batch_cold() -> None:
        decrypt = aead.decrypt
        for sealed in sealed_cells:
            decrypt(nonce, sealed, ad)

    def aead_batch_hot() -> None:
        decrypt = aead.decrypt
        for _ in range(SHORT_BATCH):
            decrypt(nonce, sealed_one, ad)

    fwd = relay_batches(forward_batches, "r-c")
    single = single_batches(single_forward, "r-c")
    next(single)
    bwd = relay_batches(backward_batches, "r-x")
    next(fwd)  # warm-up batches
    next(bwd)
    cell_relay = cell_relay_backward = baseline = baseline_hot = float("inf")
    cell_relay_single = float("inf")
    for _ in range(SHORT_REPEATS):
        cell_relay = min(cell_relay, _best_per_call(lambda: next(fwd), SHORT_BATCH, 1))
        cell_relay_single = min(
            cell_relay_single, _best_per_call(lambda: next(single), SHORT_BATCH, 1)
        )
        baseline = min(baseline, _best_per_call(aead_batch_cold, SHORT_BATCH, 1))
        cell_relay_backward = min(
            cell_relay_backward, _best_per_call(lambda: next(bwd), SHORT_BATCH, 1)
        )
        baseline_hot = min(baseline_hot, _best_per_call(aead_batch_hot, SHORT_BATCH, 1))

    # The crypto core alone, on a fresh 2-hop layer pair.
    rng = random.Random(3)
    keys = [_hop_keys(rng), _hop_keys(rng)]
    client_layers = ClientLayers(keys, rng.randbytes)
    plain = encode_relay_message(RelayKind.STREAM, payload)
    header = b"\x00\x00\x00\x01\x03"
    layer_batches = [
        [client_layers.seal_forward(plain, header) for _ in range(BATCH)] for _ in range(REPEATS)
    ]
    relay_layers = RelayLayers(keys[0])
    layer_iter = iter(layer_batches)

    def layer_batch() -> None:
        forward = relay_layers.forward
        for cell in next(layer_iter):
            forward(cell, header)

    cell_layer = _best_per_call(layer_batch, BATCH)
    seal_layers = ClientLayers(keys, rng.randbytes)

    def seal_batch() -> None:
        for _ in range(BATCH):
            seal_layers.seal_forward(plain, header)

    client_seal = _best_per_call(seal_batch, BATCH)

    # Client receive: cells built by hand from the exit and the relay's backward layers.
    from zmesh.sansio.onion.layers import ExitLayers

    exit_layers = ExitLayers(keys[1])
    back_relay = RelayLayers(keys[0])
    open_batches = [
        [
            back_relay.backward(exit_layers.seal_backward(plain, header), header)
            for _ in range(BATCH)
        ]
        for _ in range(REPEATS)
    ]
    open_layers = ClientLayers(keys, rng.randbytes)
    open_iter = iter(open_batches)

    def open_batch() -> None:
        for cell in next(open_iter):
            open_layers.open_backward(cell)

    client_open = _best_per_call(open_batch, BATCH)

    return {
        "cell_relay_us": round(cell_relay, 3),
        "cell_relay_single_us": round(cell_relay_single, 3),
        "cell_relay_backward_us": round(cell_relay_backward, 3),
        "cell_layer_us": round(cell_layer, 3),
        "client_seal_2hop_us": round(client_seal, 3),
        "client_open_2hop_us": round(client_open, 3),
        "baseline_aead_us": round(baseline, 3),
        "baseline_aead_hot_us": round(baseline_hot, 3),
        "relay_over_baseline": round(cell_relay / baseline, 3),
        "relay_over_hot_baseline": round(cell_relay / baseline_hot, 3),
        "cell_size": CELL_SIZE,
    }


def measure_stream_path() -> dict[str, float]:
    """Per-cell cost of the ends' sans-IO data path, onion and stream layers together (the
    runtime's glue around them is not included). Works on code without the batch API too,
    so the same script measures a before/after pair."""
    from zmesh.sansio.onion import MAX_RELAY_PAYLOAD, RelayMessageReceived

    try:
        from zmesh.sansio.onion import RelayMessagesReceived
    except ImportError:  # older trees: the run path does not exist
        RelayMessagesReceived = RelayMessageReceived
    from zmesh.sansio.streams import DataReceived, Role, StreamMux

    nodes, handle, _path = _two_hop_circuit()
    client, relay, exit_ = nodes["c"], nodes["r"], nodes["x"]
    exit_handle = exit_.circuits()[0]
    # Windows large enough that no SENDME is due within the benchmark (they are rare anyway:
    # one per 128 KiB), so cells can be generated up front.
    window = 0x7FFF_0000
    cmux = StreamMux(Role.CLIENT, max_message_size=MAX_RELAY_PAYLOAD,
                     stream_window=window, circuit_window=window)
    xmux = StreamMux(Role.EXIT, max_message_size=MAX_RELAY_PAYLOAD,
                     stream_window=window, circuit_window=window)
    sid = cmux.open_stream("example.org", 80)
    for m in cmux.messages_to_send():
        xmux.receive_message(m)
    xmux.next_event()
    xmux.accept(sid)
    for m in xmux.messages_to_send():
        cmux.receive_message(m)
    cmux.next_event()
    chunk = bytes(range(256)) * 256  # 64 KiB per send(), as the exit's TCP reads deliver
    batch_send = getattr(exit_, "send_relay_messages", None)

    sizes: list[int] = []

    def exit_send(count: int) -> list[bytes]:
        cells: list[bytes] = []
        while len(cells) < count:
            xmux.send(sid, chunk)
            payloads = xmux.messages_to_send()
            sizes.extend(len(p) - 3 for p in payloads)  # 3: DATA header
            if batch_send is not None:
                batch_send(exit_handle, RelayKind.STREAM, payloads, 0.0)
            else:
                for p in payloads:
                    exit_.send_relay_message(exit_handle, RelayKind.STREAM, p, 0.0)
            cells.extend(cell for _, cell in exit_.cells_to_send())
        return cells

    # The relay's backward layer on the exit's cells, so the client gets what a link delivers.
    relayed: list[bytes] = []
    for i, cell in enumerate(exit_send(2 * REPEATS * BATCH)):
        relay.receive_cell("r-x", cell, 0.0)
        if i % 1000 == 999:  # drain within the relay's queue bound
            relayed.extend(cell for _, cell in relay.cells_to_send())
    relayed.extend(cell for _, cell in relay.cells_to_send())
    # Consecutive slices: the client must see every cell in order (the tail is never used).
    batches = [relayed[i * BATCH : (i + 1) * BATCH] for i in range(REPEATS)]
    # The second half: the same path in runs (receive_block on whole 64-cell messages).
    run_batches = [
        b"".join(relayed[i * BATCH : (i + 1) * BATCH]) for i in range(REPEATS, 2 * REPEATS)
    ]
    batch_receive = getattr(client, "receive_cells", None)
    receive = client.receive_cell
    next_onion_event = client.next_event
    stream_kind = RelayKind.STREAM
    feed = cmux.receive_message
    it = iter(batches)
    delivered = [0]

    def client_batch() -> None:
        cells = next(it)
        for start in range(0, len(cells), 64):
            group = cells[start : start + 64]
            if batch_receive is not None:
                batch_receive("c-r", group, 0.0)
            else:
                for cell in group:
                    receive("c-r", cell, 0.0)
            while (event := next_onion_event()) is not None:
                if isinstance(event, RelayMessageReceived) and event.kind == stream_kind:
                    feed(event.payload)
            while (sevent := cmux.next_event()) is not None:
                if isinstance(sevent, DataReceived):
                    cmux.consumed(sevent.stream_id, len(sevent.data))
                    delivered[0] += len(sevent.data)

    client_us = _best_per_call(client_batch, BATCH)
    if delivered[0] != sum(sizes[: REPEATS * BATCH]):
        raise RuntimeError(f"client path delivered {delivered[0]} bytes, not all it was given")
    run_us = None
    block_receive = getattr(client, "receive_block", None)
    if block_receive is not None:
        run_it = iter(run_batches)
        feed_run = cmux.receive_messages

        def client_run() -> None:
            block = next(run_it)
            for start in range(0, len(block), 64 * 1024):
                block_receive("c-r", block[start : start + 64 * 1024], 0.0)
                while (event := next_onion_event()) is not None:
                    if isinstance(event, RelayMessagesReceived) and event.kind == stream_kind:
                        feed_run(event.payloads)
                    elif isinstance(event, RelayMessageReceived) and event.kind == stream_kind:
                        feed(event.payload)
                while (sevent := cmux.next_event()) is not None:
                    if isinstance(sevent, DataReceived):
                        cmux.consumed(sevent.stream_id, len(sevent.data))
                        delivered[0] += len(sevent.data)

        run_us = _best_per_call(client_run, BATCH)
        if delivered[0] != sum(sizes[: 2 * REPEATS * BATCH]):
            raise RuntimeError("client run path did not deliver every byte it was given")
    # Timed after the client's batches were generated: these cells go nowhere.
    exit_us = _best_per_call(lambda: exit_send(BATCH), BATCH + 67)  # ~68 cells per send()
    del handle
    return {
        "client_stream_cell_us": round(client_us, 3),
        **({"client_stream_run_us": round(run_us, 3)} if run_us is not None else {}),
        "exit_stream_cell_us": round(exit_us, 3),
    }


def main() -> None:
    figures: dict[str, float] = {}
    try:
        from _sphinx_timing import measure

        sphinx = measure()
        figures["sphinx_create_us"] = sphinx["sphinx_create_us"]
        figures["sphinx_unwrap_us"] = sphinx["sphinx_unwrap_us"]
    except ImportError as exc:  # the Sphinx bench helper is another engineer's file
        figures["sphinx_timing_error"] = str(exc)  # type: ignore[assignment]
    figures.update(measure_cells())
    figures.update(measure_stream_path())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
