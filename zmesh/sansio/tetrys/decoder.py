"""The Tetrys decoder (RFC 9407 §3, §4): on-the-fly Gaussian elimination and window updates.

State, all bounded by ``max_window`` source IDs:

- ``known``: every source symbol of the decoding window that was received or decoded;
- ``rows``: coded symbols not yet used up, in echelon form. Each row holds only still-unknown
  source IDs, its *pivot* is the lowest of them with coefficient 1, and no two rows share a
  pivot. A symbol is solved as soon as its row has no other unknown left.

A coded packet first has every known source symbol subtracted (one multi-source GF kernel
call), then is reduced against the rows by pivot; a row that reduces to nothing was a
duplicate or a dependent combination and is counted, not kept. Whenever a symbol becomes
known — received or solved — it is eliminated from every row that holds it, which may solve
more symbols in a cascade. Elimination works per *symbol* (one region operation on the whole
payload), never per byte in Python.

Coded packets that hold no unknown symbol cost no GF arithmetic at all, so a clean link with a
repairing sender costs the receiver only parsing.

Delivery is either in order (a symbol waits for all earlier ones; the ones the window slides
past unrecovered are reported lost) or as soon as possible. Window updates go out at least every
``feedback_every`` packets and within ``feedback_interval`` of any packet, and keep repeating
with back-off while symbols are missing, so a lost update costs one interval, not the session.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from zmesh.sansio.tetrys.coefficients import field_for_ccgi, generated_coefficients
from zmesh.sansio.tetrys.config import LENGTH_PREFIX, TetrysConfig
from zmesh.sansio.tetrys.packets import (
    ID_MASK,
    CodedPacket,
    CommonHeader,
    PacketType,
    SourcePacket,
    WindowUpdate,
    encode_packet,
    parse_packet,
)
from zmesh.sansio.wire import LocalProtocolError, MalformedInput, OversizedInput

#: V = 1, C = 0, S = 0 in the first byte's top seven bits.
_PLAIN_V1 = 0x10 >> 1
_U32 = struct.Struct("!I")
#: Coded Symbol ID, EV_LEN, flags, NB_IDS, NB_COEFS, FIRST_SOURCE_ID.
_PLAIN_CODED = struct.Struct("!IBBBBI")
_SOURCE = int(PacketType.SOURCE)
_CODED = int(PacketType.CODED)
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

    def __init__(self, config: TetrysConfig | None = None) -> None:
        self.config = config or TetrysConfig()
        c = self.config
        self._field = field_for_ccgi(c.ccgi)
        self._size = c.coded_symbol_size
        self._known: dict[int, bytes] = {}
        self._rows: dict[int, _Row] = {}  # pivot -> row
        self._recovered_ids: set[int] = set()  # known IDs that came from coded packets
        self._low = c.first_source_id  # IDs below are out of the window
        self._high = c.first_source_id - 1  # highest ID seen in any packet
        self._deliver_next = c.first_source_id  # in-order delivery pointer
        self._first_unknown = c.first_source_id  # every ID in [low, this) is known
        self._fast_source = c.tsi is None
        self._in_order = c.in_order
        self._max_events = c.max_events
        self._fb_every = c.feedback_every
        self._fb_interval = c.feedback_interval
        self._events: collections.deque[DecoderEvent] = collections.deque()
        self._out: collections.deque[bytes] = collections.deque(maxlen=64)
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
        if self._fast_source and len(data) >= 8 and data[0] >> 1 == _PLAIN_V1 and data[2] == 1:
            kind = data[3]
            if kind == _SOURCE:
                # a plain source packet (no CCI, TSI or extensions): skip building a Packet
                if len(self._events) >= self._max_events:
                    raise LocalProtocolError("event queue full: drain next_event() first")
                self._on_source(_U32.unpack_from(data, 4)[0], bytes(data[8:]))
                self._since_wu += 1
                self._wu_interval = self._fb_interval
                if self._since_wu >= self._fb_every:
                    self._wu_due = now
                elif self._wu_due is None:
                    self._wu_due = now + self._fb_interval
                return
        if (
            self._fast_source
            and len(data) >= 16
            and data[0] >> 1 == _PLAIN_V1
            and data[2] == 1
            and data[3] == _CODED
        ):
            coded_id, ev_len, flags, nb_ids, nb_coefs, first = _PLAIN_CODED.unpack_from(data, 4)
            if ev_len == 2 and flags & 0b1110 == 0 and nb_ids and not nb_coefs:
                # the common coded packet: I = 0 (contiguous IDs), C = 0, no ID or coefficient
                # fields; anything else takes the full parser below
                if len(self._events) >= self.config.max_events:
                    raise LocalProtocolError("event queue full: drain next_event() first")
                if first + nb_ids - 1 <= ID_MASK:
                    wire_ids: Sequence[int] = range(first, first + nb_ids)
                else:
                    wire_ids = [(first + k) & ID_MASK for k in range(nb_ids)]
                self._accept_coded(
                    coded_id, flags >> 4, bool(flags & 1), wire_ids, None, bytes(data[16:])
                )
                self._after_packet(now)
                return
        packet = parse_packet(data)
        if isinstance(packet, WindowUpdate):
            self._check_tsi(packet.header)
            return
        self.receive_packet(packet, now)

    def receive_packet(self, packet: SourcePacket | CodedPacket, now: float) -> None:
        if len(self._events) >= self.config.max_events:
            raise LocalProtocolError("event queue full: drain next_event() first")
        self._check_tsi(packet.header)
        if isinstance(packet, SourcePacket):
            self._on_source(packet.source_id, packet.symbol)
        else:
            self._on_coded(packet)
        self._after_packet(now)

    def _after_packet(self, now: float) -> None:
        self._since_wu += 1
        c = self.config
        self._wu_interval = c.feedback_interval
        if self._since_wu >= c.feedback_every:
            self._wu_due = now
        elif self._wu_due is None:
            self._wu_due = now + c.feedback_interval

    # ---- outputs -----------------------------------------------------------------------

    def next_event(self) -> DecoderEvent | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self._wu_due is not None and now >= self._wu_due:
            self._out.append(encode_packet(self.window_update(now)))
        out = list(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        return self._wu_due

    def handle_timer(self, now: float) -> None:
        if self._wu_due is not None and now >= self._wu_due:
            self._out.append(encode_packet(self.window_update(now)))

    def window_update(self, now: float) -> WindowUpdate:
        """Build a window update now and restart the feedback clock."""
        first = self._first_unknown
        high = min(self._high, first + 8 * MAX_SACK_BYTES - 1)
        settled = self._high - self.config.reorder_tolerance  # newer IDs may just be late
        missing = 0
        sack = bytearray((high - first + 1 + 7) // 8) if first <= high else bytearray()
        known = self._known
        for sid in range(first, high + 1):
            if sid in known:
                off = sid - first
                sack[off >> 3] |= 0x80 >> (off & 7)
            elif sid <= settled:
                missing += 1
        # loss: settled IDs since the last update that did not arrive as source packets
        # (recovered ones count as lost: the channel dropped them)
        expected = received = 0
        recovered = self._recovered_ids
        for sid in range(max(self._plr_upto + 1, self._low), settled + 1):
            expected += 1
            if sid in known and sid not in recovered:
                received += 1
        if settled > self._plr_upto:
            self._plr_upto = settled
        if expected:
            self._loss_rate = 1.0 - received / expected
            self._plr = round(self._loss_rate * 255)
        self._since_wu = 0
        self._updates_sent += 1
        if first <= self._high:
            # keep asking while symbols are missing, backing off if nothing arrives
            self._wu_due = now + self._wu_interval
            self._wu_interval = min(2 * self._wu_interval, self.config.feedback_max_interval)
        else:
            self._wu_due = None
        return WindowUpdate(
            nb_missing=missing,
            nb_not_used=len(self._rows),
            first_source_id=first & ID_MASK,
            plr=self._plr,
            sack=bytes(sack),
            header=CommonHeader(PacketType.WINDOW_UPDATE, tsi=self.config.tsi),
        )

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
        return sum(1 for s in range(self._low, self._high + 1) if s not in self._known)

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

    def _pad(self, data: bytes) -> bytes:
        c = self.config
        if c.variable_length:
            return (
                len(data).to_bytes(LENGTH_PREFIX, "big") + data + bytes(c.symbol_size - len(data))
            )
        return data

    def _on_source(self, wire_id: int, symbol: bytes) -> None:
        c = self.config
        n = len(symbol)
        if (n > c.symbol_size) if c.variable_length else (n != c.symbol_size):
            raise MalformedInput(f"source symbol of {n} bytes in a {c.symbol_size}-byte session")
        high = self._high
        delta = (wire_id - high) & ID_MASK
        sid = high + delta if delta < 1 << 31 else high + delta - (1 << 32)  # unwrap
        # validated: from here on the packet is accepted
        self._source_received += 1
        if sid < self._low or sid in self._known:
            self._duplicates += 1
            # recovered before it arrived (it was late, not lost): the channel delivered it
            self._recovered_ids.discard(sid)
            return
        if sid > high:
            self._advance(sid)
        if not self._rows and sid == self._first_unknown and sid + 1 not in self._known:
            # the common case: the next symbol in order, no coded row waiting for it
            self._known[sid] = self._pad(symbol)
            self._first_unknown = sid + 1
            if not self._in_order:
                self._events.append(SymbolDelivered(sid & ID_MASK, symbol, False))
            elif sid == self._deliver_next:
                self._deliver_next = sid + 1
                self._events.append(SymbolDelivered(sid & ID_MASK, symbol, False))
            return
        self._learn(sid, self._pad(symbol), recovered=False)

    def _on_coded(self, packet: CodedPacket) -> None:
        ev = packet.vector
        self._accept_coded(
            packet.coded_id,
            ev.ccgi,
            ev.variable_length,
            ev.source_ids,
            ev.coefficients,
            packet.symbol,
        )

    def _accept_coded(
        self,
        coded_id: int,
        ccgi: int,
        variable: bool,
        wire_ids: Sequence[int],
        coefficients: Sequence[int] | None,
        symbol: bytes,
    ) -> None:
        c = self.config
        if ccgi != c.ccgi:
            raise MalformedInput(f"CCGI {ccgi} in a CCGI {c.ccgi} session")
        if variable != c.variable_length:
            raise MalformedInput("V flag does not match the session")
        if len(symbol) != self._size:
            raise MalformedInput(f"coded symbol of {len(symbol)} bytes, need {self._size}")
        wire0 = wire_ids[0]
        first = self._unwrap(wire0)
        last = first + ((wire_ids[-1] - wire0) & ID_MASK)
        if last - first >= c.max_window:
            raise OversizedInput(f"combination spans {last - first + 1} source IDs")
        # validated: from here on the packet is accepted
        self._coded_received += 1
        self._advance(last)
        known = self._known
        if isinstance(wire_ids, range):
            ids: Sequence[int] = range(first, last + 1)
        else:
            ids = [first + ((w - wire0) & ID_MASK) for w in wire_ids]
        if last < self._first_unknown or all(sid in known for sid in ids):
            self._useless += 1  # nothing to learn: no arithmetic at all
            return
        if coefficients is None:
            coefficients = generated_coefficients(self._field, wire_ids, coded_id)
        low = self._low
        unknown: dict[int, int] = {}
        srcs: list[bytes] = []
        kcoefs: list[int] = []
        for sid, coef in zip(ids, coefficients, strict=True):
            if not coef:
                continue
            sym = known.get(sid)
            if sym is not None:
                srcs.append(sym)
                kcoefs.append(coef)
            elif sid < low:
                self._unusable += 1  # holds a symbol we gave up on: cannot be used
                return
            else:
                unknown[sid] = coef
        if not unknown:
            self._useless += 1
            return
        payload = bytearray(symbol)
        if srcs:
            self._field.mul_add_multi(payload, srcs, kcoefs)
        if self._insert(_Row(unknown, payload)):
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
                    for sid in coefs:
                        coefs[sid] = field.mul_scalar(coefs[sid], inv)
                    field.mul(row.payload, inv)
                rows[pivot] = row
                return True
            factor = coefs[pivot]
            for sid, oc in other.coefs.items():
                value = coefs.get(sid, 0) ^ field.mul_scalar(factor, oc)
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
                    self._learn(pivot, bytes(row.payload), recovered=True)

    def _learn(self, sid: int, symbol: bytes, *, recovered: bool) -> None:
        """``sid`` is known: record, deliver, and eliminate it from every row holding it."""
        self._known[sid] = symbol
        if sid == self._first_unknown:
            self._advance_first_unknown()
        if recovered:
            self._recovered += 1
            self._recovered_ids.add(sid)
        self._deliver(sid, symbol)
        if not self._rows:
            return
        field = self._field
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
        """``sid`` was seen: raise the window's top and slide its bottom past the bound."""
        if sid <= self._high:
            return
        old_high, self._high = self._high, sid
        new_low = sid - self.config.max_window + 1
        low = self._low
        if new_low <= low:
            return
        if new_low == low + 1 and low < self._first_unknown and low < self._deliver_next:
            # the common step: one known, delivered symbol leaves; no row can hold it
            self._low = new_low
            self._known.pop(low, None)
            self._recovered_ids.discard(low)
            return
        old_low, self._low = self._low, new_low
        in_order = self.config.in_order
        # IDs in [old_low, new_low) leave the window. In order, the known ones held back behind
        # a gap are delivered now; either way each run of missing ones is reported lost.
        scan_end = min(new_low, old_high + 1)  # nothing above old_high can be known
        run: int | None = None
        for s in range(self._deliver_next if in_order else old_low, scan_end):
            symbol = self._known.get(s)
            if symbol is not None:
                if run is not None:
                    self._report_lost(run, s - run)
                    run = None
                if in_order:
                    self._emit(s, symbol)
            elif run is None:
                run = s
        if run is None and scan_end < new_low:
            run = scan_end
        if run is not None:
            self._report_lost(run, new_low - run)
        for s in range(old_low, scan_end):
            self._known.pop(s, None)
            self._recovered_ids.discard(s)
        if self._rows:
            for pivot in [p for p, r in self._rows.items() if min(r.coefs) < new_low]:
                del self._rows[pivot]
        if self._deliver_next < new_low:
            self._deliver_next = new_low
        if self._first_unknown < new_low:
            self._first_unknown = new_low
            self._advance_first_unknown()
        if in_order:
            self._flush_in_order()

    def _advance_first_unknown(self) -> None:
        sid = self._first_unknown
        known = self._known
        while sid in known:
            sid += 1
        self._first_unknown = sid

    def _report_lost(self, first: int, count: int) -> None:
        if count > 0:
            self._lost += count
            self._events.append(SymbolsLost(first & ID_MASK, count))

    def _deliver(self, sid: int, symbol: bytes) -> None:
        if not self.config.in_order:
            self._emit(sid, symbol)
        elif sid == self._deliver_next:
            self._flush_in_order()

    def _flush_in_order(self) -> None:
        sid = self._deliver_next
        while (symbol := self._known.get(sid)) is not None:
            self._emit(sid, symbol)
            sid += 1
        self._deliver_next = sid

    def _emit(self, sid: int, symbol: bytes) -> None:
        if self.config.variable_length:
            n = min(int.from_bytes(symbol[:LENGTH_PREFIX], "big"), self.config.symbol_size)
            data = symbol[LENGTH_PREFIX : LENGTH_PREFIX + n]
        else:
            data = symbol
        recovered = sid in self._recovered_ids
        self._events.append(SymbolDelivered(sid & ID_MASK, data, recovered))
