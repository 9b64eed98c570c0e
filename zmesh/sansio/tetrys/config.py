"""Parameters both Tetrys ends must agree on, and the local policy knobs of each end.

RFC 9407 leaves symbol size, field, window bound and feedback pace to the deployment (the
session parameters of its §4); zmesh fixes them per link in :class:`TetrysConfig`. The
``docs/tetrys-design.md`` file explains the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zmesh.sansio.tetrys.coefficients import CCGI_GF16, CCGI_GF256
from zmesh.sansio.tetrys.packets import MAX_IDS, IdFormat
from zmesh.sansio.tetrys.rate import RateConfig
from zmesh.sansio.wire import LocalProtocolError

__all__ = ["LENGTH_PREFIX", "TetrysConfig"]

#: Variable-length symbols carry their length in 16 bits in front of the data (RFC 9407's V
#: flag; zmesh's layout, see docs/wire/tetrys.md).
LENGTH_PREFIX = 2


@dataclass(frozen=True)
class TetrysConfig:
    # -- session parameters: both ends must use the same values --
    symbol_size: int = 1024
    ccgi: int = CCGI_GF256
    variable_length: bool = False
    #: hard bound on the elastic window, in source IDs (newest - oldest + 1); at most 255
    #: because NB_IDS / NB_COEFS are 8-bit and GF(2^8) Vandermonde rows repeat after 255 IDs
    max_window: int = 255
    first_source_id: int = 0
    tsi: int | None = None

    # -- encoder policy --
    #: None: generated (C = 0) coefficients where the coded ID gives distinct ones over the
    #: window, explicit otherwise; True / False force one way
    explicit_coefficients: bool | None = None
    #: None: the shortest I encoding; otherwise always this one (vectors and tests)
    id_format: IdFormat | None = None
    rate: RateConfig = field(default_factory=RateConfig)
    #: proactive coded packets combine at most the newest N window symbols; older ones are
    #: repaired by feedback-driven packets that combine exactly what the receiver misses
    coding_span: int = 64
    initial_rtt: float = 0.05
    min_tail_delay: float = 0.005
    #: most coded packets one window update may trigger
    max_reactive_repairs: int = 16
    max_output_queue: int = 4096

    # -- decoder policy --
    in_order: bool = True
    feedback_every: int = 16  # a window update at least every N received packets
    feedback_interval: float = 0.01  # ... and within this long of any received packet
    feedback_max_interval: float = 0.5  # back-off cap while symbols stay missing
    #: IDs this close to the highest one seen are not yet reported missing (reordering)
    reorder_tolerance: int = 3
    max_events: int = 4096

    def __post_init__(self) -> None:
        if self.ccgi not in (CCGI_GF16, CCGI_GF256):
            raise LocalProtocolError(f"unsupported CCGI {self.ccgi}")
        if not 1 <= self.symbol_size <= 65_000:
            raise LocalProtocolError("symbol_size must be 1..65000 bytes")
        if not 1 <= self.max_window <= MAX_IDS:
            raise LocalProtocolError(f"max_window must be 1..{MAX_IDS}")
        if not 0 <= self.first_source_id <= 0xFFFFFFFF:
            raise LocalProtocolError("first_source_id is a 32-bit ID")
        if self.tsi is not None and not 0 <= self.tsi <= 0xFFFFFFFF:
            raise LocalProtocolError("tsi is 32 bits")
        if self.feedback_every < 1 or self.feedback_interval <= 0:
            raise LocalProtocolError("feedback_every >= 1 and feedback_interval > 0")
        if self.coding_span < 1 or self.reorder_tolerance < 0:
            raise LocalProtocolError("coding_span >= 1 and reorder_tolerance >= 0")
        if self.max_output_queue < 16 or self.max_events < 16:
            raise LocalProtocolError("queue bounds must be at least 16")

    @property
    def coded_symbol_size(self) -> int:
        """Bytes of a coded symbol: the symbol plus, for variable-length, its length prefix."""
        return self.symbol_size + (LENGTH_PREFIX if self.variable_length else 0)
