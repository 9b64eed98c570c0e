"""Layered AEAD of data cells: one 16-byte tag per hop, constant size on every link.

A RELAY cell body is ``data (971) | slot0 | slot1 | slot2`` (16-byte slots, one per possible
hop, :data:`~.cells.MAX_HOPS` of them whatever the path length). Each hop holds per-direction
AEAD keys (ChaCha20-Poly1305 or AES-256-GCM, RFC 8439 / NIST SP 800-38D), 96-bit nonces from
per-direction counters that never travel, and per-direction ChaCha20 "pad" streams.

Forward (client → exit), at every hop, without the hop knowing its position::

    data, slot0  = AEAD-Open(K_fwd, counter, data || slot0, AD = slot1 || slot2)
    slots'       = (slot1 || slot2 || 0^16) XOR pad_stream(48 bytes)

so a hop authenticates *every* byte it receives (a marker written anywhere by an earlier hop
fails here: tagging is caught by the next hop), strips its tag, re-encrypts the remaining slots
(so no slot value repeats on two links) and appends 16 fresh pad bytes. The client knows every
pad stream, so it computes, innermost hop first, the slot values each hop will see and seals
each layer over them (:meth:`ClientLayers.seal_forward`).

Backward (exit → client), every hop seals instead::

    data, tag    = AEAD-Seal(K_bwd, counter, data)
    slots'       = tag || (slot0 || slot1) XOR pad_stream(32 bytes)

dropping the last slot, which is always filler because at most MAX_HOPS tags are ever added.
The client peels the layers in path order. An honest hop's stream encryption of data and slots
hides any marker a colluding later hop adds; the client's tag check then tears the circuit down.

The relay fast path (:meth:`RelayLayers.forward` / :meth:`RelayLayers.backward`) is one AEAD
call on whole-cell slices plus one 32/48-byte stream update, with cached cipher objects and a
precompiled nonce ``Struct``: that is what ``bench/onion.py`` holds against a raw AEAD call.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable, Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from zmesh.sansio.onion.cells import (
    CELL_HEADER_SIZE,
    DATA_SIZE,
    MAX_HOPS,
    SLOT_AREA_SIZE,
    TAG_SIZE,
)
from zmesh.sansio.onion.commands import CellAead
from zmesh.sansio.onion.session import HopKeys
from zmesh.sansio.wire import AuthenticationFailed, LocalProtocolError, RandomSource

__all__ = [
    "MAX_CELLS_PER_DIRECTION",
    "ClientLayers",
    "RelayLayers",
    "ExitLayers",
    "make_aead",
]

#: Each cell draws at most 48 bytes of a pad stream; ChaCha20's 32-bit block counter allows
#: 2^32 blocks of 64 bytes, so 2^32 cells per direction keep every stream unrepeated. The
#: 64-bit nonce counter is nowhere near its end by then.
MAX_CELLS_PER_DIRECTION: Final = 1 << 32

_NONCE: Final = struct.Struct("!4xQ")  # 96-bit nonce: 32 zero bits | 64-bit cell counter
_NONCE_PACK: Final = _NONCE.pack
_ZERO_NONCE16: Final = bytes(16)
_ZERO16: Final = bytes(TAG_SIZE)
_ZERO_SLOTS: Final = bytes(SLOT_AREA_SIZE)

# Offsets inside a whole cell (header included), so the fast path slices the cell once.
_DATA: Final = CELL_HEADER_SIZE  # 5
_SLOT0: Final = _DATA + DATA_SIZE  # 976
_SLOT1: Final = _SLOT0 + TAG_SIZE  # 992
_SLOT2: Final = _SLOT1 + TAG_SIZE  # 1008
_KEEP: Final = SLOT_AREA_SIZE - TAG_SIZE  # 32: slots that survive one hop

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


class RelayLayers:
    """A middle hop's view of one circuit: open forward cells, seal backward cells."""

    __slots__ = (
        "_bwd_pad_update",
        "_decrypt",
        "_encrypt",
        "_fwd_pad_update",
        "backward_count",
        "forward_count",
    )

    def __init__(self, keys: HopKeys) -> None:
        # Bound methods are cached: this object sits on the per-cell fast path.
        self._decrypt = make_aead(keys.aead, keys.forward_key).decrypt
        self._encrypt = make_aead(keys.aead, keys.backward_key).encrypt
        self._fwd_pad_update = _pad_stream(keys.forward_pad_key).update
        self._bwd_pad_update = _pad_stream(keys.backward_pad_key).update
        self.forward_count = 0
        self.backward_count = 0

    def forward(self, cell: bytes, out_header: bytes) -> bytes:
        """Peel this hop's layer off a forward cell and return the cell for the next link.

        Raises :class:`AuthenticationFailed` (state unchanged) when any byte was modified.
        """
        count = self.forward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its forward nonces")
        ad = cell[_SLOT1:]
        try:
            plain = self._decrypt(_NONCE_PACK(count), cell[_DATA:_SLOT1], ad)
        except InvalidTag:
            raise AuthenticationFailed("forward cell tag does not verify") from None
        self.forward_count = count + 1
        return out_header + plain + self._fwd_pad_update(ad + _ZERO16)

    def backward(self, cell: bytes, out_header: bytes) -> bytes:
        """Add this hop's layer to a backward cell."""
        count = self.backward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its backward nonces")
        sealed = self._encrypt(_NONCE_PACK(count), cell[_DATA:_SLOT0], None)
        self.backward_count = count + 1
        return out_header + sealed + self._bwd_pad_update(cell[_SLOT0:_SLOT2])

    def pipe(
        self,
        forward: bool,
        out_header: bytes,
        target: Hashable,
        append: Callable[[tuple[Hashable, bytes]], None],
        on_tag_failure: Callable[[], None],
    ) -> Callable[[bytes], None]:
        """The relay fast path: :meth:`forward` or :meth:`backward` inlined into one closure
        that queues ``(target, cell)`` through ``append``. Same results, one call per cell
        instead of three; ``on_tag_failure`` runs before :class:`AuthenticationFailed` is
        raised."""
        layers = self
        if forward:
            decrypt = self._decrypt
            fwd_update = self._fwd_pad_update

            def relay_forward(cell: bytes) -> None:
                count = layers.forward_count
                if count >= MAX_CELLS_PER_DIRECTION:
                    raise LocalProtocolError("circuit used up its forward nonces")
                ad = cell[_SLOT1:]
                try:
                    plain = decrypt(_NONCE_PACK(count), cell[_DATA:_SLOT1], ad)
                except InvalidTag:
                    on_tag_failure()
                    raise AuthenticationFailed("forward cell tag does not verify") from None
                layers.forward_count = count + 1
                append((target, out_header + plain + fwd_update(ad + _ZERO16)))

            return relay_forward
        encrypt = self._encrypt
        bwd_update = self._bwd_pad_update

        def relay_backward(cell: bytes) -> None:
            count = layers.backward_count
            if count >= MAX_CELLS_PER_DIRECTION:
                raise LocalProtocolError("circuit used up its backward nonces")
            sealed = encrypt(_NONCE_PACK(count), cell[_DATA:_SLOT0], None)
            layers.backward_count = count + 1
            append((target, out_header + sealed + bwd_update(cell[_SLOT0:_SLOT2])))

        return relay_backward


