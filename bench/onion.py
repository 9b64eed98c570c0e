"""Onion cell benchmark: the relay fast path against a raw AEAD call in the same run.

``python bench/onion.py`` prints one JSON object. Times are microseconds per operation, one
core, best of several batches (the machine is shared; the best batch is the least disturbed).

Keys:
  sphinx_create_us        2-hop Sphinx header creation (from bench/_sphinx_timing.py)
  sphinx_unwrap_us        one hop's Sphinx unwrap (from bench/_sphinx_timing.py)
  cell_relay_us           a middle hop's whole handling of one forward data cell:
                          OnionNode.receive_cell (framing checks, circuit lookup, AEAD open,
                          pad, queue) plus its share of cells_to_send()
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

from zmesh.sansio.onion import CELL_SIZE, OnionNode, RelayKind, RouteHop
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
        nodes.append(OnionNode(bytes([i + 1]) * 32, ring, random=rnd))
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


def measure_cells() -> dict[str, float]:
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
    exit_handle = exit_.circuits()[0]
    backward_batches = [
        cells_from(exit_, exit_handle, SHORT_BATCH) for _ in range(SHORT_REPEATS + 1)
    ]

    def relay_batches(batches: list[list[bytes]], link: str) -> Iterator[None]:
        # A driver drains the node after a burst of input; 50 cells per drain here.
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
    bwd = relay_batches(backward_batches, "r-x")
    next(fwd)  # warm-up batches
    next(bwd)
    cell_relay = cell_relay_backward = baseline = baseline_hot = float("inf")
    for _ in range(SHORT_REPEATS):
        cell_relay = min(cell_relay, _best_per_call(lambda: next(fwd), SHORT_BATCH, 1))
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
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
