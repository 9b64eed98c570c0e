"""Tetrys as a link layer: cells in, Tetrys datagrams out, and back (RFC 9407 over a DataChannel).

:class:`TetrysLink` is one end of a bidirectional Tetrys session over an unordered, unreliable
transport (zmesh uses a WebRTC DataChannel with ``ordered=false, maxRetransmits=0``). It owns
an encoder for what this end sends and a decoder for what the peer sends; the peer's window
updates go to the encoder, its source and coded packets to the decoder, and this end's window
updates go out with its own data.

Cells may be of any length up to ``symbol_size``: the session runs with variable-length symbols
(V = 1), so a source packet carries the cell as it is and coded symbols carry a 16-bit length in
front of the zero-padded cell (see ``docs/wire/tetrys.md``). zmesh cells are all 1024 bytes, but
nothing here depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from zmesh.sansio.tetrys.config import TetrysConfig
from zmesh.sansio.tetrys.decoder import SymbolDelivered, SymbolsLost, TetrysDecoder
from zmesh.sansio.tetrys.encoder import TetrysEncoder
from zmesh.sansio.tetrys.packets import PacketType, WindowUpdate, parse_packet
from zmesh.sansio.wire import (
    DEFAULT_RANDOM,
    LocalProtocolError,
    MalformedInput,
    RandomSource,
    RemoteProtocolError,
)

__all__ = ["CellReceived", "CellsLost", "LinkEvent", "TetrysLink", "TetrysLinkStats"]

#: zmesh's fixed cell size (DESIGN.md §4: one cell size on every link).
CELL_SIZE = 1024


@dataclass(frozen=True)
class CellReceived:
    cell: bytes
    recovered: bool = False  # rebuilt from coded packets rather than received as sent


@dataclass(frozen=True)
class CellsLost:
    """``count`` cells the peer sent could not be recovered before leaving the window."""

    count: int


LinkEvent = CellReceived | CellsLost


@dataclass(frozen=True)
class TetrysLinkStats:
    loss_ema: float  # the loss the peer reports about our direction, smoothed
    repair_ratio: float  # coded packets per cell we send right now
    idle: bool  # True while no proactive repair is sent (low-CPU mode)
    recovered: int  # cells from the peer rebuilt from coded packets
    lost: int  # cells from the peer given up
    cells_sent: int
    coded_sent: int
    cells_received: int
    receive_loss: float  # loss this end measured on the peer's packets (last report)
    malformed: int  # datagrams dropped as malformed


class TetrysLink:
    """One end of a Tetrys-protected link. The sans-IO surface of DESIGN.md §3."""

    def __init__(
        self, config: TetrysConfig | None = None, *, random: RandomSource = DEFAULT_RANDOM
    ) -> None:
        base = config or TetrysConfig(symbol_size=CELL_SIZE)
        if not base.variable_length:
            base = replace(base, variable_length=True)
        self.config = base
        self.encoder = TetrysEncoder(base, random=random)
        self.decoder = TetrysDecoder(base)
        self._cells_received = 0
        self._malformed = 0

    # ---- commands ----------------------------------------------------------------------

    def send_cell(self, cell: bytes | bytearray | memoryview, now: float) -> None:
        """Queue ``cell`` (at most ``symbol_size`` bytes) for the peer."""
        if len(cell) > self.config.symbol_size:
            raise LocalProtocolError(f"cell of {len(cell)} bytes > {self.config.symbol_size}")
        self.encoder.send_source(cell, now)

    def receive_datagram(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed one datagram from the peer. Raises ``ProtocolError`` if it is malformed."""
        try:
            if len(data) >= 4 and data[3] == PacketType.WINDOW_UPDATE:  # byte 3 is PKT_TYPE
                packet = parse_packet(data)
                if not isinstance(packet, WindowUpdate):  # pragma: no cover - byte 3 said so
                    raise MalformedInput("not a window update")
                if packet.header.tsi != self.config.tsi:
                    raise MalformedInput("window update for another session")
                self.encoder.receive_window_update(packet, now)
            else:
                self.decoder.receive_datagram(data, now)
        except RemoteProtocolError:
            self._malformed += 1
            raise

    # ---- outputs -----------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        return self.encoder.datagrams_to_send(now) + self.decoder.datagrams_to_send(now)

    def next_event(self) -> LinkEvent | None:
        event = self.decoder.next_event()
        if isinstance(event, SymbolDelivered):
            self._cells_received += 1
            return CellReceived(event.data, event.recovered)
        if isinstance(event, SymbolsLost):
            return CellsLost(event.count)
        return None

    def get_timer(self) -> float | None:
        timers = [t for t in (self.encoder.get_timer(), self.decoder.get_timer()) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        self.encoder.handle_timer(now)
        self.decoder.handle_timer(now)

    @property
    def stats(self) -> TetrysLinkStats:
        e = self.encoder.stats
        d = self.decoder.stats
        return TetrysLinkStats(
            loss_ema=e.loss_ema,
            repair_ratio=e.repair_ratio,
            idle=e.idle,
            recovered=d.recovered,
            lost=d.lost,
            cells_sent=e.source_sent,
            coded_sent=e.coded_sent,
            cells_received=self._cells_received,
            receive_loss=d.loss_rate,
            malformed=self._malformed,
        )
