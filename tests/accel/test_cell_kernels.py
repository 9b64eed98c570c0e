"""The batch cell kernels (zmesh._accel.cells) against the per-cell layer classes they
replace on the data path, on both backends (the pure-Python twin and cell_kernels.c), and the
two backends against each other byte for byte."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh._accel import cells as kernels
from zmesh.sansio.onion.cells import RELAY_KINDS
from zmesh.sansio.onion.commands import CellAead
from zmesh.sansio.onion.layers import ClientLayers, ExitLayers, RelayLayers
from zmesh.sansio.onion.session import HopKeys
from zmesh.sansio.wire import LocalProtocolError

AEADS = [CellAead.CHACHA20_POLY1305, CellAead.AES_256_GCM]
HEADER = struct.pack("!IB", 0x80000007, 3)
ROOT = Path(__file__).resolve().parents[2]
U64 = 1 << 64


class Backend(NamedTuple):
    name: str
    relay_forward: Callable[..., tuple[bytes, int]]
    relay_backward: Callable[..., bytes]
    end_open: Callable[..., tuple[bytes, int]]
    end_seal: Callable[..., bytes]
    client_seal: Callable[..., bytes]
    frame_messages: Callable[..., bytes]
    scan_messages: Callable[..., tuple[bytes, list[int], int]]


PY = Backend(
    "python",
    kernels._py_relay_forward,
    kernels._py_relay_backward,
    kernels._py_end_open,
    kernels._py_end_seal,
    kernels._py_client_seal,
    kernels._py_frame_messages,
    kernels._py_scan_messages,
)
C = Backend(
    "c",
    kernels._c_relay_forward,
    kernels._c_relay_backward,
    kernels._c_end_open,
    kernels._c_end_seal,
    kernels._c_client_seal,
    kernels._c_frame_messages,
    kernels._c_scan_messages,
)
if kernels.BACKEND == "c":
    NO_C = ""
elif os.environ.get(kernels.ENV_VAR) == "python":
    NO_C = f"{kernels.ENV_VAR}=python pins the pure-Python twin"
else:
    NO_C = (
        "zmesh._accel._cellcrypt is not built (needs a C compiler and libssl-dev): "
        "run `python zmesh/_accel/build_cells.py` or `pip install -e .`"
    )
needs_c = pytest.mark.skipif(bool(NO_C), reason=NO_C or "C backend built")
BACKENDS = [pytest.param(PY, id="python"), pytest.param(C, id="c", marks=needs_c)]


def _hop(seed: int, aead: CellAead) -> HopKeys:
    k = [bytes([seed * 8 + j]) * 32 for j in range(5)]
    return HopKeys(k[0], k[1], k[2], k[3], k[4], aead)


def _messages(n: int, seed: int) -> list[bytes]:
    return [
        bytes([(seed + i) % 251]) * ((i * 97 + seed) % (kernels.MAX_PAYLOAD + 1)) for i in range(n)
    ]


def _plain(payload: bytes, kind: int = 1) -> bytes:
    return (
        bytes(32)
        + struct.pack("!BH", kind, len(payload))
        + payload
        + bytes(kernels.MAX_PAYLOAD - len(payload))
    )


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("aead", AEADS)
@pytest.mark.parametrize("hops", [1, 2, 3])
def test_backward_path_matches_the_layer_classes(impl: Backend, aead: CellAead, hops: int) -> None:
    keys = [_hop(i, aead) for i in range(hops)]
    n = 5
    payloads = _messages(n, hops)
    exit_layers = ExitLayers(keys[-1])
    client = ClientLayers(keys, os.urandom)
    relays = [RelayLayers(k) for k in keys[:-1]]
    # Reference: per-cell classes.
    ref_cells = [exit_layers.seal_backward_plain(_plain(p), HEADER) for p in payloads]
    for r in reversed(relays):
        ref_cells = [r.backward(c, HEADER) for c in ref_cells]
    # Kernels on one run.
    plains = impl.frame_messages(1, b"".join(payloads), [len(p) for p in payloads], bytes(32))
    assert plains == b"".join(_plain(p) for p in payloads)
    block = impl.end_seal(kernels.CellKey(aead, keys[-1].backward_key), 0, plains, HEADER)
    for k in reversed(keys[:-1]):
        block = impl.relay_backward(kernels.CellKey(aead, k.backward_key), 0, block, HEADER)
    assert block == b"".join(ref_cells)
    opened, ok = impl.end_open([kernels.CellKey(aead, k.backward_key) for k in keys], 0, block)
    assert ok == n
    assert opened == b"".join(client.open_backward_plain(c) for c in ref_cells)
    kinds, lengths, good = impl.scan_messages(opened, len(RELAY_KINDS))
    assert good == n and set(kinds) == {1} and lengths == [len(p) for p in payloads]


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("aead", AEADS)
def test_forward_path_matches_the_layer_classes(impl: Backend, aead: CellAead) -> None:
    keys = [_hop(i, aead) for i in range(3)]
    client = ClientLayers(keys, os.urandom)
    ref_relays = [RelayLayers(k) for k in keys[:-1]]
    payloads = _messages(70, 3)  # more than one 64-cell pad block
    cells = [client.seal_forward(_plain(p)[32:], HEADER) for p in payloads]
    block = b"".join(cells)
    for hop, ref in zip(keys[:-1], ref_relays, strict=True):
        ref_block = b"".join(ref.forward(c, HEADER) for c in cells)
        pads = ref_pads(hop, len(cells))
        block, ok = impl.relay_forward(
            kernels.CellKey(aead, hop.forward_key), 0, block, pads, HEADER
        )
        assert ok == len(cells) and block == ref_block
        cells = [block[i : i + 1024] for i in range(0, len(block), 1024)]
    plains, ok = impl.end_open([kernels.CellKey(aead, keys[-1].forward_key)], 0, block)
    exit_layers = ExitLayers(keys[-1])
    assert ok == len(cells)
    assert plains == b"".join(exit_layers.open_forward_plain(c) for c in cells)


def ref_pads(hop: HopKeys, n: int) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    enc = Cipher(algorithms.ChaCha20(hop.forward_pad_key, bytes(16)), None).encryptor()
    return enc.update(bytes(16 * n))


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("aead", AEADS)
def test_a_bad_tag_stops_the_run_at_that_cell(impl: Backend, aead: CellAead) -> None:
    hop = _hop(1, aead)
    key = kernels.CellKey(aead, hop.backward_key)
    plains = impl.frame_messages(2, b"x" * 30, [10, 10, 10], bytes(32))
    block = bytearray(impl.end_seal(key, 9, plains, HEADER))
    block[2 * 1024 + 700] ^= 1
    opened, ok = impl.end_open([key], 9, bytes(block))
    assert ok == 2 and opened == plains[: 2 * kernels.PLAIN_SIZE]
    # Wrong counter: the first cell already fails.
    assert impl.end_open([key], 10, bytes(block)) == (b"", 0)
    fwd, ok = impl.relay_forward(key, 9, bytes(block), bytes(48), HEADER)
    assert ok == 2 and len(fwd) == 2 * 1024


@pytest.mark.parametrize("impl", BACKENDS)
def test_scan_finds_the_first_malformed_message(impl: Backend) -> None:
    good = _plain(b"abc", 1)
    long = bytes(32) + struct.pack("!BH", 1, kernels.MAX_PAYLOAD + 1) + bytes(kernels.MAX_PAYLOAD)
    dirty = bytearray(_plain(b"abc", 1))
    dirty[-1] = 1
    bad_kind = _plain(b"", len(RELAY_KINDS))
    for bad in (long, bytes(dirty), bad_kind):
        kinds, lengths, k = impl.scan_messages(good + good + bad + good, len(RELAY_KINDS))
        assert (kinds, lengths, k) == (b"\x01\x01", [3, 3], 2)
    # n_kinds outside a byte's range: every kind fails, or every kind passes.
    assert impl.scan_messages(good, 0) == (b"", [], 0)
    assert impl.scan_messages(_plain(b"", 255), 1000) == (b"\xff", [0], 1)


@pytest.mark.parametrize("impl", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=4000), st.integers(0, 2**64 - 1))
def test_misuse_raises_local_protocol_error(impl: Backend, data: bytes, counter: int) -> None:
    key = kernels.CellKey(0, bytes(32))
    n, rest = divmod(len(data), 1024)
    if rest or n == 0 or counter > 2**64 - n:
        with pytest.raises(LocalProtocolError):
            impl.relay_backward(key, counter, data, HEADER)
    else:
        assert len(impl.relay_backward(key, counter, data, HEADER)) == len(data)
    if len(data) % kernels.PLAIN_SIZE or not data:
        with pytest.raises(LocalProtocolError):
            impl.scan_messages(data, 5)
    else:
        impl.scan_messages(data, 5)  # any bytes: a verdict, never an exception


# --- misuse, argument by argument, on both backends ------------------------------------------

_KEY = kernels.CellKey(0, bytes(range(32)))
_CELLS = bytes(2 * 1024)
_PLAINS = bytes(2 * kernels.PLAIN_SIZE)


def _misuses(b: Backend) -> list[tuple[str, Callable[[], object]]]:
    strided = memoryview(bytes(4 * 1024))[::2]
    wide = memoryview(bytearray(2 * 1024)).cast("I")
    return [
        ("empty run", lambda: b.relay_backward(_KEY, 0, b"", HEADER)),
        ("ragged run", lambda: b.relay_backward(_KEY, 0, _CELLS[:-1], HEADER)),
        ("strided view", lambda: b.relay_backward(_KEY, 0, strided, HEADER)),
        ("wide items", lambda: b.end_open([_KEY], 0, wide)),
        ("negative counter", lambda: b.relay_backward(_KEY, -1, _CELLS, HEADER)),
        ("counter overflows", lambda: b.relay_backward(_KEY, U64 - 1, _CELLS, HEADER)),
        ("counter past 2^64", lambda: b.end_seal(_KEY, U64, _PLAINS[:1003], HEADER)),
        ("short header", lambda: b.relay_backward(_KEY, 0, _CELLS, HEADER[:4])),
        ("long header", lambda: b.end_seal(_KEY, 0, _PLAINS, HEADER + b"x")),
        ("pads short", lambda: b.relay_forward(_KEY, 0, _CELLS, bytes(16), HEADER)),
        ("pads long", lambda: b.relay_forward(_KEY, 0, _CELLS, bytes(48), HEADER)),
        ("forward header", lambda: b.relay_forward(_KEY, 0, _CELLS, bytes(32), b"")),
        ("no hops", lambda: b.end_open([], 0, _CELLS)),
        ("four hops", lambda: b.end_open([_KEY] * 4, 0, _CELLS)),
        ("open counter", lambda: b.end_open([_KEY], U64 - 1, _CELLS)),
        ("seal plain size", lambda: b.end_seal(_KEY, 0, _CELLS, HEADER)),
        ("kind -1", lambda: b.frame_messages(-1, b"", [0], bytes(32))),
        ("kind 256", lambda: b.frame_messages(256, b"", [0], bytes(32))),
        ("prefix", lambda: b.frame_messages(1, b"", [0], bytes(31))),
        ("no lengths", lambda: b.frame_messages(1, b"", [], bytes(32))),
        ("negative length", lambda: b.frame_messages(1, b"", [-1, 1], bytes(32))),
        ("long payload", lambda: b.frame_messages(1, bytes(969), [969], bytes(32))),
        ("sum short", lambda: b.frame_messages(1, b"abc", [2], bytes(32))),
        ("sum long", lambda: b.frame_messages(1, b"abc", [2, 2], bytes(32))),
        ("scan ragged", lambda: b.scan_messages(_PLAINS[:-1], 5)),
        *_client_seal_misuses(b),
    ]


def _client_seal_misuses(b: Backend) -> list[tuple[str, Callable[[], object]]]:
    # A valid 2-cell, 2-hop call is (keys2, 0, _PLAINS, [pad], filler, HEADER); each case
    # breaks one argument.
    keys2, keys3 = [_KEY, _KEY], [_KEY, _KEY, _KEY]
    pad, filler = bytes(32), bytes(32)
    strided = memoryview(bytes(64))[::2]

    def seal(*args: Any) -> Callable[[], object]:
        return lambda: b.client_seal(*args)

    return [
        ("seal no hops", seal([], 0, _PLAINS, [], bytes(64), HEADER)),
        ("seal four hops", seal([_KEY] * 4, 0, _PLAINS, [pad] * 3, b"", HEADER)),
        ("seal empty run", seal(keys2, 0, b"", [b""], b"", HEADER)),
        ("seal ragged run", seal(keys2, 0, _PLAINS[:-1], [pad], filler, HEADER)),
        ("seal cells, not plains", seal(keys2, 0, _CELLS, [pad], filler, HEADER)),
        ("seal negative counter", seal(keys2, -1, _PLAINS, [pad], filler, HEADER)),
        ("seal counter overflows", seal(keys2, U64 - 1, _PLAINS, [pad], filler, HEADER)),
        ("seal short header", seal(keys2, 0, _PLAINS, [pad], filler, HEADER[:4])),
        ("seal no pad", seal(keys2, 0, _PLAINS, [], filler, HEADER)),
        ("seal pad for the last hop", seal(keys2, 0, _PLAINS, [pad, pad], filler, HEADER)),
        ("seal one hop with a pad", seal([_KEY], 0, _PLAINS, [pad], bytes(64), HEADER)),
        ("seal pad short", seal(keys2, 0, _PLAINS, [pad[:-1]], filler, HEADER)),
        ("seal pad long", seal(keys2, 0, _PLAINS, [pad + b"x"], filler, HEADER)),
        ("seal second pad short", seal(keys3, 0, _PLAINS, [pad, pad[:16]], b"", HEADER)),
        ("seal strided pad", seal(keys2, 0, _PLAINS, [strided], filler, HEADER)),
        ("seal filler short", seal(keys2, 0, _PLAINS, [pad], filler[:-1], HEADER)),
        ("seal filler long", seal(keys2, 0, _PLAINS, [pad], filler + b"x", HEADER)),
        ("seal one-hop filler", seal([_KEY], 0, _PLAINS, [], filler, HEADER)),
        ("seal three-hop filler", seal(keys3, 0, _PLAINS, [pad, pad], b"x", HEADER)),
    ]


@pytest.mark.parametrize("impl", BACKENDS)
def test_each_misuse_raises_before_any_work(impl: Backend) -> None:
    for name, call in _misuses(impl):
        with pytest.raises(LocalProtocolError):
            call()
            pytest.fail(f"{impl.name}: {name} did not raise")


@pytest.mark.parametrize("aead", [-1, 2, 255])
def test_unknown_aead_or_key_size_is_refused(aead: int) -> None:
    with pytest.raises(LocalProtocolError):
        kernels.CellKey(aead, bytes(32))
    with pytest.raises(LocalProtocolError):
        kernels.CellKey(0, bytes(31))


# --- the two backends agree byte for byte ----------------------------------------------------


def _counter(draw: st.DataObject, n: int) -> int:
    # Near 0, anywhere, or within reach of the 64-bit end (where counter + i is the last nonce).
    low = st.integers(0, 1000)
    anywhere = st.integers(0, U64 - n)
    top = st.integers(max(0, U64 - n - 1000), U64 - n)
    return draw.draw(st.one_of(low, anywhere, top), label="counter")


def _as(kind: int, data: bytes) -> bytes | bytearray | memoryview:
    return (data, bytearray(data), memoryview(data))[kind]


@needs_c
@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    aead=st.sampled_from([0, 1]),
    hops=st.integers(1, 3),
    n=st.integers(1, 70),
    seed=st.integers(0, 2**32),
)
def test_c_and_twin_agree(data: st.DataObject, aead: int, hops: int, n: int, seed: int) -> None:
    rng = random.Random(seed)
    counter = _counter(data, n)
    bwd = [kernels.CellKey(aead, rng.randbytes(32)) for _ in range(hops)]
    fwd = kernels.CellKey(aead, rng.randbytes(32))
    header = rng.randbytes(5)
    buffer_kind = data.draw(st.integers(0, 2), label="buffer type")

    def both(name: str, *args: Any) -> Any:
        py, c = getattr(PY, name)(*args), getattr(C, name)(*args)
        assert py == c, name
        return py

    # Backward: frame, seal at the exit, relay back, open at the client.
    lengths = [rng.randrange(kernels.MAX_PAYLOAD + 1) for _ in range(n)]
    payloads = rng.randbytes(sum(lengths))
    prefix = rng.randbytes(32)
    kind = rng.randrange(256)
    plains = both("frame_messages", kind, payloads, lengths, prefix)
    block = both("end_seal", bwd[-1], counter, _as(buffer_kind, plains), header)
    for key in reversed(bwd[:-1]):
        block = both("relay_backward", key, counter, _as(buffer_kind, block), header)
    opened, k = both("end_open", bwd, counter, _as(buffer_kind, block))
    # Past one hop the client recomputes dropped bytes from the exit's zero prefix, so a
    # random prefix fails every cell alike.
    assert k == n if hops == 1 else k in (0, n)
    both("scan_messages", _as(buffer_kind, opened or plains), data.draw(st.integers(-1, 300)))

    # A bit flipped anywhere: both stop at the same cell with the same output.
    zero_plains = both("frame_messages", kind, payloads, lengths, bytes(32))
    zero_block = both("end_seal", bwd[-1], counter, zero_plains, header)
    for key in reversed(bwd[:-1]):
        zero_block = both("relay_backward", key, counter, zero_block, header)
    assert both("end_open", bwd, counter, zero_block)[1] == n
    flip = data.draw(st.integers(0, n * 1024 * 8 - 1), label="flipped bit")
    bad = bytearray(zero_block)
    bad[flip // 8] ^= 1 << (flip % 8)
    opened, k = both("end_open", bwd, counter, _as(buffer_kind, bytes(bad)))
    cell, offset = divmod(flip // 8, 1024)
    assert k == (n if offset < 5 else cell)  # the header is not authenticated here

    # Forward: a middle hop opens (same flipped run) and pads; the exit opens one layer.
    pads = rng.randbytes(16 * n)
    original = rng.randbytes(n * 1024)
    sealed = both("relay_backward", fwd, counter, original, header)
    forwarded, k = both("relay_forward", fwd, counter, _as(buffer_kind, sealed), pads, header)
    assert k == n
    for i in range(0, n * 1024, 1024):
        assert forwarded[i : i + 5] == header and forwarded[i + 5 : i + 21] == pads[i // 64 :][:16]
        assert forwarded[i + 21 : i + 1024] == original[i + 21 : i + 1024]
    both("relay_forward", fwd, counter, bytes(bad), pads, header)
    both("end_open", [fwd], counter, sealed)


@needs_c
@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3 * kernels.PLAIN_SIZE + 2), st.integers(-2, 300), st.data())
def test_c_and_twin_agree_on_scan(blob: bytes, n_kinds: int, data: st.DataObject) -> None:
    # Mostly well-formed messages with one damaged byte, so every verdict is reached.
    n = data.draw(st.integers(1, 3))
    messages = b"".join(
        _plain(bytes(data.draw(st.integers(0, 40))), data.draw(st.integers(0, 6))) for _ in range(n)
    )
    where = data.draw(st.integers(0, len(messages) - 1))
    damaged = messages[:where] + bytes([data.draw(st.integers(0, 255))]) + messages[where + 1 :]
    for run in (damaged, blob):
        if run and len(run) % kernels.PLAIN_SIZE == 0:
            assert PY.scan_messages(run, n_kinds) == C.scan_messages(run, n_kinds)


@needs_c
def test_keys_may_repeat_in_one_open() -> None:
    # The same key object for two hops: locked once, not reported as busy.
    key = kernels.CellKey(1, bytes(range(32)))
    block = PY.relay_backward(key, 5, bytes(3 * 1024), HEADER)
    assert PY.end_open([key, key], 5, block) == C.end_open([key, key], 5, block)
    assert PY.end_open([key, key, key], 5, block) == C.end_open([key, key, key], 5, block)


def _backend_in_subprocess(**env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != kernels.ENV_VAR}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    code = "from zmesh._accel import cells; print(cells.BACKEND, cells.relay_forward.__name__)"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, check=True
    ).stdout.strip()


def test_the_environment_pins_the_backend() -> None:
    assert _backend_in_subprocess(ZMESH_CELL_BACKEND="python") == "python _py_relay_forward"
    if not NO_C or os.environ.get(kernels.ENV_VAR) == "python":
        assert _backend_in_subprocess() == "c _c_relay_forward"


@needs_c
def test_a_key_shared_between_threads_is_refused_never_corrupted() -> None:
    # cffi releases the GIL around the C call: a second thread using the same key at the same
    # moment gets LocalProtocolError ("in use"), never a result from a shared cipher context.
    import threading

    key = kernels.CellKey(1, bytes(range(32)))
    run = bytes(64 * 1024)
    expected = PY.relay_backward(key, 0, run, HEADER)
    wrong: list[bytes] = []

    def work() -> None:
        for _ in range(40):
            try:
                if C.relay_backward(key, 0, run, HEADER) != expected:
                    wrong.append(b"")
            except LocalProtocolError:
                pass

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    assert C.relay_backward(key, 0, run, HEADER) == expected  # the key was released


# --- client_seal: the client's forward seal for a run ---------------------------------------


def _reference_client(hop_keys: list[HopKeys], counter: int, fillers: list[bytes]) -> ClientLayers:
    """A ClientLayers whose forward counter stands at ``counter`` and whose RandomSource
    returns ``fillers`` in order (and nothing else)."""
    draws = iter(fillers)

    def random_source(size: int) -> bytes:
        chunk = next(draws)
        assert len(chunk) == size
        return chunk

    client = ClientLayers(hop_keys, random_source)
    client.forward_count = counter
    return client


def _seal_inputs(
    rng: random.Random, hops: int, n: int
) -> tuple[list[bytes], bytes, bytes, list[bytes]]:
    """Messages, their framed plains, the filler and its per-cell slices."""
    lengths = [rng.randrange(kernels.MAX_PAYLOAD + 1) for _ in range(n)]
    kind = rng.randrange(len(RELAY_KINDS))
    plains = PY.frame_messages(kind, rng.randbytes(sum(lengths)), lengths, bytes(32))
    messages = [plains[i + 32 : i + kernels.PLAIN_SIZE] for i in range(0, len(plains), 1003)]
    fill = 32 - 16 * (hops - 1)
    filler = rng.randbytes(fill * n)
    return messages, plains, filler, [filler[j * fill : (j + 1) * fill] for j in range(n)]


@pytest.mark.parametrize("impl", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    aead=st.sampled_from(AEADS),
    hops=st.integers(1, 3),
    n=st.integers(1, 70),
    seed=st.integers(0, 2**32),
)
def test_client_seal_matches_seal_forward(
    impl: Backend, data: st.DataObject, aead: CellAead, hops: int, n: int, seed: int
) -> None:
    rng = random.Random(seed)
    counter = _counter(data, n)
    hop_keys = [_hop(rng.randrange(30), aead) for _ in range(hops)]
    messages, plains, filler, slices = _seal_inputs(rng, hops, n)
    # The pad streams stand somewhere past their start, as on a circuit already in use.
    skip = rng.randrange(3) * 16 * rng.randrange(70)
    pads = [ref_pads(h, skip // 16 + n)[skip:] for h in hop_keys[:-1]]
    client = _reference_client(hop_keys, counter, slices)
    for h in client._hops[:-1]:
        h.fwd_pad.update(bytes(skip))
    # seal_forward stops at 2^32 cells per direction; the kernels hold to the 64-bit nonce
    # counter alone, so the reference is allowed the whole range here.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("zmesh.sansio.onion.layers.MAX_CELLS_PER_DIRECTION", U64)
        expected = b"".join(client.seal_forward(m, HEADER) for m in messages)
    keys = [kernels.CellKey(aead, h.forward_key) for h in hop_keys]
    buffer_kind = data.draw(st.integers(0, 2), label="buffer type")
    sealed = impl.client_seal(
        keys, counter, _as(buffer_kind, plains), [_as(buffer_kind, p) for p in pads],
        _as(buffer_kind, filler), HEADER,
    )  # fmt: skip
    assert sealed == expected


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("aead", AEADS)
@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("counter", [0, 2**40 + 3, U64 - 70])
def test_client_seal_round_trip_through_the_relays_and_the_exit(
    impl: Backend, aead: CellAead, hops: int, counter: int
) -> None:
    rng = random.Random(hops * 7 + int(aead) + counter % 1000)
    hop_keys = [_hop(hops * 3 + i, aead) for i in range(hops)]
    n = 70  # past one 64-cell pad block
    messages, plains, filler, _ = _seal_inputs(rng, hops, n)
    pad_runs = [ref_pads(h, n) for h in hop_keys[:-1]]
    keys = [kernels.CellKey(aead, h.forward_key) for h in hop_keys]
    block = impl.client_seal(keys, counter, plains, pad_runs, filler, HEADER)
    assert len(block) == n * 1024
    # Every relay opens its layer and puts its own pad in front, from its own pad stream.
    for key, hop in zip(keys[:-1], hop_keys[:-1], strict=True):
        block, ok = impl.relay_forward(key, counter, block, ref_pads(hop, n), HEADER)
        assert ok == n
    opened, ok = impl.end_open(keys[-1:], counter, block)
    assert ok == n
    got = [opened[i + 32 : i + kernels.PLAIN_SIZE] for i in range(0, len(opened), 1003)]
    assert got == messages
    assert impl.scan_messages(opened, len(RELAY_KINDS))[2] == n
    # A wrong pad at the first relay fails the next hop's tag on that very cell.
    if hops > 1:
        bad_pads = bytearray(pad_runs[0])
        bad_pads[16 * 5] ^= 1
        block = impl.client_seal(keys, counter, plains, [bytes(bad_pads), *pad_runs[1:]],
                                 filler, HEADER)  # fmt: skip
        first, ok = impl.relay_forward(keys[0], counter, block, ref_pads(hop_keys[0], n), HEADER)
        assert ok == n
        if hops == 3:
            second = impl.relay_forward(keys[1], counter, first, ref_pads(hop_keys[1], n), HEADER)
            assert second[1] == 5
        else:
            assert impl.end_open(keys[1:], counter, first)[1] == 5


@needs_c
def test_client_seal_with_a_key_listed_twice() -> None:
    # The same key object for two hops is locked once in C, never reported busy.
    key = kernels.CellKey(0, bytes(range(32)))
    plains = bytes(3 * kernels.PLAIN_SIZE)
    for keys, pads, filler in (
        ([key, key], [bytes(48)], bytes(48)),
        ([key, key, key], [bytes(48), bytes(range(48))], b""),
    ):
        assert PY.client_seal(keys, 9, plains, pads, filler, HEADER) == C.client_seal(
            keys, 9, plains, pads, filler, HEADER
        )
