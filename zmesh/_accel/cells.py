"""Batch cell kernels: the onion data path's per-cell loops, for a run of cells of one circuit.

The layered AEAD of ``docs/wire/cells.md`` §5 costs one to three AEAD calls per 1024-byte
cell and hop. Through ``cryptography`` each call pays a Python-level call, argument parsing
and a fresh EVP initialisation; on the development VM that overhead, not the cipher, was
most of a cell's cost. These functions take a whole *run* (``n`` consecutive cells of one
circuit and direction, back to back in one buffer) and do the loop in C, on OpenSSL's EVP
AEADs with the key schedule set up once per key (``zmesh/_accel/cell_kernels.c``; the same
library and functions ``cryptography`` wraps). This module is also their pure-Python twin
on ``cryptography`` (the specification the C code is tested against, and the fallback when
the extension was not built).

Every function is a pure function of its arguments (a :class:`CellKey` holds only a key and
cached cipher state, no counter): nonces are ``counter + i`` for the run's ``i``-th cell, as
in :mod:`zmesh.sansio.onion.layers`, which owns the counters.

Functions that open (verify) cells return ``(output, k)``: ``k`` is the number of leading
cells that verified (``n`` when all did) and ``output`` holds exactly their results; the
caller treats cell ``k`` as a tag failure. Sealing cannot fail on valid arguments. Misuse
(wrong lengths, a counter that would overflow 64 bits, an unknown AEAD) raises
:class:`~zmesh.sansio.wire.LocalProtocolError` before any work, identically on both backends.

Backend choice: the C module when it imports, else Python; the environment variable
``ZMESH_CELL_BACKEND`` (``c`` or ``python``) pins one (tests and benchmarks), read once at
import. The public names are bound to one backend then; the twin stays reachable as
``_py_<name>`` and the C functions as ``_c_<name>``, and :data:`IMPLEMENTATIONS` maps each
available backend to its functions by name (:data:`KERNELS`), so tests, ``bench/cells.py`` and
``fuzz/cell_kernels.py`` compare both in one process. The C functions validate their
arguments with the twin's own checks, in Python, before the call (and ``cell_kernels.c``
checks every length again); an OpenSSL failure other than a tag mismatch, which does not
happen on valid arguments, raises ``LocalProtocolError``.
"""

from __future__ import annotations

import importlib
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from zmesh.sansio.wire import LocalProtocolError

#: The kernels' names: each is a function below, the same contract on either backend.
KERNELS: Final = (
    "relay_forward",
    "relay_backward",
    "end_open",
    "end_seal",
    "client_seal",
    "frame_messages",
    "scan_messages",
)

__all__ = [
    "BACKEND",
    "C_OPENSSL_VERSION",
    "CELL_SIZE",
    "ENV_VAR",
    "PLAIN_SIZE",
    "IMPLEMENTATIONS",
    "KERNELS",
    "CellKey",
    "ws_mask",
    *KERNELS,
]

CELL_SIZE: Final = 1024
HEADER_SIZE: Final = 5  # circuit id (4) + command (1)
TAG_SIZE: Final = 16
BODY_SIZE: Final = CELL_SIZE - HEADER_SIZE  # 1019
PLAIN_SIZE: Final = BODY_SIZE - TAG_SIZE  # 1003: every layer's AEAD plaintext
MESSAGE_OFFSET: Final = 32  # the relay message inside the innermost plaintext
MESSAGE_HEADER_SIZE: Final = 3  # kind (u8) | length (u16, big-endian)
MAX_PAYLOAD: Final = PLAIN_SIZE - MESSAGE_OFFSET - MESSAGE_HEADER_SIZE  # 968
MAX_HOPS: Final = 3
AEAD_CHACHA20_POLY1305: Final = 0  # CellAead values (zmesh.sansio.onion.commands)
AEAD_AES_256_GCM: Final = 1
_COUNTER_LIMIT: Final = 1 << 64

