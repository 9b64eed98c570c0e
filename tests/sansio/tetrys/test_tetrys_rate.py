"""The loss-EMA repair-ratio controller."""

from __future__ import annotations

import pytest

from zmesh.sansio.tetrys.rate import RateConfig, RateController
from zmesh.sansio.wire import LocalProtocolError


def test_clean_link_stays_idle() -> None:
    rc = RateController()
    for _ in range(50):
        rc.on_report(0.0, 16)
    assert rc.idle and rc.repair_ratio == 0.0


def test_reacts_within_a_few_updates_when_loss_appears() -> None:
    rc = RateController()
    updates = 0
    while rc.idle:
        rc.on_report(0.10, 16)
        updates += 1
    assert updates <= 2
    for _ in range(3):
        rc.on_report(0.10, 16)
    # after a handful of 16-packet updates the EMA is most of the way to 10 %
    assert 0.06 < rc.loss_ema < 0.10
    assert rc.repair_ratio > 0.09


def test_ratio_follows_loss_up_and_down() -> None:
    rc = RateController()
    ratios = []
    for loss in (0.05, 0.20, 0.30, 0.02):
        for _ in range(30):
            rc.on_report(loss, 16)
        ratios.append(rc.repair_ratio)
        assert rc.loss_ema == pytest.approx(loss, abs=0.01)
    assert ratios[0] < ratios[1] < ratios[2]
    assert ratios[3] < ratios[0]
    # enough repair to replace losses even though repairs are lost too: r(1 - p) >= p
    assert ratios[2] * (1 - 0.30) >= 0.30


def test_returns_to_idle_with_hysteresis() -> None:
    rc = RateController(RateConfig(idle_below=0.002, wake_above=0.005))
    for _ in range(10):
        rc.on_report(0.05, 16)
    assert not rc.idle
    steps = 0
    while not rc.idle:
        rc.on_report(0.0, 16)
        steps += 1
    assert steps > 3  # no flapping on a single clean report
    rc.on_report(0.004, 16)  # between the thresholds: stays idle
    assert rc.idle


def test_report_weight_grows_with_packets() -> None:
    a, b = RateController(), RateController()
    a.on_report(0.5, 1)
    b.on_report(0.5, 50)
    assert a.loss_ema < b.loss_ema
    b.on_report(0.9, 0)  # covers nothing: ignored
    assert b.reports == 1


def test_fixed_ratio_and_validation() -> None:
    assert RateController(RateConfig(fixed_ratio=0.25)).repair_ratio == 0.25
    with pytest.raises(LocalProtocolError):
        RateConfig(beta=0)
    with pytest.raises(LocalProtocolError):
        RateConfig(idle_below=0.1, wake_above=0.05)
