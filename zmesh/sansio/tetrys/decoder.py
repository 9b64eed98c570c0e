"""The Tetrys decoder (RFC 9407 §3, §4): on-the-fly Gaussian elimination and window updates.

State, all bounded by ``max_window`` source IDs:

- the *window buffer*: one preallocated ``bytearray`` of ``max_window`` symbol slots; source ID
  ``s`` lives in slot ``s mod max_window`` (the window never spans more IDs than it has slots).
  Every known symbol is copied there once, padded as a coded symbol, so a coded packet's known
  part is subtracted with one GF kernel call over the whole buffer (slot numbers and
  coefficients as two byte strings), not one call or buffer pin per source symbol;
- ``known``: the data each known source ID delivers, and ``missing``: the IDs of the window not
  known yet (the window is always exactly ``known`` plus ``missing``, so a coded packet finds
  what it can teach by looking at the few missing IDs, not at every ID it combines);
- ``rows``: coded symbols not yet used up, in echelon form. Each row holds only still-unknown
  source IDs, its *pivot* is the lowest of them with coefficient 1, and no two rows share a
  pivot. A symbol is solved as soon as its row has no other unknown left.

A coded packet first has every known source symbol subtracted, then is reduced against the rows
by pivot; a row that reduces to nothing was a duplicate or a dependent combination and is
counted, not kept. Whenever a symbol becomes known — received or solved — it is eliminated from
every row that holds it, which may solve more symbols in a cascade. Elimination works per
*symbol* (one region operation on the whole payload), never per byte in Python.

Costs: a source packet that arrives in order with nothing missing takes a fast path (one struct
unpack, one copy into its slot, one event); a coded packet that holds no unknown symbol costs no
GF arithmetic at all, so a clean link with a repairing sender costs the receiver only parsing.

Delivery is either in order (a symbol waits for all earlier ones; the ones the window slides
past unrecovered are reported lost) or as soon as possible. Window updates go out at least every
``feedback_every`` packets and within ``feedback_interval`` of any packet, and keep repeating
with back-off while symbols are missing, so a lost update costs one interval, not the session.
"""

from __future__ import annotations

import collections
import operator
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

from zmesh.sansio.tetrys.coefficients import (
    field_for_ccgi,
    generated_coefficients,
    generated_row,
)
from zmesh.sansio.tetrys.config import LENGTH_PREFIX, TetrysConfig
from zmesh.sansio.tetrys.packets import (
    ID_MASK,
    MAX_PACKET,
    VERSION,
    CodedPacket,
    CommonHeader,
    IdFormat,
    PacketType,
    SourcePacket,
    WindowUpdate,
    parse_packet,
    vector_source_ids,
)
from zmesh.sansio.wire import LocalProtocolError, MalformedInput, OversizedInput, TruncatedInput

#: The first 32-bit header word of a plain packet (V = 1, C = 0, S = 0, HDR_LEN = 1: no CCI,
#: TSI or extensions) under ``_PLAIN_MASK``, which drops the 9 reserved bits (ignored on
#: receipt, RFC 9407 §5.1.1); PKT_TYPE is the low byte.
_PLAIN_MASK = 0xFE00FFFF
_PLAIN_SOURCE = (VERSION << 28) | (1 << 8) | PacketType.SOURCE
_PLAIN_CODED = (VERSION << 28) | (1 << 8) | PacketType.CODED
#: Header word, then the Source Symbol ID (source) or Coded Symbol ID (coded).
_HEAD = struct.Struct("!II")
#: CCGI|I|C|V bits that must be clear for the decoder's own parse: CCGI 0 or 1, C = 0.
_GENERATED_MASK = 0b1110_0010
_ID_FORMATS = tuple(IdFormat)
#: EV_LEN, CCGI|I|C|V, NB_IDS, NB_COEFS, FIRST_SOURCE_ID of a coded packet's encoding vector.
_VECTOR = struct.Struct("!BBBBI")
#: nb_missing, nb_not_used, first_source_id, PLR, SACK size, reserved.
_WU_BODY = struct.Struct("!IIIBBH")
_LENGTH = struct.Struct("!H")
#: The SACK size field is 8 bits (bytes).
MAX_SACK_BYTES = 255