_Buffer: TypeAlias = bytes | bytearray | memoryview
_Keys: TypeAlias = Sequence["CellKey"]  # one per hop, path order
_Pads: TypeAlias = Sequence[_Buffer]  # one pad run per hop but the last
_NONCE = struct.Struct("!4xQ").pack
_ZEROS: Final = bytes(CELL_SIZE)


#: Environment variable that pins a backend: ``c`` or ``python``.
ENV_VAR: Final = "ZMESH_CELL_BACKEND"


def _load_extension() -> Any:
    wanted = os.environ.get(ENV_VAR, "")
    if wanted == "python":
        return None
    try:
        return importlib.import_module("zmesh._accel._cellcrypt")
    except ImportError:  # built without a compiler or libcrypto headers: the twin takes over
        if wanted == "c":
            raise
        return None


_ext: Any = _load_extension()
_ffi: Any = _ext.ffi if _ext is not None else None
_lib: Any = _ext.lib if _ext is not None else None
# Output buffers are written in full (or cut to the verified prefix) before Python sees them,
# so zero-filling them first would be wasted work.
_alloc: Any = _ffi.new_allocator(should_clear_after_alloc=False) if _ffi is not None else None

#: ``"c"`` or ``"python"``: which implementation the functions below run.
BACKEND: Final = "c" if _lib is not None else "python"
#: The libcrypto the C backend runs on (``None`` without it); the twin runs on the OpenSSL
#: that ``cryptography`` bundles.
C_OPENSSL_VERSION: Final[str | None] = (
    _ffi.string(_lib.zm_openssl_version()).decode() if _lib is not None else None
)


class CellKey:
    """One circuit direction's AEAD key, with its cipher state set up once."""

    __slots__ = ("_c", "_py", "aead")

    def __init__(self, aead: int, key: bytes) -> None:
        if aead not in (AEAD_CHACHA20_POLY1305, AEAD_AES_256_GCM):
            raise LocalProtocolError(f"unknown cell AEAD {aead}")
        if len(key) != 32:
            raise LocalProtocolError("a cell key is 32 bytes")
        self.aead = int(aead)
        self._py: ChaCha20Poly1305 | AESGCM = (
            AESGCM(key) if aead == AEAD_AES_256_GCM else ChaCha20Poly1305(key)
        )
        # The C key object (both EVP contexts, key schedule done once), freed with this key.
        self._c: Any = None
        if _lib is not None:
            handle = _lib.zm_key_new(self.aead, _ffi.from_buffer(key), 32)
            if handle == _ffi.NULL:
                raise LocalProtocolError("OpenSSL could not set up the cell key")
            self._c = _ffi.gc(handle, _lib.zm_key_free)


def _run_length(cells: _Buffer, size: int = CELL_SIZE) -> int:
    if isinstance(cells, memoryview) and not (cells.c_contiguous and cells.itemsize == 1):
        # len() would count items, not bytes, and C needs one contiguous region.
        raise LocalProtocolError("a run is a contiguous buffer of bytes")
    n, rest = divmod(len(cells), size)
    if rest or n == 0:
        raise LocalProtocolError(f"a run is a positive whole number of {size}-byte items")
    return n


def _check_counter(counter: int, n: int) -> None:
    if not 0 <= counter <= _COUNTER_LIMIT - n:
        raise LocalProtocolError("nonce counter out of range")


def _check_header(out_header: bytes) -> None:
    if len(out_header) != HEADER_SIZE:
        raise LocalProtocolError("a cell header is 5 bytes")


# The argument checks of each kernel, shared by both backends so that misuse raises the same
# LocalProtocolError on either; each returns the run length n.


def _check_header_run(counter: int, run: _Buffer, out_header: bytes, size: int) -> int:
    n = _run_length(run, size)
    _check_counter(counter, n)
    _check_header(out_header)
    return n


def _check_relay_forward(counter: int, cells: _Buffer, pads: bytes, out_header: bytes) -> int:
    n = _check_header_run(counter, cells, out_header, CELL_SIZE)
    if len(pads) != n * TAG_SIZE:
        raise LocalProtocolError("one 16-byte pad per cell")
    return n