class ExitLayers:
    """The last hop's view: forward cells end here, backward cells start here."""

    __slots__ = ("_bwd", "_bwd_pad", "_fwd", "backward_count", "forward_count")

    def __init__(self, keys: HopKeys) -> None:
        self._fwd = make_aead(keys.aead, keys.forward_key)
        self._bwd = make_aead(keys.aead, keys.backward_key)
        # The exit's forward pad stream is never needed: nothing follows it.
        self._bwd_pad = _pad_stream(keys.backward_pad_key)
        self.forward_count = 0
        self.backward_count = 0

    def open_forward(self, cell: bytes) -> bytes:
        """Return the innermost plaintext (:data:`DATA_SIZE` bytes); state unchanged on error."""
        count = self.forward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its forward nonces")
        try:
            plain = self._fwd.decrypt(_NONCE.pack(count), cell[_DATA:_SLOT1], cell[_SLOT1:])
        except InvalidTag:
            raise AuthenticationFailed("forward cell tag does not verify at the exit") from None
        self.forward_count = count + 1
        return plain

    def seal_backward(self, plaintext: bytes, out_header: bytes) -> bytes:
        if len(plaintext) != DATA_SIZE:
            raise LocalProtocolError(f"plaintext must be {DATA_SIZE} bytes")
        count = self.backward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its backward nonces")
        sealed = self._bwd.encrypt(_NONCE.pack(count), plaintext, None)
        self.backward_count = count + 1
        # The two filler slots are this hop's stream over zeros, exactly what a relay would
        # emit for all-zero incoming slots: indistinguishable from a relayed cell.
        return b"".join((out_header, sealed, self._bwd_pad.update(_ZERO_SLOTS[:_KEEP])))