__all__ = [
    "DecoderEvent",
    "DecoderStats",
    "SymbolDelivered",
    "SymbolsLost",
    "TetrysDecoder",
]


@dataclass(frozen=True)
class SymbolDelivered:
    """A source symbol is known: ``recovered`` if it came from coded packets."""

    source_id: int
    data: bytes
    recovered: bool


@dataclass(frozen=True)
class SymbolsLost:
    """``count`` source symbols from ``first_source_id`` on left the window unrecovered."""

    first_source_id: int
    count: int


DecoderEvent = SymbolDelivered | SymbolsLost

_new_object = object.__new__
_mod = operator.mod
_sub = operator.sub


def _delivered(source_id: int, data: bytes, recovered: bool) -> SymbolDelivered:
    """``SymbolDelivered(source_id, data, recovered)`` at half the cost of the constructor.

    One event per symbol is the hot path's largest fixed cost: a frozen dataclass's generated
    ``__init__`` sets each field through ``object.__setattr__``. The class has no
    ``__post_init__`` or defaults, so filling the instance dict directly builds an equal object
    (``tests/sansio/tetrys/test_tetrys_codec.py::test_fast_event_equals_constructed``).
    """
    event: SymbolDelivered = _new_object(SymbolDelivered)
    event.__dict__.update(source_id=source_id, data=data, recovered=recovered)
    return event


@dataclass(frozen=True)
class DecoderStats:
    source_received: int
    coded_received: int
    duplicates: int
    recovered: int
    lost: int
    redundant_coded: int  # reduced to nothing: duplicate or linearly dependent
    unusable_coded: int  # referred to symbols that left the window
    useless_coded: int  # arrived when all its symbols were known (no arithmetic done)
    pending_rows: int
    missing: int
    updates_sent: int
    loss_rate: float


class _Row:
    __slots__ = ("coefs", "payload")

    def __init__(self, coefs: dict[int, int], payload: bytearray) -> None:
        self.coefs = coefs
        self.payload = payload