def _check_end_open(keys: Sequence[CellKey], counter: int, cells: _Buffer) -> int:
    n = _run_length(cells)
    _check_counter(counter, n)
    if not 1 <= len(keys) <= MAX_HOPS:
        raise LocalProtocolError(f"a circuit has 1..{MAX_HOPS} hops")
    return n


def _check_client_seal(
    keys: _Keys, counter: int, plains: _Buffer, pads: _Pads, filler: _Buffer, out_header: bytes
) -> int:
    hops = len(keys)
    if not 1 <= hops <= MAX_HOPS:
        raise LocalProtocolError(f"a circuit has 1..{MAX_HOPS} hops")
    n = _check_header_run(counter, plains, out_header, PLAIN_SIZE)
    if len(pads) != hops - 1:
        raise LocalProtocolError("one pad buffer per hop before the last")
    for pad in pads:
        if _byte_size(pad) != n * TAG_SIZE:
            raise LocalProtocolError("each pad buffer holds one 16-byte pad per cell")
    if _byte_size(filler) != n * _filler_size(hops):
        raise LocalProtocolError("the filler is 32 - 16 * (hops - 1) bytes per cell")
    return n


def _byte_size(buf: _Buffer) -> int:
    if isinstance(buf, memoryview) and not (buf.c_contiguous and buf.itemsize == 1):
        raise LocalProtocolError("a buffer of contiguous bytes is needed")
    return len(buf)


def _filler_size(hops: int) -> int:
    # Forward, every hop but the last puts a 16-byte pad in front; the client fills the rest
    # of the 32 bytes before the relay message with random bytes (cells.md 5.5).
    return MESSAGE_OFFSET - TAG_SIZE * (hops - 1)


def _check_framing(kind: int, payloads: bytes, lengths: Sequence[int], prefix: bytes) -> None:
    if not 0 <= kind <= 0xFF:
        raise LocalProtocolError("relay kind is one byte")
    if len(prefix) != MESSAGE_OFFSET:
        raise LocalProtocolError(f"the prefix is {MESSAGE_OFFSET} bytes")
    # min/max: a range check of every length without a Python-level loop.
    if not lengths or min(lengths) < 0 or max(lengths) > MAX_PAYLOAD:
        raise LocalProtocolError(f"1 or more payloads of at most {MAX_PAYLOAD} bytes")
    if sum(lengths) != len(payloads):
        raise LocalProtocolError("lengths do not add up to the payload bytes")


def _py_relay_forward(
    key: CellKey, counter: int, cells: _Buffer, pads: bytes, out_header: bytes
) -> tuple[bytes, int]:
    """A middle hop's forward step for a run: cell ``i`` becomes
    ``out_header || pads[16i:16i+16] || AEAD-Open(key, counter + i, body_i)``."""
    n = _check_relay_forward(counter, cells, pads, out_header)
    decrypt = key._py.decrypt
    view = memoryview(cells)
    out: list[bytes] = []
    for i in range(n):
        base = i * CELL_SIZE
        try:
            plain = decrypt(_NONCE(counter + i), view[base + HEADER_SIZE : base + CELL_SIZE], None)
        except InvalidTag:
            return b"".join(out), i
        out.append(out_header)
        out.append(pads[i * TAG_SIZE : (i + 1) * TAG_SIZE])
        out.append(plain)
    return b"".join(out), n


def _py_relay_backward(key: CellKey, counter: int, cells: _Buffer, out_header: bytes) -> bytes:
    """A middle hop's backward step for a run: cell ``i`` becomes
    ``out_header || AEAD-Seal(key, counter + i, body_i[16:])`` (the first 16 body bytes are
    the filler this hop drops)."""
    return _py_seal_run(key, counter, cells, out_header, CELL_SIZE, HEADER_SIZE + TAG_SIZE)


