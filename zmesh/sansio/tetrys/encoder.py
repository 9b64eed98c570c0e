"""The Tetrys encoder (RFC 9407 §3, §4): systematic source packets over an elastic window.

Every source symbol is sent at once in a source packet and stays in the *elastic encoding
window* until a window update says the receiver knows it. A coded packet is a linear
combination, over the CCGI's field, of every symbol still in the window. Coded packets go out

- proactively, at the repair ratio the :class:`~.rate.RateController` derives from the loss
  the receiver reports (none at all while the link is clean: the low-CPU mode);
- reactively, when a window update reports more missing source symbols than the receiver
  holds unused coded symbols plus the coded packets sent within the last round trip;
- after a quiet period with unacknowledged symbols (tail protection, with back-off), so a
  lost last packet or a lost window update does not stall the window;
- on demand (:meth:`TetrysEncoder.send_repair`).

The window has a hard bound (``max_window`` source IDs): when a new symbol would exceed it, the
oldest symbol is evicted unacknowledged and counted. Its receiver gives up on it the same way.
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
    generator_ok,
)
from zmesh.sansio.tetrys.config import LENGTH_PREFIX, TetrysConfig
from zmesh.sansio.tetrys.packets import (
    ID_MASK,
    CodedPacket,
    CommonHeader,
    EncodingVector,
    IdFormat,
    PacketType,
    SourcePacket,
    WindowUpdate,
    choose_id_format,
    encode_packet,
    id_format_fits,
)
from zmesh.sansio.tetrys.rate import RateController
from zmesh.sansio.wire import (
    DEFAULT_RANDOM,
    LocalProtocolError,
    MalformedInput,
    RandomSource,
)

__all__ = ["EncoderStats", "TetrysEncoder"]

#: Tail-probe back-off doubles up to this many times (1 s with the default minimum).
MAX_TAIL_BACKOFF = 7
#: RTT smoothing of RFC 6298 §2.
RTT_GAIN = 0.125
_U32 = struct.Struct("!I")
_LENGTH = struct.Struct("!H")
#: Coded Symbol ID, EV_LEN, CCGI|I|C|V, NB_IDS, NB_COEFS, FIRST_SOURCE_ID.
_CODED_FIXED = struct.Struct("!IBBBBI")


@dataclass(frozen=True)
class EncoderStats:
    source_sent: int
    coded_sent: int
    proactive_sent: int
    reactive_sent: int
    tail_sent: int
    evicted: int
    window: int
    loss_ema: float
    repair_ratio: float
    idle: bool
    srtt: float
    updates_received: int


class TetrysEncoder:
    """Sender half of a Tetrys session. See the module docstring."""

    def __init__(
        self, config: TetrysConfig | None = None, *, random: RandomSource = DEFAULT_RANDOM
    ):
        self.config = config or TetrysConfig()
        self._field = field_for_ccgi(self.config.ccgi)
        self._random = random
        self._rate = RateController(self.config.rate)
        #: internal (unwrapped) source ID -> (when it was sent, its data). For coding, the
        #: symbols are copied into one preallocated buffer, ID s in slot s mod max_window (the
        #: window never spans more IDs than that), so a coded symbol is one GF kernel call over
        #: the buffer. The copy is made when a coded packet first needs the symbol (every ID
        #: up to _stored_upto that is in the window is in its slot): an idle link copies nothing.
        self._window: dict[int, tuple[float, bytes]] = {}
        self._stored_upto = self.config.first_source_id - 1
        self._size = self.config.coded_symbol_size
        self._max_window = self.config.max_window
        self._buffer = bytearray(self._max_window * self._size)
        self._buffer_view = memoryview(self._buffer)
        self._slot_runs = bytes(range(self._max_window)) * 2
        self._next_id = self.config.first_source_id
        self._next_coded_id = 0
        self._out: collections.deque[bytes] = collections.deque()
        self._credit = 0.0
        self._recent_reactive: collections.deque[float] = collections.deque(maxlen=1024)
        self._srtt = self.config.initial_rtt
        self._last_activity = 0.0
        self._tail_backoff = 0
        self._sent_since_report = 0
        self._coef_pool = b""
        # counters
        self._source_sent = 0
        self._proactive = 0
        self._reactive = 0
        self._tail = 0
        self._evicted = 0
        self._updates = 0
        self._coded_total = 0
        self._source_prefix: bytes | None = None
        if self.config.tsi is None:
            self._source_prefix = encode_packet(SourcePacket(0, b""))[:4]
        self._coded_prefix = (
            bytes([*self._source_prefix[:3], PacketType.CODED]) if (self._source_prefix) else b""
        )

    # ---- commands ----------------------------------------------------------------------

    def send_source(self, data: bytes | bytearray | memoryview, now: float) -> int:
        """Queue ``data`` as the next source symbol; returns its 32-bit Source Symbol ID."""
        c = self.config
        n = len(data)
        if c.variable_length:
            if n > c.symbol_size:
                raise LocalProtocolError(f"symbol of {n} bytes exceeds {c.symbol_size}")
        elif n != c.symbol_size:
            raise LocalProtocolError(f"symbol of {n} bytes, the session uses {c.symbol_size}")
        if len(self._out) >= c.max_output_queue:
            raise LocalProtocolError("output queue full: drain datagrams_to_send() first")
        data = bytes(data)
        internal = self._next_id
        self._next_id += 1
        oldest_allowed = self._next_id - c.max_window
        while self._window:
            oldest = next(iter(self._window))
            if oldest >= oldest_allowed:
                break
            del self._window[oldest]
            self._evicted += 1
        self._window[internal] = (now, data)
        wire = internal & ID_MASK
        if self._source_prefix is not None:
            # the common case (no CCI, TSI or extensions): the header is a constant
            self._out.append(self._source_prefix + _U32.pack(wire) + data)
        else:
            header = self._header(PacketType.SOURCE)
            self._out.append(encode_packet(SourcePacket(wire, data, header)))
        self._source_sent += 1
        self._sent_since_report += 1
        self._last_activity = now
        self._tail_backoff = 0
        self._credit = min(self._credit + self._rate.repair_ratio, 8.0)
        while self._credit >= 1.0:
            self._credit -= 1.0
            span = c.coding_span
            ids = list(self._window)
            if self._queue_coded(now, ids[-span:] if len(ids) > span else ids):
                self._proactive += 1
        return wire

    def send_repair(self, now: float, count: int = 1) -> int:
        """Queue up to ``count`` coded packets over the current window; returns how many."""
        sent = 0
        for _ in range(count):
            if len(self._out) >= self.config.max_output_queue:
                break
            if not self._queue_coded(now, list(self._window)):
                break
            sent += 1
        return sent

    def receive_window_update(self, update: WindowUpdate, now: float) -> None:
        """Apply receiver feedback: shrink the window, adapt the rate, repair what is missing."""
        # parse fully, then mutate
        newest = self._next_id - 1
        first = self._unwrap(update.first_source_id, newest)
        if first > self._next_id:
            raise MalformedInput("window update acknowledges source symbols never sent")
        acked = [first + off for off in update.acknowledged_offsets() if first + off <= newest]
        self._updates += 1
        sample_from: float | None = None
        for sid in [s for s in self._window if s < first]:
            sample_from = self._window.pop(sid)[0]
        for sid in acked:
            entry = self._window.pop(sid, None)
            if entry is not None:
                sample_from = entry[0]
        if sample_from is not None:
            # the newest symbol this update newly acknowledges: its age is one feedback RTT
            self._srtt += RTT_GAIN * ((now - sample_from) - self._srtt)
            self._tail_backoff = 0
        self._rate.on_report(update.plr / 255.0, self._sent_since_report)
        self._sent_since_report = 0
        if not self._window or update.nb_missing == 0:
            return
        # the symbols this update reports unknown: its SACK's zero bits still in the window
        covered = first + 8 * len(update.sack)
        known = set(acked)
        missing = [s for s in self._window if s < covered and s not in known]
        if not missing:
            return
        # repairs sent less than a round trip ago have not been seen by this update yet
        horizon = now - self._srtt
        in_flight = sum(1 for t in self._recent_reactive if t > horizon)
        deficit = update.nb_missing - update.nb_not_used - in_flight
        for _ in range(min(deficit, len(missing), self.config.max_reactive_repairs)):
            if len(self._out) >= self.config.max_output_queue:
                break
            if self._queue_coded(now, missing):
                self._reactive += 1
                self._recent_reactive.append(now)

    # ---- sans-IO outputs ---------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out = list(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        if not self._window:
            return None
        return self._last_activity + self._tail_delay() * (1 << self._tail_backoff)

    def handle_timer(self, now: float) -> None:
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        if len(self._out) < self.config.max_output_queue and self._queue_coded(
            now, list(self._window)
        ):
            self._tail += 1
        self._last_activity = now
        self._tail_backoff = min(self._tail_backoff + 1, MAX_TAIL_BACKOFF)

    @property
    def stats(self) -> EncoderStats:
        return EncoderStats(
            source_sent=self._source_sent,
            coded_sent=self._coded_total,
            proactive_sent=self._proactive,
            reactive_sent=self._reactive,
            tail_sent=self._tail,
            evicted=self._evicted,
            window=len(self._window),
            loss_ema=self._rate.loss_ema,
            repair_ratio=self._rate.repair_ratio,
            idle=self._rate.idle,
            srtt=self._srtt,
            updates_received=self._updates,
        )

    @property
    def window_ids(self) -> list[int]:
        """Wire IDs of the symbols still in the elastic window, oldest first."""
        return [sid & ID_MASK for sid in self._window]

    # ---- internals ---------------------------------------------------------------------

    def _header(self, packet_type: PacketType) -> CommonHeader:
        return CommonHeader(packet_type, tsi=self.config.tsi)

    def _tail_delay(self) -> float:
        fb = self.config.feedback_interval
        return max(self.config.min_tail_delay, 1.5 * self._srtt + fb)

    @staticmethod
    def _unwrap(wire: int, reference: int) -> int:
        delta = (wire - reference) & ID_MASK
        if delta >= 1 << 31:
            delta -= 1 << 32
        return reference + delta

    def _explicit_coefficients(self, count: int) -> list[int]:
        order = self._field.order
        out: list[int] = []
        while len(out) < count:
            if not self._coef_pool:
                self._coef_pool = self._random(max(64, 2 * count))
            pool, self._coef_pool = self._coef_pool, b""
            for k, b in enumerate(pool):
                value = b % order if order == 256 else b & 0x0F
                if value:
                    out.append(value)
                    if len(out) == count:
                        self._coef_pool = pool[k + 1 :]
                        break
        return out

    def _store_window(self) -> None:
        """Copy the window's symbols not yet in the buffer into their slots (padded)."""
        window = self._window
        view = self._buffer_view
        size = self._size
        w = self._max_window
        variable = self.config.variable_length
        newest = self._next_id - 1
        for sid in range(max(self._stored_upto + 1, newest - w + 1), newest + 1):
            entry = window.get(sid)
            if entry is None:
                continue
            data = entry[1]
            off = (sid % w) * size
            n = len(data)
            if variable:
                _LENGTH.pack_into(view, off, n)
                view[off + LENGTH_PREFIX : off + LENGTH_PREFIX + n] = data
                view[off + LENGTH_PREFIX + n : off + size] = bytes(size - LENGTH_PREFIX - n)
            else:
                view[off : off + n] = data
        self._stored_upto = newest

    def _queue_coded(self, now: float, internal_ids: list[int]) -> bool:
        """Queue one coded packet combining ``internal_ids`` (window IDs, oldest first)."""
        if not internal_ids:
            return False
        c = self.config
        wire_ids = [i & ID_MASK for i in internal_ids]
        # consecutive coded IDs: any n consecutive generated rows solve any n unknowns
        coded_id = self._next_coded_id
        explicit = c.explicit_coefficients
        if explicit is None:
            n = len(wire_ids)
            if internal_ids[-1] - internal_ids[0] + 1 == n and wire_ids[0] + n - 1 <= ID_MASK:
                # consecutive IDs that do not wrap have distinct residues iff n <= 2^m - 1
                explicit = n > self._field.cycle
            else:
                explicit = not generator_ok(self._field, wire_ids)
        self._next_coded_id = (coded_id + 1) & ID_MASK
        contiguous = internal_ids[-1] - internal_ids[0] + 1 == len(internal_ids)
        coefs: Sequence[int]
        if explicit:
            coefs = self._explicit_coefficients(len(wire_ids))
        elif contiguous and wire_ids[0] + len(wire_ids) - 1 <= ID_MASK:
            coefs = generated_row(self._field, wire_ids[0], coded_id, len(wire_ids))
        else:
            coefs = generated_coefficients(self._field, wire_ids, coded_id)
        if contiguous:
            start = internal_ids[0] % self._max_window
            slots = self._slot_runs[start : start + len(internal_ids)]
        else:
            slots = bytes(map(operator.mod, internal_ids, repeat(self._max_window)))
        if self._stored_upto < internal_ids[-1]:
            self._store_window()
        acc = bytearray(self._size)
        self._field.mul_add_window(acc, self._buffer, self._size, slots, bytes(coefs))
        fmt = c.id_format
        if fmt is None and contiguous:
            fmt = IdFormat.CONTIGUOUS
        elif fmt is None or not id_format_fits(fmt, wire_ids):
            fmt = choose_id_format(wire_ids)
            if fmt is None:  # cannot happen with max_window <= 255; keep the invariant loud
                raise LocalProtocolError("window cannot be described by any I format")
        if fmt is IdFormat.CONTIGUOUS and not explicit and self._source_prefix is not None:
            # the common shape, written directly: plain header, EV_LEN 2, I = 0, C = 0
            flags = (c.ccgi << 4) | int(c.variable_length)
            fixed = _CODED_FIXED.pack(coded_id, 2, flags, len(wire_ids), 0, wire_ids[0])
            self._out.append(self._coded_prefix + fixed + acc)
        else:
            vector = EncodingVector(
                c.ccgi, tuple(wire_ids), tuple(coefs) if explicit else None, c.variable_length, fmt
            )
            packet = CodedPacket(coded_id, vector, bytes(acc), self._header(PacketType.CODED))
            self._out.append(encode_packet(packet))
        self._coded_total += 1
        return True