class TetrysDecoder:
    """Receiver half of a Tetrys session. See the module docstring."""

    # slots: every attribute load in the per-packet path is then a fixed-offset read
    __slots__ = (
        "_coded_flags",
        "_coded_received",
        "_deliver_next",
        "_duplicates",
        "_events",
        "_fast",
        "_fb_every",
        "_fb_interval",
        "_field",
        "_first_unknown",
        "_high",
        "_in_order",
        "_known",
        "_loss_rate",
        "_lost",
        "_low",
        "_max_events",
        "_max_window",
        "_missing",
        "_out",
        "_plr",
        "_plr_upto",
        "_recovered",
        "_recovered_ids",
        "_redundant",
        "_rows",
        "_since_wu",
        "_size",
        "_slot_runs",
        "_source_received",
        "_symbol_size",
        "_unusable",
        "_updates_sent",
        "_useless",
        "_variable",
        "_window",
        "_window_view",
        "_wu_due",
        "_wu_header",
        "_wu_interval",
        "_zeros",
        "config",
    )

    def __init__(self, config: TetrysConfig | None = None) -> None:
        self.config = config or TetrysConfig()
        c = self.config
        self._field = field_for_ccgi(c.ccgi)
        self._size = c.coded_symbol_size
        self._symbol_size = c.symbol_size
        self._max_window = w = c.max_window
        self._window = bytearray(w * self._size)
        self._window_view = memoryview(self._window)
        #: slot numbers twice over: the slots of any run of consecutive IDs are one slice
        self._slot_runs = bytes(range(w)) * 2
        self._zeros = memoryview(bytes(self._size))
        self._known: dict[int, bytes] = {}  # ID -> the data it delivers
        self._missing: set[int] = set()  # IDs in [low, high] not known
        self._rows: dict[int, _Row] = {}  # pivot -> row
        self._recovered_ids: set[int] = set()  # known IDs that came from coded packets
        self._low = c.first_source_id  # IDs below are out of the window
        self._high = c.first_source_id - 1  # highest ID seen in any packet
        self._deliver_next = c.first_source_id  # in-order delivery pointer
        self._first_unknown = c.first_source_id  # every ID in [low, this) is known
        self._fast = c.tsi is None
        self._in_order = c.in_order
        self._max_events = c.max_events
        self._variable = c.variable_length
        self._coded_flags = (c.ccgi << 4) | int(c.variable_length)
        self._fb_every = c.feedback_every
        self._fb_interval = c.feedback_interval
        self._events: collections.deque[DecoderEvent] = collections.deque()
        self._out: collections.deque[bytes] = collections.deque(maxlen=64)
        tsi = b"" if c.tsi is None else c.tsi.to_bytes(4, "big")
        self._wu_header = (
            bytes(
                [(VERSION << 4) | (2 if tsi else 0), 0, 1 + len(tsi) // 4, PacketType.WINDOW_UPDATE]
            )
            + tsi
        )
        # feedback
        self._wu_due: float | None = None
        self._since_wu = 0
        self._wu_interval = c.feedback_interval
        self._plr_upto = c.first_source_id - 1  # loss is measured up to here
        self._plr = 0
        self._loss_rate = 0.0
        # counters
        self._source_received = 0
        self._coded_received = 0
        self._duplicates = 0
        self._recovered = 0
        self._lost = 0
        self._redundant = 0
        self._unusable = 0
        self._useless = 0
        self._updates_sent = 0

    # ---- inputs ------------------------------------------------------------------------

    def receive_datagram(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed one datagram. Window updates (the reverse direction's) are parsed and ignored."""
        if len(data) >= 8 and self._fast:
            word, number = _HEAD.unpack_from(data)
            kind = word & _PLAIN_MASK
            if kind == _PLAIN_SOURCE:
                # a plain source packet (no CCI, TSI or extensions): no Packet object is built
                if len(self._events) >= self._max_events:
                    raise LocalProtocolError("event queue full: drain next_event() first")
                symbol = data[8:]
                if symbol.__class__ is not bytes:
                    symbol = bytes(symbol)
                sid = self._high + 1
                low = self._low
                if (
                    number == sid & ID_MASK
                    and (
                        len(symbol) <= self._symbol_size
                        if self._variable
                        else len(symbol) == self._size
                    )
                    and (
                        sid - low < self._max_window
                        or (low < self._first_unknown and low < self._deliver_next)
                    )
                ):
                    # the common case: the next ID. No row can hold it (rows hold only IDs up
                    # to the highest seen), so it only joins the window: slide the window by
                    # one if full (the symbol leaving is known and delivered), keep the
                    # symbol in its slot, and deliver it unless it waits behind a gap.
                    self._source_received += 1
                    self._high = sid
                    if sid - low >= self._max_window:
                        self._low = low + 1
                        self._known.pop(low, None)
                        if self._recovered_ids:
                            self._recovered_ids.discard(low)
                    if self._variable:
                        self._store(sid, symbol)
                    else:
                        off = sid % self._max_window * self._size
                        self._window_view[off : off + self._size] = symbol
                    self._known[sid] = symbol
                    if sid == self._first_unknown:  # nothing is missing
                        self._first_unknown = sid + 1
                    if not self._in_order or sid == self._deliver_next:
                        # in order: nothing is held back. _delivered(), inlined
                        self._deliver_next = sid + 1
                        event = _new_object(SymbolDelivered)
                        event.__dict__.update(source_id=number, data=symbol, recovered=False)
                        self._events.append(event)
                else:
                    self._on_source(number, symbol)
                # _after_packet, inlined: this runs once per source packet
                self._since_wu += 1
                if self._since_wu >= self._fb_every:
                    self._wu_due = now
                elif self._wu_due is None:
                    self._wu_due = now + self._fb_interval
                return
            if kind == _PLAIN_CODED and 16 <= len(data) <= MAX_PACKET:
                ev_len, flags, nb_ids, nb_coefs, first = _VECTOR.unpack_from(data, 8)
                if flags & _GENERATED_MASK == 0 and ev_len >= 2 and nb_ids and not nb_coefs:
                    # a plain coded packet with generated coefficients (C = 0, CCGI 0 or 1):
                    # parsed here without building Packet objects; anything else (explicit
                    # coefficients, malformed fixed fields) takes the full parser below
                    if len(self._events) >= self._max_events:
                        raise LocalProtocolError("event queue full: drain next_event() first")
                    if ev_len == 2 and flags & 0b1100 == 0:
                        # the common one: I = 0, the IDs are FIRST_SOURCE_ID and the next ones
                        self._on_plain_coded(number, flags, nb_ids, first, data[16:])
                    else:
                        end = 8 + 4 * ev_len
                        if end > len(data):
                            raise TruncatedInput("encoding vector longer than the packet")
                        ids, _ = vector_source_ids(
                            _ID_FORMATS[(flags >> 2) & 0b11],
                            first,
                            nb_ids,
                            memoryview(data)[16:end],
                        )
                        self._on_coded(number, flags >> 4, bool(flags & 1), ids, None, data[end:])
                    self._after_packet(now)
                    return
        packet = parse_packet(data)
        if isinstance(packet, WindowUpdate):
            self._check_tsi(packet.header)
            return
        self.receive_packet(packet, now)

    def receive_packet(self, packet: SourcePacket | CodedPacket, now: float) -> None:
        if len(self._events) >= self._max_events:
            raise LocalProtocolError("event queue full: drain next_event() first")
        self._check_tsi(packet.header)
        if isinstance(packet, SourcePacket):
            self._on_source(packet.source_id, packet.symbol)
        else:
            ev = packet.vector
            self._on_coded(
                packet.coded_id,
                ev.ccgi,
                ev.variable_length,
                ev.source_ids,
                ev.coefficients,
                packet.symbol,
            )
        self._after_packet(now)

    def _after_packet(self, now: float) -> None:
        self._since_wu += 1
        if self._since_wu >= self._fb_every:
            self._wu_due = now
        elif self._wu_due is None:
            self._wu_due = now + self._fb_interval

    # ---- outputs -----------------------------------------------------------------------

    def next_event(self) -> DecoderEvent | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self._wu_due is not None and now >= self._wu_due:
            self._out.append(self._encode_update(*self._feedback(now)))
        out = list(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        return self._wu_due

    def handle_timer(self, now: float) -> None:
        if self._wu_due is not None and now >= self._wu_due:
            self._out.append(self._encode_update(*self._feedback(now)))

    def window_update(self, now: float) -> WindowUpdate:
        """Build a window update now and restart the feedback clock."""
        missing, not_used, first, plr, sack = self._feedback(now)
        return WindowUpdate(
            nb_missing=missing,
            nb_not_used=not_used,
            first_source_id=first,
            plr=plr,
            sack=sack,
            header=CommonHeader(PacketType.WINDOW_UPDATE, tsi=self.config.tsi),
        )

    def _encode_update(
        self, missing: int, not_used: int, first: int, plr: int, sack: bytes
    ) -> bytes:
        # the layout encode_packet writes for a WindowUpdate (docs/wire/tetrys.md), directly
        body = _WU_BODY.pack(missing, not_used, first, plr, len(sack), 0)
        return self._wu_header + body + sack + bytes(-len(sack) % 4)

    def _feedback(self, now: float) -> tuple[int, int, int, int, bytes]:
        """Window-update fields (missing, not used, first ID, PLR, SACK); restarts the clock."""
        first = self._first_unknown
        high = min(self._high, first + 8 * MAX_SACK_BYTES - 1)
        settled = self._high - self.config.reorder_tolerance  # newer IDs may just be late
        missing_ids = self._missing
        # every ID of [first, high] is known except the missing ones: set all, clear those
        span = high - first + 1
        if span > 0:
            bits = (1 << span) - 1
            for sid in missing_ids:
                if sid <= high:
                    bits &= ~(1 << (high - sid))
            nbytes = (span + 7) // 8
            sack = (bits << (8 * nbytes - span)).to_bytes(nbytes, "big")
        else:
            sack = b""
        missing = sum(1 for sid in missing_ids if sid <= settled)
        # loss: settled IDs since the last update that did not arrive as source packets
        # (recovered ones count as lost: the channel dropped them)
        lo = max(self._plr_upto + 1, self._low)
        expected = settled - lo + 1
        if expected > 0:
            lost = sum(1 for sid in missing_ids if lo <= sid <= settled)
            lost += sum(1 for sid in self._recovered_ids if lo <= sid <= settled)
            self._loss_rate = 1.0 - (expected - lost) / expected
            self._plr = round(self._loss_rate * 255)
        if settled > self._plr_upto:
            self._plr_upto = settled
        if self._recovered_ids:
            # an ID's "recovered" mark matters until it is delivered and its loss counted
            cutoff = min(self._plr_upto + 1, self._deliver_next)
            self._recovered_ids = {sid for sid in self._recovered_ids if sid >= cutoff}
        # the back-off restarts whenever a packet arrived since the previous update
        interval = self._fb_interval if self._since_wu else self._wu_interval
        self._since_wu = 0
        self._updates_sent += 1
        if first <= self._high:
            # keep asking while symbols are missing, backing off if nothing arrives
            self._wu_due = now + interval
            self._wu_interval = min(2 * interval, self.config.feedback_max_interval)
        else:
            self._wu_due = None
        return missing, len(self._rows), first & ID_MASK, self._plr, sack

    @property
    def stats(self) -> DecoderStats:
        return DecoderStats(
            source_received=self._source_received,
            coded_received=self._coded_received,
            duplicates=self._duplicates,
            recovered=self._recovered,
            lost=self._lost,
            redundant_coded=self._redundant,
            unusable_coded=self._unusable,
            useless_coded=self._useless,
            pending_rows=len(self._rows),
            missing=self.missing_count,
            updates_sent=self._updates_sent,
            loss_rate=self._loss_rate,
        )

    @property
    def missing_count(self) -> int:
        return len(self._missing)

    # ---- packet handling ---------------------------------------------------------------

    def _check_tsi(self, header: CommonHeader) -> None:
        if header.tsi != self.config.tsi:
            raise MalformedInput(f"TSI {header.tsi} does not belong to this session")

    def _unwrap(self, wire: int) -> int:
        ref = self._high
        delta = (wire - ref) & ID_MASK
        if delta >= 1 << 31:
            delta -= 1 << 32
        return ref + delta

    def _store(self, sid: int, symbol: bytes) -> None:
        """Copy a source symbol into its window slot, padded as a coded symbol."""
        off = (sid % self._max_window) * self._size
        view = self._window_view
        n = len(symbol)
        if self._variable:
            _LENGTH.pack_into(self._window, off, n)
            off += LENGTH_PREFIX
            view[off : off + n] = symbol
            pad = self._symbol_size - n
            if pad:
                view[off + n : off + n + pad] = self._zeros[:pad]
        else:
            view[off : off + n] = symbol

    def _slot(self, sid: int) -> memoryview:
        off = (sid % self._max_window) * self._size
        return self._window_view[off : off + self._size]

    def _on_source(self, wire_id: int, symbol: bytes) -> None:
        n = len(symbol)
        if (n > self._symbol_size) if self._variable else (n != self._size):
            raise MalformedInput(
                f"source symbol of {n} bytes in a {self._symbol_size}-byte session"
            )
        sid = self._unwrap(wire_id)
        # validated: from here on the packet is accepted
        self._source_received += 1
        if sid < self._low or sid in self._known:
            self._duplicates += 1
            # recovered before it arrived (it was late, not lost): the channel delivered it
            self._recovered_ids.discard(sid)
            return
        if sid > self._high:
            self._advance(sid)
        self._store(sid, symbol)
        self._learn(sid, symbol, recovered=False)

    def _check_coded(self, ccgi: int, variable: bool, n: int) -> None:
        c = self.config
        if ccgi != c.ccgi:
            raise MalformedInput(f"CCGI {ccgi} in a CCGI {c.ccgi} session")
        if variable != c.variable_length:
            raise MalformedInput("V flag does not match the session")
        if n != self._size:
            raise MalformedInput(f"coded symbol of {n} bytes, need {self._size}")

    def _on_plain_coded(
        self,
        coded_id: int,
        flags: int,
        nb_ids: int,
        wire0: int,
        symbol: bytes | bytearray | memoryview,
    ) -> None:
        """A coded packet over ``nb_ids`` consecutive IDs from ``wire0``, generated coefficients."""
        if flags != self._coded_flags or len(symbol) != self._size:
            self._check_coded(flags >> 4, bool(flags & 1), len(symbol))  # raises
        if nb_ids > self._max_window:
            raise OversizedInput(f"combination spans {nb_ids} source IDs")
        first = self._unwrap(wire0)
        last = first + nb_ids - 1
        # validated: from here on the packet is accepted
        self._coded_received += 1
        if last > self._high:
            self._advance(last)
        if last < self._first_unknown:
            self._useless += 1  # nothing to learn: no arithmetic at all
            return
        unknown = [sid for sid in self._missing if first <= sid <= last]
        if not unknown:
            self._useless += 1
            return
        if first < self._low:
            self._unusable += 1  # holds a symbol we gave up on (generated ones are never 0)
            return
        if wire0 + nb_ids - 1 <= ID_MASK:
            coefs = generated_row(self._field, wire0, coded_id, nb_ids)
        else:  # residues restart at the 2^32 wrap
            ids = [(wire0 + k) & ID_MASK for k in range(nb_ids)]
            coefs = bytes(generated_coefficients(self._field, ids, coded_id))
        known_coefs = bytearray(coefs)
        row: dict[int, int] = {}
        for sid in unknown:
            row[sid] = coefs[sid - first]
            known_coefs[sid - first] = 0
        start = first % self._max_window
        self._combine(row, self._slot_runs[start : start + nb_ids], bytes(known_coefs), symbol)

    def _on_coded(
        self,
        coded_id: int,
        ccgi: int,
        variable: bool,
        wire_ids: Sequence[int],
        coefficients: Sequence[int] | None,
        symbol: bytes | bytearray | memoryview,
    ) -> None:
        """Any coded packet: the general parser's, or one with generated coefficients.

        The per-ID work (unwrapping, coefficients, slot numbers) runs in C-level ``map``s and
        set operations; Python loops only over the few IDs still missing.
        """
        self._check_coded(ccgi, variable, len(symbol))
        count = len(wire_ids)
        coefs: bytes | None = None
        if coefficients is not None:
            # a hand-built CodedPacket may hold anything: refuse it before any state changes
            try:
                coefs = bytes(coefficients)
            except (TypeError, ValueError):
                coefs = None
            if coefs is None or len(coefs) != count or max(coefs) >= self._field.order:
                raise LocalProtocolError("coefficients do not fit the IDs or the field")
        wire0 = wire_ids[0]
        span = (wire_ids[-1] - wire0) & ID_MASK
        if span >= self._max_window:
            raise OversizedInput(f"combination spans {span + 1} source IDs")
        first = self._unwrap(wire0)
        last = first + span
        # validated: from here on the packet is accepted
        self._coded_received += 1
        if last > self._high:
            self._advance(last)
        wraps = wire0 + span > ID_MASK  # the vector crosses the 2^32 wrap
        ids: Sequence[int]
        if wraps:
            ids = [first + ((w - wire0) & ID_MASK) for w in wire_ids]
        elif first == wire0:  # the first 2^32 IDs of a session: wire IDs are the IDs
            ids = wire_ids
        else:
            ids = list(map((first - wire0).__add__, wire_ids))
        unknown = self._missing.intersection(ids)
        if last < self._first_unknown or not unknown:
            self._useless += 1  # nothing to learn: no arithmetic at all
            return
        if coefs is None:
            if wraps:  # residues restart at the wrap
                coefs = bytes(generated_coefficients(self._field, wire_ids, coded_id))
            else:
                run = generated_row(self._field, wire0, coded_id, span + 1)
                contiguous = count == span + 1
                coefs = (
                    run
                    if contiguous
                    else bytes(map(run.__getitem__, map(_sub, ids, repeat(first))))
                )
        low = self._low
        if first < low:
            for sid, coef in zip(ids, coefs, strict=True):
                if sid >= low:
                    break
                if coef:
                    self._unusable += 1  # holds a symbol we gave up on: cannot be used
                    return
        known_coefs = bytearray(coefs)
        row: dict[int, int] = {}
        for sid in unknown:
            k = ids.index(sid)
            if coefs[k]:
                row[sid] = coefs[k]
                known_coefs[k] = 0
        if not row:
            self._useless += 1
            return
        # IDs below the window have coefficient 0 here, so their (reused) slots are skipped
        slots = bytes(map(_mod, ids, repeat(self._max_window)))
        self._combine(row, slots, bytes(known_coefs), symbol)

    def _combine(
        self,
        row: dict[int, int],
        slots: bytes,
        known_coefs: bytes,
        symbol: bytes | bytearray | memoryview,
    ) -> None:
        """Subtract the known symbols (one kernel call), then reduce and keep the row."""
        payload = bytearray(symbol)
        self._field.mul_add_window(payload, self._window, self._size, slots, known_coefs)
        if self._insert(_Row(row, payload)):
            self._solve()
        else:
            self._redundant += 1

    # ---- elimination -------------------------------------------------------------------

    def _insert(self, row: _Row) -> bool:
        """Reduce ``row`` against the pivots; keep it as a new pivot row unless it vanished."""
        field = self._field
        rows = self._rows
        coefs = row.coefs
        while coefs:
            pivot = min(coefs)
            other = rows.get(pivot)
            if other is None:
                c = coefs[pivot]
                if c != 1:
                    inv = field.inv(c)
                    scale = field.mul_tables[inv]
                    for sid in coefs:
                        coefs[sid] = scale[coefs[sid]]
                    field.mul(row.payload, inv)
                rows[pivot] = row
                return True
            factor = coefs[pivot]
            scale = field.mul_tables[factor]
            for sid, oc in other.coefs.items():
                value = coefs.get(sid, 0) ^ scale[oc]
                if value:
                    coefs[sid] = value
                else:
                    coefs.pop(sid, None)
            field.mul_add(row.payload, other.payload, factor)
        return False

    def _solve(self) -> None:
        """Deliver every row left with a single unknown (its pivot), in a cascade."""
        while True:
            solved = [p for p, r in self._rows.items() if len(r.coefs) == 1]
            if not solved:
                return
            for pivot in solved:
                row = self._rows.pop(pivot, None)
                if row is not None and len(row.coefs) == 1:
                    payload = row.payload
                    self._slot(pivot)[:] = payload
                    if self._variable:
                        n = min(_LENGTH.unpack_from(payload)[0], self._symbol_size)
                        data = bytes(payload[LENGTH_PREFIX : LENGTH_PREFIX + n])
                    else:
                        data = bytes(payload)
                    self._learn(pivot, data, recovered=True)

    def _learn(self, sid: int, data: bytes, *, recovered: bool) -> None:
        """``sid`` (already in its slot) is known: record, deliver, eliminate it from rows."""
        self._known[sid] = data
        missing = self._missing
        missing.discard(sid)
        if sid == self._first_unknown:
            self._first_unknown = min(missing) if missing else self._high + 1
        if recovered:
            self._recovered += 1
            self._recovered_ids.add(sid)
        if not self._in_order:
            self._emit(sid, data)
        elif sid == self._deliver_next:
            self._flush_in_order()
        if not self._rows:
            return
        field = self._field
        symbol = self._slot(sid)
        reinsert: list[_Row] = []
        for pivot, row in list(self._rows.items()):
            coef = row.coefs.pop(sid, None)
            if coef is None:
                continue
            field.mul_add(row.payload, symbol, coef)
            if pivot == sid:
                del self._rows[pivot]
                reinsert.append(row)
        for row in reinsert:
            if not self._insert(row):
                self._redundant += 1
        self._solve()

    # ---- window and delivery -----------------------------------------------------------

    def _advance(self, sid: int) -> None:
        """``sid`` (above the window's top) was seen: every ID up to it joins the window as
        missing, and the window's bottom slides past the bound."""
        old_high, self._high = self._high, sid
        new_low = sid - self._max_window + 1
        low = self._low
        missing = self._missing
        if new_low <= low:
            missing.update(range(old_high + 1, sid + 1))
            return
        if new_low == low + 1 and low < self._first_unknown and low < self._deliver_next:
            # the common step: one known, delivered symbol leaves; no row can hold it
            self._low = new_low
            self._known.pop(low, None)
            self._recovered_ids.discard(low)
            missing.update(range(old_high + 1, sid + 1))
            return
        self._low = new_low
        in_order = self._in_order
        known = self._known
        # IDs in [low, new_low) leave the window. In order, the known ones held back behind
        # a gap are delivered now; either way each run of missing ones is reported lost.
        scan_end = min(new_low, old_high + 1)  # nothing above old_high can be known
        run: int | None = None
        for s in range(self._deliver_next if in_order else low, scan_end):
            data = known.get(s)
            if data is not None:
                if run is not None:
                    self._report_lost(run, s - run)
                    run = None
                if in_order:
                    self._emit(s, data)
            elif run is None:
                run = s
        if run is None and scan_end < new_low:
            run = scan_end
        if run is not None:
            self._report_lost(run, new_low - run)
        for s in range(low, scan_end):
            known.pop(s, None)
            self._recovered_ids.discard(s)
        if missing:
            self._missing = missing = {s for s in missing if s >= new_low}
        missing.update(range(max(old_high + 1, new_low), sid + 1))
        if self._rows:
            for pivot in [p for p in self._rows if p < new_low]:
                del self._rows[pivot]
        if self._deliver_next < new_low:
            self._deliver_next = new_low
        self._first_unknown = min(missing) if missing else sid + 1
        if in_order:
            self._flush_in_order()

    def _report_lost(self, first: int, count: int) -> None:
        if count > 0:
            self._lost += count
            self._events.append(SymbolsLost(first & ID_MASK, count))

    def _flush_in_order(self) -> None:
        sid = self._deliver_next
        known = self._known
        append = self._events.append
        recovered = self._recovered_ids
        while (data := known.get(sid)) is not None:
            append(_delivered(sid & ID_MASK, data, sid in recovered))
            sid += 1
        self._deliver_next = sid

    def _emit(self, sid: int, data: bytes) -> None:
        self._events.append(_delivered(sid & ID_MASK, data, sid in self._recovered_ids))