def _py_end_open(keys: Sequence[CellKey], counter: int, cells: _Buffer) -> tuple[bytes, int]:
    """Open a run at a circuit end; returns the innermost plaintexts (``PLAIN_SIZE`` each).

    One key: the exit opening forward cells (one AEAD layer). Several keys: the client
    opening backward cells, ``keys`` being each hop's backward key in path order; before
    opening hop ``j``'s layer it puts back the 16 bytes hop ``j`` dropped, which are the
    later hops' encryption of known zeros (``ClientLayers.open_backward_plain``).
    """
    n = _check_end_open(keys, counter, cells)
    view = memoryview(cells)
    out: list[bytes] = []
    for i in range(n):
        base = i * CELL_SIZE
        nonce = _NONCE(counter + i)
        dropped = _dropped_prefixes(keys, nonce)
        body: bytes | memoryview = view[base + HEADER_SIZE : base + CELL_SIZE]
        try:
            for j, key in enumerate(keys):
                body = key._py.decrypt(nonce, dropped[j] + bytes(body) if j else body, None)
        except InvalidTag:
            return b"".join(out), i
        out.append(bytes(body))
    return b"".join(out), n


def _keystream(key: CellKey, nonce: bytes, length: int) -> bytes:
    return key._py.encrypt(nonce, _ZEROS[:length], None)[:length]


def _xor(a: bytes, b: bytes) -> bytes:
    # Through ints: one C-level operation instead of a Python loop over the (<= 32) bytes.
    if len(a) != len(b):
        raise ValueError("xor of unequal lengths")
    n = len(a)
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(n, "little")


def _dropped_prefixes(keys: Sequence[CellKey], nonce: bytes) -> list[bytes]:
    """``dropped[j]`` (j >= 1): the 16 bytes hop j-1 dropped from hop j's output."""
    hops = len(keys)
    if hops == 1:
        return [b""]
    if hops == 2:
        return [b"", _keystream(keys[1], nonce, TAG_SIZE)]
    last = _keystream(keys[2], nonce, 2 * TAG_SIZE)
    middle = _xor(last[TAG_SIZE:], _keystream(keys[1], nonce, TAG_SIZE))
    return [b"", middle, last[:TAG_SIZE]]


def _py_end_seal(key: CellKey, counter: int, plains: _Buffer, out_header: bytes) -> bytes:
    """The exit's backward seal for a run of layer plaintexts (``PLAIN_SIZE`` each, as
    :func:`frame_messages` builds them): cell ``i`` is
    ``out_header || AEAD-Seal(key, counter + i, plain_i)``."""
    return _py_seal_run(key, counter, plains, out_header, PLAIN_SIZE, 0)


def _py_client_seal(
    keys: _Keys, counter: int, plains: _Buffer, pads: _Pads, filler: _Buffer, out_header: bytes
) -> bytes:
    """The client's forward seal for a run (``ClientLayers.seal_forward``, cell by cell).

    ``keys`` are each hop's forward key in path order; ``plains`` are layer plaintexts as
    :func:`frame_messages` builds them, of which only the relay message (bytes 32..1003) is
    used; ``pads[i]`` is the next ``16 * n`` bytes of hop ``i``'s forward pad stream (hops
    before the last); ``filler`` is ``n * (32 - 16 * (hops - 1))`` random bytes, each cell's
    share in order. Cell ``i`` is ``out_header`` and the body that every hop opens in turn,
    each hop's pad becoming exactly the ciphertext the next hop expects.
    """
    n = _check_client_seal(keys, counter, plains, pads, filler, out_header)
    hops = len(keys)
    fill = _filler_size(hops)
    encrypts = [key._py.encrypt for key in keys]
    view = memoryview(plains)
    out: list[bytes] = []
    for j in range(n):
        nonce = _NONCE(counter + j)
        # The ciphertext prefix hop i+1 receives is fixed by the pads of the hops before it:
        # prefix_{i+1} = pad_i || (prefix_i XOR keystream_i); the last hop's plaintext starts
        # with that prefix decrypted.
        prefix = b""
        for i in range(hops - 1):
            if prefix:
                prefix = _xor(prefix, _keystream(keys[i], nonce, len(prefix)))
            prefix = bytes(pads[i][j * TAG_SIZE : (j + 1) * TAG_SIZE]) + prefix
        if prefix:
            prefix = _xor(prefix, _keystream(keys[-1], nonce, len(prefix)))
        base = j * PLAIN_SIZE
        inner = b"".join(
            (
                prefix,
                filler[j * fill : (j + 1) * fill],
                view[base + MESSAGE_OFFSET : base + PLAIN_SIZE],
            )
        )
        sealed = encrypts[-1](nonce, inner, None)
        for i in range(hops - 2, -1, -1):
            # Hop i's plaintext is the next hop's body minus the pad hop i puts in front.
            sealed = encrypts[i](nonce, sealed[TAG_SIZE:], None)
        out.append(out_header)
        out.append(sealed)
    return b"".join(out)


