"""Layered AEAD of data cells: one 16-byte tag per hop, constant size on every link.

Each hop holds per-direction AEAD keys (ChaCha20-Poly1305 or AES-256-GCM, RFC 8439 / NIST SP
800-38D), 96-bit nonces from per-direction counters that never travel, and a forward ChaCha20
"pad" stream. Every hop processes every cell of a direction the same way, so no hop needs to
know its position and no cell shows it. Byte-level description: ``docs/wire/cells.md`` §5.

In both directions the 1019-byte body is ``ciphertext (1003) | tag (16)``: one AEAD layer,
the one of the hop that opens (forward) or last sealed (backward) it.

Forward (client → last hop), every hop::

    plain  = AEAD-Open(K_fwd, counter, body)              # authenticates all 1019 bytes
    body'  = pad_stream(16 bytes) || plain

A hop authenticates *every* byte it receives, including the pad its predecessor put in front:
a marker written anywhere by an earlier hop fails here (tagging is caught by the next hop).
The next hop's tag is the last 16 bytes of ``plain``; the plaintext moves 16 bytes right at
every hop, so the relay message sits at offset 32 of the last hop's plaintext, after earlier
pads (or client filler). The client knows every pad stream and can compute the first bytes of
every hop's AEAD keystream, so it seals innermost first such that the pads each hop adds are
exactly the ciphertext the next hop expects (:meth:`ClientLayers.seal_forward`; the same idea
as the Sphinx header filler).

Backward (last hop → client), every hop::

    body'  = AEAD-Seal(K_bwd, counter, body[16:1019])     # drops the first 16 bytes

The last hop seals ``zeros(32) || message``. What a hop drops is always the encryption of those
known zeros by the hops after it, so the client recomputes it from keystream prefixes before
opening each layer (:meth:`ClientLayers.open_backward`). An honest hop's encryption hides any
marker a colluding later hop adds; the client's tag check then tears the circuit down.

The relay fast path (:meth:`RelayLayers.pipe`) is one closure per circuit and direction: one
AEAD call on a whole-body slice, plus (forward) a 16-byte slice of a pre-generated pad block,
one join; cached cipher objects, a precompiled nonce ``Struct``, counters in closure cells.
``bench/onion.py`` holds it against a raw AEAD call.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from zmesh._accel import cells as kernels
from zmesh.sansio.onion.cells import BODY_SIZE, CELL_HEADER_SIZE, DATA_SIZE, MAX_HOPS, TAG_SIZE
from zmesh.sansio.onion.commands import CellAead
from zmesh.sansio.onion.session import HopKeys
from zmesh.sansio.wire import AuthenticationFailed, LocalProtocolError, RandomSource

__all__ = [
    "LAYER_PLAIN_SIZE",
    "MAX_CELLS_PER_DIRECTION",
    "MESSAGE_OFFSET",
    "BlockPipe",
    "ClientLayers",
    "ExitLayers",
    "RelayLayers",
    "make_aead",
]

#: Each forward cell draws 16 bytes of a pad stream; ChaCha20's 32-bit block counter allows
#: 2^32 blocks of 64 bytes, so 2^32 cells per direction keep every stream unrepeated. The
#: 64-bit nonce counter is nowhere near its end by then.
MAX_CELLS_PER_DIRECTION: Final = 1 << 32

#: Every layer's AEAD plaintext, and where the relay message starts in the innermost
#: plaintext: after up to MAX_HOPS - 1 pads (forward) or that many zero blocks (backward).
LAYER_PLAIN_SIZE: Final = BODY_SIZE - TAG_SIZE  # 1003
MESSAGE_OFFSET: Final = (MAX_HOPS - 1) * TAG_SIZE  # 32
assert LAYER_PLAIN_SIZE - MESSAGE_OFFSET == DATA_SIZE

_NONCE: Final = struct.Struct("!4xQ")  # 96-bit nonce: 32 zero bits | 64-bit cell counter
_NONCE_PACK: Final = _NONCE.pack
_JOIN: Final = b"".join
_ZERO_NONCE16: Final = bytes(16)
_ZERO16: Final = bytes(TAG_SIZE)
_ZERO_PREFIX: Final = bytes(MESSAGE_OFFSET)
_PAD_BLOCK: Final = 64 * TAG_SIZE  # forward pads are drawn 64 cells at a time
_ZERO_PAD_BLOCK: Final = bytes(_PAD_BLOCK)
_DROP: Final = CELL_HEADER_SIZE + TAG_SIZE  # backward: the body minus its first 16 bytes
# The relay closures use these as literals (5, 21, 16, 1024) to keep the hot path lean.
assert CELL_HEADER_SIZE == 5 and _DROP == 21 and TAG_SIZE == 16 and _PAD_BLOCK == 1024

Aead = ChaCha20Poly1305 | AESGCM


def make_aead(aead: CellAead, key: bytes) -> Aead:
    if aead is CellAead.AES_256_GCM:
        return AESGCM(key)
    return ChaCha20Poly1305(key)


def _pad_stream(key: bytes) -> CipherContext:
    return Cipher(algorithms.ChaCha20(key, _ZERO_NONCE16), None).encryptor()


def _xor(a: bytes, b: bytes) -> bytes:
    n = len(a)
    return (int.from_bytes(a, "little") ^ int.from_bytes(b[:n], "little")).to_bytes(n, "little")


def _keystream_prefix(aead: Aead, nonce: bytes, length: int) -> bytes:
    """The first ``length`` bytes of an AEAD's keystream for ``nonce``: the ciphertext of
    zeros (the tag is discarded; nothing computed this way is sent)."""
    return aead.encrypt(nonce, _ZERO_PREFIX[:length], None)[:length]


def _no_block_sink(target: Hashable, cells: bytes, count: int) -> None:
    raise LocalProtocolError("this pipe was made without a run sink")


class RelayLayers:
    """A middle hop's view of one circuit: open forward cells, seal backward cells.

    The per-direction state (nonce counter, pad-stream position) lives in the closure that
    :meth:`pipe` returns, so there is one pipe per direction; :meth:`forward` and
    :meth:`backward` are conveniences over such a pipe (tests, tools).
    """

    __slots__ = ("_counters", "_keys", "_method_pipes")

    def __init__(self, keys: HopKeys) -> None:
        self._keys = keys
        self._counters: dict[bool, Callable[[], int]] = {}
        self._method_pipes: dict[
            bool, tuple[bytes, list[tuple[Hashable, bytes]], Callable[[bytes], None]]
        ] = {}

    @property
    def forward_count(self) -> int:
        counter = self._counters.get(True)
        return counter() if counter is not None else 0

    @property
    def backward_count(self) -> int:
        counter = self._counters.get(False)
        return counter() if counter is not None else 0

    def forward(self, cell: bytes, out_header: bytes) -> bytes:
        """Peel this hop's layer off a forward cell; :class:`AuthenticationFailed` (state
        unchanged) when any byte was modified."""
        return self._through_method_pipe(True, cell, out_header)

    def backward(self, cell: bytes, out_header: bytes) -> bytes:
        """Add this hop's layer to a backward cell."""
        return self._through_method_pipe(False, cell, out_header)

    def _through_method_pipe(self, forward: bool, cell: bytes, out_header: bytes) -> bytes:
        entry = self._method_pipes.get(forward)
        if entry is None:
            sink: list[tuple[Hashable, bytes]] = []
            per_cell = self.pipe(forward, out_header, None, sink.append, _nothing)[0]
            entry = (out_header, sink, per_cell)
            self._method_pipes[forward] = entry
        header, sink, pipe = entry
        if header != out_header:
            raise LocalProtocolError("a circuit's out header does not change")
        pipe(cell)
        return sink.pop()[1]

    def pipe(
        self,
        forward: bool,
        out_header: bytes,
        target: Hashable,
        append: Callable[[tuple[Hashable, bytes]], None],
        on_tag_failure: Callable[[], None],
        append_block: Callable[[Hashable, bytes, int], None] = _no_block_sink,
    ) -> tuple[Callable[[bytes], None], BlockPipe]:
        """The relay fast paths for one direction, sharing its state (counter, pad stream).

        The first is per cell: a closure that takes a whole cell and queues
        ``(target, next cell)`` through ``append``. ``on_tag_failure`` runs before
        :class:`AuthenticationFailed` is raised; the state is then unchanged.

        The run closure takes ``(block, start, n)``: cells ``start .. start+n-1`` of a buffer
        of whole cells, all of this circuit and direction. It processes the longest prefix it
        can with one batch kernel call (:mod:`zmesh._accel.cells`), queues the result through
        ``append_block(target, cells, count)`` and returns how many cells it took. It never
        raises for a bad cell: it stops before it, leaving the state as it was, and the
        caller hands that cell to the per-cell closure, which reports it exactly as before.
        """
        if forward in self._counters:
            raise LocalProtocolError("this direction already has its pipe")
        keys = self._keys
        count = 0
        limit_all = MAX_CELLS_PER_DIRECTION
        if forward:
            decrypt = make_aead(keys.aead, keys.forward_key).decrypt
            cell_key = kernels.CellKey(int(keys.aead), keys.forward_key)
            pad_update = _pad_stream(keys.forward_pad_key).update
            # Unused pad-stream bytes are pads[offset:]; the stream cipher stands right after
            # the end of pads. The per-cell path draws 64 cells' worth at a time.
            pads = pad_update(_ZERO_PAD_BLOCK)
            offset = 0

            def relay_forward(
                cell: bytes,
                pack: Callable[[int], bytes] = _NONCE_PACK,
                join: Callable[[Iterable[bytes]], bytes] = _JOIN,
                limit: int = MAX_CELLS_PER_DIRECTION,
            ) -> None:
                # Constants arrive as default arguments: local loads on the hottest path.
                nonlocal count, pads, offset
                if count >= limit:
                    raise LocalProtocolError("circuit used up its forward nonces")
                try:
                    plain = decrypt(pack(count), cell[5:], None)  # 5: CELL_HEADER_SIZE
                except InvalidTag:
                    on_tag_failure()
                    raise AuthenticationFailed("forward cell tag does not verify") from None
                count += 1
                if offset >= len(pads):
                    pads = pad_update(_ZERO_PAD_BLOCK)
                    offset = 0
                append((target, join((out_header, pads[offset : offset + 16], plain))))
                offset += 16

            def relay_forward_run(block: bytes, start: int, n: int) -> int:
                nonlocal count, pads, offset
                if count + n > limit_all:
                    return 0
                need = 16 * n
                if len(pads) - offset < need:
                    more = need - (len(pads) - offset)
                    pads = pads[offset:] + pad_update(bytes(-(-more // 1024) * 1024))
                    offset = 0
                out, k = kernels.relay_forward(
                    cell_key,
                    count,
                    memoryview(block)[start * 1024 : (start + n) * 1024],
                    pads[offset : offset + need],
                    out_header,
                )
                if k:
                    count += k
                    offset += 16 * k
                    append_block(target, out, k)
                return k

            self._counters[True] = lambda: count
            return relay_forward, relay_forward_run

        encrypt = make_aead(keys.aead, keys.backward_key).encrypt

        def relay_backward(
            cell: bytes,
            pack: Callable[[int], bytes] = _NONCE_PACK,
            limit: int = MAX_CELLS_PER_DIRECTION,
        ) -> None:
            nonlocal count
            if count >= limit:
                raise LocalProtocolError("circuit used up its backward nonces")
            # 21 = header + the 16 dropped bytes (always filler: see the module docstring).
            sealed = encrypt(pack(count), cell[21:], None)
            count += 1
            append((target, out_header + sealed))

        backward_key = kernels.CellKey(int(keys.aead), keys.backward_key)

        def relay_backward_run(block: bytes, start: int, n: int) -> int:
            nonlocal count
            if count + n > limit_all:
                return 0
            out = kernels.relay_backward(
                backward_key,
                count,
                memoryview(block)[start * 1024 : (start + n) * 1024],
                out_header,
            )
            count += n
            append_block(target, out, n)
            return n

        self._counters[False] = lambda: count
        return relay_backward, relay_backward_run


def _nothing() -> None:
    return None


#: A run fast path: ``(buffer of whole cells, first cell, cell count) -> cells taken``.
BlockPipe = Callable[[bytes, int, int], int]


class ExitLayers:
    """The last hop's view: forward cells end here, backward cells start here."""

    __slots__ = (
        "_bwd",
        "_fwd",
        "backward_count",
        "backward_run_key",
        "forward_count",
        "forward_run_keys",
    )

    def __init__(self, keys: HopKeys) -> None:
        self._fwd = make_aead(keys.aead, keys.forward_key)
        self._bwd = make_aead(keys.aead, keys.backward_key)
        # The same keys for the run kernels (zmesh._accel.cells); counters are shared.
        self.forward_run_keys = (kernels.CellKey(int(keys.aead), keys.forward_key),)
        self.backward_run_key = kernels.CellKey(int(keys.aead), keys.backward_key)
        self.forward_count = 0
        self.backward_count = 0

    def open_forward(self, cell: bytes) -> bytes:
        """Return the relay message (:data:`DATA_SIZE` bytes); state unchanged on error."""
        return self.open_forward_plain(cell)[MESSAGE_OFFSET:]

    def open_forward_plain(self, cell: bytes) -> bytes:
        """:meth:`open_forward`, returning the whole plaintext (the message at
        :data:`MESSAGE_OFFSET`): one copy less on the exit's per-cell path."""
        count = self.forward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its forward nonces")
        try:
            plain = self._fwd.decrypt(_NONCE_PACK(count), cell[CELL_HEADER_SIZE:], None)
        except InvalidTag:
            raise AuthenticationFailed("forward cell tag does not verify at the exit") from None
        self.forward_count = count + 1
        return plain

    def seal_backward(self, plaintext: bytes, out_header: bytes) -> bytes:
        if len(plaintext) != DATA_SIZE:
            raise LocalProtocolError(f"plaintext must be {DATA_SIZE} bytes")
        return self.seal_backward_plain(_ZERO_PREFIX + plaintext, out_header)

    def seal_backward_run(self, plains: bytes, out_header: bytes) -> bytes:
        """:meth:`seal_backward_plain` for a run of layer plaintexts back to back (as
        ``kernels.frame_messages`` builds them): one kernel call, one buffer of cells."""
        count = self.backward_count
        n = len(plains) // LAYER_PLAIN_SIZE
        if count + n > MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its backward nonces")
        sealed = kernels.end_seal(self.backward_run_key, count, plains, out_header)
        self.backward_count = count + n
        return sealed

    def seal_backward_plain(self, plain: bytes, out_header: bytes) -> bytes:
        """:meth:`seal_backward` for a caller that built the whole layer plaintext
        (:data:`MESSAGE_OFFSET` zero bytes, then the message): one copy less per cell."""
        if len(plain) != LAYER_PLAIN_SIZE or not plain.startswith(_ZERO_PREFIX):
            raise LocalProtocolError(f"plaintext must be {LAYER_PLAIN_SIZE} bytes, zeros first")
        count = self.backward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its backward nonces")
        # The zero prefix is what later hops drop; its ciphertext looks random on the wire.
        sealed = self._bwd.encrypt(_NONCE_PACK(count), plain, None)
        self.backward_count = count + 1
        return out_header + sealed


class _ClientHop:
    __slots__ = ("bwd", "fwd", "fwd_pad")

    def __init__(self, keys: HopKeys) -> None:
        self.fwd = make_aead(keys.aead, keys.forward_key)
        self.bwd = make_aead(keys.aead, keys.backward_key)
        self.fwd_pad = _pad_stream(keys.forward_pad_key)


class ClientLayers:
    """The client's mirror of every hop's keys, counters and pad streams on one circuit."""

    __slots__ = (
        "_hops",
        "_random",
        "backward_count",
        "backward_run_keys",
        "forward_count",
        "forward_run_keys",
    )

    def __init__(self, hop_keys: Sequence[HopKeys], random: RandomSource) -> None:
        if not 1 <= len(hop_keys) <= MAX_HOPS:
            raise LocalProtocolError(f"a circuit has 1..{MAX_HOPS} hops, not {len(hop_keys)}")
        self._hops = [_ClientHop(k) for k in hop_keys]
        self.backward_run_keys = tuple(
            kernels.CellKey(int(k.aead), k.backward_key) for k in hop_keys
        )
        self.forward_run_keys = tuple(
            kernels.CellKey(int(k.aead), k.forward_key) for k in hop_keys
        )
        self._random = random
        # All hops see every cell, so one counter per direction serves every hop's nonce.
        self.forward_count = 0
        self.backward_count = 0

    @property
    def hop_count(self) -> int:
        return len(self._hops)

    def seal_forward(self, plaintext: bytes, out_header: bytes) -> bytes:
        """Wrap a relay message (:data:`DATA_SIZE` bytes) for every hop; return the cell."""
        if len(plaintext) != DATA_SIZE:
            raise LocalProtocolError(f"plaintext must be {DATA_SIZE} bytes")
        count = self.forward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its forward nonces")
        hops = self._hops
        n = len(hops)
        nonce = _NONCE_PACK(count)
        # The ciphertext prefix hop i+1 will receive is fixed by the pads of the hops before
        # it: prefix_{i+1} = pad_i || (prefix_i XOR keystream_i[0:len(prefix_i)]).
        prefix = b""
        for i in range(n - 1):
            pad = hops[i].fwd_pad.update(_ZERO16)
            if prefix:
                prefix = _xor(prefix, _keystream_prefix(hops[i].fwd, nonce, len(prefix)))
            prefix = pad + prefix
        # The last hop's plaintext: that prefix decrypted, client filler, the message.
        if prefix:
            prefix = _xor(prefix, _keystream_prefix(hops[-1].fwd, nonce, len(prefix)))
        filler = self._random(MESSAGE_OFFSET - len(prefix))
        sealed = hops[-1].fwd.encrypt(nonce, b"".join((prefix, filler, plaintext)), None)
        for i in range(n - 2, -1, -1):
            # Hop i's plaintext is the next hop's cell minus the pad hop i will put in front.
            sealed = hops[i].fwd.encrypt(nonce, sealed[TAG_SIZE:], None)
        self.forward_count = count + 1
        return out_header + sealed

    def seal_forward_run(self, plains: bytes, out_header: bytes) -> bytes:
        """:meth:`seal_forward` for a run of messages, each framed as a layer plaintext
        (``kernels.frame_messages`` with a zero prefix; the prefix is computed here): one
        kernel call, one buffer of cells. The same pad-stream bytes and the same filler
        draws, in the same order, as that many :meth:`seal_forward` calls."""
        count = self.forward_count
        n = len(plains) // LAYER_PLAIN_SIZE
        if count + n > MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its forward nonces")
        hops = self._hops
        pads = [hop.fwd_pad.update(bytes(TAG_SIZE * n)) for hop in hops[:-1]]
        filler = self._random((MESSAGE_OFFSET - TAG_SIZE * (len(hops) - 1)) * n)
        sealed = kernels.client_seal(
            self.forward_run_keys, count, plains, pads, filler, out_header
        )
        self.forward_count = count + n
        return sealed

    def open_backward(self, cell: bytes) -> bytes:
        """Peel every hop's layer off a backward cell; return the last hop's message.

        Raises :class:`AuthenticationFailed` when any layer fails; the counter then stays,
        but the circuit must be torn down anyway (a failed tag is treated as tagging).
        """
        return self.open_backward_plain(cell)[MESSAGE_OFFSET:]

    def open_backward_plain(self, cell: bytes) -> bytes:
        """:meth:`open_backward`, returning the last hop's whole plaintext (the message at
        :data:`MESSAGE_OFFSET`): one copy less on the client's per-cell path."""
        count = self.backward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its backward nonces")
        hops = self._hops
        n = len(hops)
        nonce = _NONCE_PACK(count)
        # dropped[i]: the first 16 bytes of hop i's output, which hop i-1 dropped. Hop n-1
        # (the last) encrypted 32 zero bytes first; each earlier hop re-encrypted what was
        # left of them after dropping 16. XOR with zeros is the identity, so the last hop's
        # share is its keystream itself, and only as many bytes as are used are generated.
        dropped: tuple[bytes, ...]
        if n == 2:
            dropped = (b"", _keystream_prefix(hops[1].bwd, nonce, TAG_SIZE))
        elif n == 3:
            last = _keystream_prefix(hops[2].bwd, nonce, MESSAGE_OFFSET)
            middle = _xor(last[TAG_SIZE:], _keystream_prefix(hops[1].bwd, nonce, TAG_SIZE))
            dropped = (b"", middle, last[:TAG_SIZE])
        else:
            dropped = (b"",)
        body = cell[CELL_HEADER_SIZE:]
        for i, hop in enumerate(hops):
            try:
                body = hop.bwd.decrypt(nonce, dropped[i] + body if i else body, None)
            except InvalidTag:
                raise AuthenticationFailed(f"backward cell fails at hop {i + 1}") from None
        self.backward_count = count + 1
        return body