class _ClientHop:
    __slots__ = ("bwd", "bwd_pad", "fwd", "fwd_pad")

    def __init__(self, keys: HopKeys) -> None:
        self.fwd = make_aead(keys.aead, keys.forward_key)
        self.bwd = make_aead(keys.aead, keys.backward_key)
        self.fwd_pad = _pad_stream(keys.forward_pad_key)
        self.bwd_pad = _pad_stream(keys.backward_pad_key)


class ClientLayers:
    """The client's mirror of every hop's keys, counters and pad streams on one circuit."""

    __slots__ = ("_hops", "_random", "backward_count", "forward_count")

    def __init__(self, hop_keys: Sequence[HopKeys], random: RandomSource) -> None:
        if not 1 <= len(hop_keys) <= MAX_HOPS:
            raise LocalProtocolError(f"a circuit has 1..{MAX_HOPS} hops, not {len(hop_keys)}")
        self._hops = [_ClientHop(k) for k in hop_keys]
        self._random = random
        # All hops see every cell, so one counter per direction serves every hop's nonce.
        self.forward_count = 0
        self.backward_count = 0

    @property
    def hop_count(self) -> int:
        return len(self._hops)

    def seal_forward(self, plaintext: bytes, out_header: bytes) -> bytes:
        """Wrap ``plaintext`` (:data:`DATA_SIZE` bytes) for every hop; return the whole cell."""
        if len(plaintext) != DATA_SIZE:
            raise LocalProtocolError(f"plaintext must be {DATA_SIZE} bytes")
        count = self.forward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its forward nonces")
        hops = self._hops
        n = len(hops)
        nonce = _NONCE.pack(count)
        # Slot values hop i will receive, from slot n-i on: the client's random filler, moved
        # along and re-encrypted by every hop, plus each earlier hop's 16 pad bytes.
        streams: list[bytes] = []
        known = self._random(TAG_SIZE * (MAX_HOPS - n))
        for i in range(n - 1):
            stream = hops[i].fwd_pad.update(_ZERO_SLOTS)
            streams.append(stream)
            known = _xor(stream[TAG_SIZE * (n - 1 - i) : _KEEP], known) + stream[_KEEP:]
        # Now seal innermost first; each hop's AD is the slot area after its own tag.
        ad = known
        data = plaintext
        for i in range(n - 1, 0, -1):
            sealed = hops[i].fwd.encrypt(nonce, data, ad)
            data = sealed[:DATA_SIZE]
            ad = _xor(sealed[DATA_SIZE:] + ad[: _KEEP - TAG_SIZE], streams[i - 1])
        sealed = hops[0].fwd.encrypt(nonce, data, ad)
        self.forward_count = count + 1
        return b"".join((out_header, sealed, ad))

    def open_backward(self, cell: bytes) -> bytes:
        """Peel every hop's layer off a backward cell; return the exit's plaintext.

        Raises :class:`AuthenticationFailed` when any layer fails. The pad streams of the hops
        before the failing one have moved on, so the circuit must be torn down (it is: a
        failed tag is treated as tagging).
        """
        count = self.backward_count
        if count >= MAX_CELLS_PER_DIRECTION:
            raise LocalProtocolError("circuit used up its backward nonces")
        nonce = _NONCE.pack(count)
        data = cell[_DATA:_SLOT0]
        slots = cell[_SLOT0:]
        last = len(self._hops) - 1
        for i, hop in enumerate(self._hops):
            try:
                data = hop.bwd.decrypt(nonce, data + slots[:TAG_SIZE], None)
            except InvalidTag:
                raise AuthenticationFailed(f"backward cell fails at hop {i + 1}") from None
            if i != last:
                known = slots[TAG_SIZE:]
                # Always draw 32 bytes so the stream stays in step with the hop.
                slots = hop.bwd_pad.update(known + _ZERO_SLOTS[: _KEEP - len(known)])[
                    : len(known)
                ]
        self.backward_count = count + 1
        return data