def _py_seal_run(
    key: CellKey, counter: int, run: _Buffer, out_header: bytes, size: int, skip: int
) -> bytes:
    # relay_backward and end_seal: item i of the run (``size`` bytes) becomes
    # out_header || AEAD-Seal(key, counter + i, item_i[skip:]).
    n = _check_header_run(counter, run, out_header, size)
    encrypt = key._py.encrypt
    view = memoryview(run)
    out: list[bytes] = []
    for i in range(n):
        out.append(out_header)
        out.append(encrypt(_NONCE(counter + i), view[i * size + skip : (i + 1) * size], None))
    return b"".join(out)


def _py_frame_messages(kind: int, payloads: bytes, lengths: Sequence[int], prefix: bytes) -> bytes:
    """Relay messages as layer plaintexts: for each length ``m`` (consuming ``payloads`` in
    order), ``prefix || kind || u16(m) || payload || zero fill`` to ``PLAIN_SIZE`` bytes.
    ``prefix`` is 32 zero bytes at the exit; the client passes its own filler."""
    _check_framing(kind, payloads, lengths, prefix)
    out: list[bytes] = []
    pos = 0
    head = struct.Struct("!BH").pack
    for m in lengths:
        out.append(prefix)
        out.append(head(kind, m))
        out.append(payloads[pos : pos + m])
        out.append(_ZEROS[: MAX_PAYLOAD - m])
        pos += m
    return b"".join(out)


def _py_scan_messages(plains: _Buffer, n_kinds: int) -> tuple[bytes, list[int], int]:
    """Check the relay message in each plaintext of a run: ``kind < n_kinds``, length at
    most ``MAX_PAYLOAD``, zero fill after it. Returns ``(kinds, lengths, k)`` for the ``k``
    leading plaintexts that pass (``k`` < run length: plaintext ``k`` is malformed)."""
    n = _run_length(plains, PLAIN_SIZE)
    view = memoryview(plains)
    kinds = bytearray()
    lengths: list[int] = []
    for i in range(n):
        base = i * PLAIN_SIZE + MESSAGE_OFFSET
        kind = view[base]
        m = view[base + 1] << 8 | view[base + 2]
        if kind >= n_kinds or m > MAX_PAYLOAD:
            return bytes(kinds), lengths, i
        end = base + MESSAGE_HEADER_SIZE + m
        stop = (i + 1) * PLAIN_SIZE
        if view[end:stop] != _ZEROS[: stop - end]:
            return bytes(kinds), lengths, i
        kinds.append(kind)
        lengths.append(m)
    return bytes(kinds), lengths, n


# --- C backend (cell_kernels.c): the same contracts, the loops in C -------------------------

_C_ERRORS: Final = {
    -1: "OpenSSL failed on a cell (not a tag mismatch)",
    -2: "cell kernel rejected its arguments",
    -3: "a CellKey is in use by another thread",
}


def _in(buf: _Buffer) -> Any:
    # cffi passes bytes to `const unsigned char *` without a copy; other buffers need pinning.
    return buf if type(buf) is bytes else _ffi.from_buffer(buf)


