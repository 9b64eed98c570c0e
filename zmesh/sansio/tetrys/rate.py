"""Adaptive repair ratio: the loss EMA that decides how many coded packets Tetrys sends.

RFC 9407 leaves the code rate to the sender and asks that it follow the measured loss (its
§4 discussion of adaptive FEC); this module is zmesh's controller, described with a plot in
``docs/tetrys-design.md``:

1. Each window update carries the receiver's packet loss ratio over the source packets it saw
   since its previous update (PLR, 8 bits). The sender knows how many source packets ``n`` it
   sent between two updates, so it folds the report into a per-packet exponential average:
   ``ema += (1 - (1 - beta)^n) * (plr - ema)``. A report covering many packets weighs more
   than one covering few, and the memory is about ``1/beta`` packets whatever the feedback
   pace.
2. The repair ratio (coded packets per source packet) is the ratio that replaces the expected
   losses even though coded packets are lost too, ``p / (1 - p)``, times a safety ``gain``
   plus a ``margin``, clamped to ``[0, max_ratio]``.
3. Below ``idle_below`` the controller goes idle: no proactive repair at all, so a clean link
   costs no GF arithmetic (the low-CPU mode). It wakes up again above ``wake_above``
   (hysteresis, so a single loss does not make it flap). Feedback-driven repairs continue
   while idle, so sporadic losses are still recovered, one feedback round trip later.

Everything is a pure function of the reports: no clock, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

from zmesh.sansio.wire import LocalProtocolError

__all__ = ["RateConfig", "RateController"]


@dataclass(frozen=True)
class RateConfig:
    beta: float = 0.02  # per-packet EMA weight: ~50 packets of memory
    idle_below: float = 0.002
    wake_above: float = 0.005
    gain: float = 1.5
    margin: float = 0.02
    max_ratio: float = 1.0
    initial_loss: float = 0.0
    #: a fixed ratio instead of the adaptive one (benchmarks and tests), None = adaptive
    fixed_ratio: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.beta <= 1:
            raise LocalProtocolError("beta must be in (0, 1]")
        if not 0 <= self.idle_below <= self.wake_above <= 1:
            raise LocalProtocolError("need 0 <= idle_below <= wake_above <= 1")
        if self.max_ratio < 0 or self.gain < 0 or self.margin < 0:
            raise LocalProtocolError("gain, margin and max_ratio are non-negative")
        if self.fixed_ratio is not None and self.fixed_ratio < 0:
            raise LocalProtocolError("fixed_ratio is non-negative")


class RateController:
    """Loss EMA -> repair ratio, with an idle (no proactive repair) mode."""

    __slots__ = ("_config", "_idle", "loss_ema", "reports")

    def __init__(self, config: RateConfig | None = None) -> None:
        self._config = config or RateConfig()
        self.loss_ema = self._config.initial_loss
        self._idle = self.loss_ema < self._config.wake_above
        self.reports = 0

    @property
    def idle(self) -> bool:
        if self._config.fixed_ratio is not None:
            return self._config.fixed_ratio == 0
        return self._idle

    @property
    def repair_ratio(self) -> float:
        """Coded packets to send per source packet right now."""
        c = self._config
        if c.fixed_ratio is not None:
            return c.fixed_ratio
        if self._idle:
            return 0.0
        p = min(self.loss_ema, 0.95)
        return min(c.max_ratio, c.gain * p / (1 - p) + c.margin)

    def on_report(self, loss: float, packets: int) -> None:
        """Fold in a receiver report of ``loss`` (0..1) that covers ``packets`` source packets."""
        if packets <= 0:
            return
        loss = min(1.0, max(0.0, loss))
        weight = 1.0 - (1.0 - self._config.beta) ** packets
        self.loss_ema += weight * (loss - self.loss_ema)
        self.reports += 1
        if self._idle and self.loss_ema > self._config.wake_above:
            self._idle = False
        elif not self._idle and self.loss_ema < self._config.idle_below:
            self._idle = True