def _c_result(k: int) -> int:
    if k < 0:
        raise LocalProtocolError(_C_ERRORS.get(k, f"cell kernel failed ({k})"))
    return k


def _c_relay_forward(
    key: CellKey, counter: int, cells: _Buffer, pads: bytes, out_header: bytes
) -> tuple[bytes, int]:
    n = _check_relay_forward(counter, cells, pads, out_header)
    size = n * CELL_SIZE
    out = _alloc("unsigned char[]", size)
    k = _c_result(
        _lib.zm_relay_forward(
            key._c, counter, _in(cells), size, _in(pads), len(pads),
            _in(out_header), HEADER_SIZE, out, size,
        )
    )  # fmt: skip
    return _ffi.buffer(out, k * CELL_SIZE)[:], k


def _c_seal_run(
    kernel: Any, key: CellKey, counter: int, run: _Buffer, out_header: bytes, size: int
) -> bytes:
    # zm_relay_backward and zm_end_seal take the same arguments: a run of `size`-byte items
    # in, a run of cells out.
    n = _check_header_run(counter, run, out_header, size)
    out_size = n * CELL_SIZE
    out = _alloc("unsigned char[]", out_size)
    _c_result(
        kernel(key._c, counter, _in(run), n * size, _in(out_header), HEADER_SIZE, out, out_size)
    )
    return _ffi.buffer(out, out_size)[:]  # type: ignore[no-any-return]


def _c_relay_backward(key: CellKey, counter: int, cells: _Buffer, out_header: bytes) -> bytes:
    return _c_seal_run(_lib.zm_relay_backward, key, counter, cells, out_header, CELL_SIZE)


def _c_end_open(keys: Sequence[CellKey], counter: int, cells: _Buffer) -> tuple[bytes, int]:
    n = _check_end_open(keys, counter, cells)
    hops = len(keys)
    null = _ffi.NULL
    first = keys[0]._c
    second = keys[1]._c if hops > 1 else null
    third = keys[2]._c if hops > 2 else null
    size = n * PLAIN_SIZE
    out = _alloc("unsigned char[]", size)
    k = _c_result(
        _lib.zm_end_open(hops, first, second, third, counter, _in(cells), n * CELL_SIZE, out, size)
    )
    return _ffi.buffer(out, k * PLAIN_SIZE)[:], k


def _c_end_seal(key: CellKey, counter: int, plains: _Buffer, out_header: bytes) -> bytes:
    return _c_seal_run(_lib.zm_end_seal, key, counter, plains, out_header, PLAIN_SIZE)


def _c_client_seal(
    keys: _Keys, counter: int, plains: _Buffer, pads: _Pads, filler: _Buffer, out_header: bytes
) -> bytes:
    n = _check_client_seal(keys, counter, plains, pads, filler, out_header)
    hops = len(keys)
    null = _ffi.NULL
    handles = [key._c for key in keys] + [null] * (MAX_HOPS - hops)
    # Unused pad slots (hops < 3) go in as NULL with length 0.
    pad_args: list[Any] = []
    for i in range(MAX_HOPS - 1):
        pad_args += (_in(pads[i]), len(pads[i])) if i < hops - 1 else (null, 0)
    size = n * CELL_SIZE
    out = _alloc("unsigned char[]", size)
    _c_result(
        _lib.zm_client_seal(
            hops, *handles, counter, _in(plains), n * PLAIN_SIZE, *pad_args,
            _in(filler), len(filler), _in(out_header), HEADER_SIZE, out, size,
        )
    )  # fmt: skip
    return _ffi.buffer(out, size)[:]  # type: ignore[no-any-return]


def _c_frame_messages(kind: int, payloads: bytes, lengths: Sequence[int], prefix: bytes) -> bytes:
    _check_framing(kind, payloads, lengths, prefix)
    count = len(lengths)
    table = _ffi.new("uint16_t[]", lengths if type(lengths) in (list, tuple) else list(lengths))
    size = count * PLAIN_SIZE
    out = _alloc("unsigned char[]", size)
    _c_result(
        _lib.zm_frame_messages(
            kind, _in(payloads), len(payloads), table, count, _in(prefix), MESSAGE_OFFSET,
            out, size,
        )
    )  # fmt: skip
    return _ffi.buffer(out, size)[:]  # type: ignore[no-any-return]


def _c_scan_messages(plains: _Buffer, n_kinds: int) -> tuple[bytes, list[int], int]:
    n = _run_length(plains, PLAIN_SIZE)
    kinds = _alloc("unsigned char[]", n)
    lengths = _alloc("uint16_t[]", n)
    # A kind is one byte: clamping n_kinds to 0..256 keeps every "kind < n_kinds" verdict.
    limit = min(max(n_kinds, 0), 256)
    k = _c_result(_lib.zm_scan_messages(_in(plains), n * PLAIN_SIZE, limit, kinds, lengths, n))
    return _ffi.buffer(kinds, k)[:], _ffi.unpack(lengths, k), k


def _check_ws_mask(data: _Buffer, key: bytes) -> int:
    if len(key) != 4:
        raise LocalProtocolError("a WebSocket masking key is 4 bytes")
    view = memoryview(data)
    if view.itemsize != 1 or not view.c_contiguous:
        raise LocalProtocolError("a byte buffer is needed")
    return view.nbytes


def _py_ws_mask(data: _Buffer, key: bytes) -> bytes:
    """RFC 6455 §5.3 masking, its own inverse: byte ``i`` XOR ``key[i % 4]``. For the cell
    link's WebSocket frames (the one non-cell kernel here: pure-Python masking cost more per
    byte than a relay's whole cell work)."""
    n = _check_ws_mask(data, key)
    out = bytearray(data)
    for j in range(4):  # one translate per key byte over every fourth byte
        out[j::4] = out[j::4].translate(_XOR_TABLES[key[j]])
    return bytes(out[:n])


_XOR_TABLES: Final = [bytes(b ^ k for b in range(256)) for k in range(256)]


def _c_ws_mask(data: _Buffer, key: bytes) -> bytes:
    n = _check_ws_mask(data, key)
    out = _alloc("unsigned char[]", max(n, 1))
    _c_result(_lib.zm_ws_mask(_in(data), n, key, 4, out, n))
    return _ffi.buffer(out, n)[:]  # type: ignore[no-any-return]


def _functions(prefix: str) -> dict[str, Callable[..., Any]]:
    return {name: globals()[f"_{prefix}_{name}"] for name in KERNELS}


_PY_FUNCTIONS: Final = _functions("py")
_C_FUNCTIONS: Final = _functions("c")
for _name, _function in _C_FUNCTIONS.items():
    _function.__doc__ = _PY_FUNCTIONS[_name].__doc__  # the twin's docstring is the contract

#: Each available backend's kernels by name: ``"python"`` always, ``"c"`` when the extension
#: is built (tests, benchmarks and fuzzing compare both in one process).
IMPLEMENTATIONS: Final[dict[str, dict[str, Callable[..., Any]]]] = {"python": _PY_FUNCTIONS}
if BACKEND == "c":
    IMPLEMENTATIONS["c"] = _C_FUNCTIONS

# The public names: one backend, chosen once at import.
relay_forward = _c_relay_forward if BACKEND == "c" else _py_relay_forward
relay_backward = _c_relay_backward if BACKEND == "c" else _py_relay_backward
end_open = _c_end_open if BACKEND == "c" else _py_end_open
end_seal = _c_end_seal if BACKEND == "c" else _py_end_seal
client_seal = _c_client_seal if BACKEND == "c" else _py_client_seal
frame_messages = _c_frame_messages if BACKEND == "c" else _py_frame_messages
scan_messages = _c_scan_messages if BACKEND == "c" else _py_scan_messages
ws_mask = _c_ws_mask if BACKEND == "c" else _py_ws_mask
