"""TetrysLink: cells in, datagrams out, both directions over one session."""

from __future__ import annotations

import random

import pytest

from zmesh.sansio.tetrys import CellReceived, CellsLost, TetrysConfig, TetrysLink
from zmesh.sansio.wire import LocalProtocolError, ProtocolError


def pump(a: TetrysLink, b: TetrysLink, now: float, rng: random.Random, loss: float) -> None:
    for src, dst in ((a, b), (b, a)):
        for d in src.datagrams_to_send(now):
            if rng.random() >= loss:
                dst.receive_datagram(d, now)


def events(link: TetrysLink) -> list[CellReceived | CellsLost]:
    out = []
    while (e := link.next_event()) is not None:
        out.append(e)
    return out


def test_cells_cross_a_lossy_link_in_order_both_ways() -> None:
    rng = random.Random(1)
    a, b = TetrysLink(random=rng.randbytes), TetrysLink(random=rng.randbytes)
    cells_ab = [rng.randbytes(1024) for _ in range(300)]
    cells_ba = [rng.randbytes(rng.randint(1, 1024)) for _ in range(300)]
    got_b: list[bytes] = []
    got_a: list[bytes] = []
    now = 0.0
    for x, y in zip(cells_ab, cells_ba, strict=True):
        now += 0.001
        a.send_cell(x, now)
        b.send_cell(y, now)
        pump(a, b, now, rng, 0.1)
        for link in (a, b):
            t = link.get_timer()
            if t is not None and t <= now:
                link.handle_timer(now)
        got_b += [e.cell for e in events(b) if isinstance(e, CellReceived)]
        got_a += [e.cell for e in events(a) if isinstance(e, CellReceived)]
    for _ in range(400):
        now += 0.005
        for link in (a, b):
            t = link.get_timer()
            if t is not None and t <= now:
                link.handle_timer(now)
        pump(a, b, now, rng, 0.1)
        got_b += [e.cell for e in events(b) if isinstance(e, CellReceived)]
        got_a += [e.cell for e in events(a) if isinstance(e, CellReceived)]
    assert got_b == cells_ab
    assert got_a == cells_ba
    sa, sb = a.stats, b.stats
    assert sb.recovered > 0 and sa.recovered > 0
    assert 0.01 < sa.loss_ema < 0.25 and sa.repair_ratio > 0 and not sa.idle
    assert sa.cells_sent == 300 and sb.cells_received == 300


def test_clean_link_sends_no_repair() -> None:
    a, b = TetrysLink(), TetrysLink()
    rng = random.Random(2)
    for i in range(100):
        a.send_cell(bytes([i]) * 1024, i * 0.001)
        pump(a, b, i * 0.001, rng, 0.0)
    assert a.stats.coded_sent == 0 and a.stats.idle
    assert len(events(b)) == 100


def test_malformed_datagrams_are_counted_and_raised() -> None:
    a = TetrysLink()
    with pytest.raises(ProtocolError):
        a.receive_datagram(b"\x10\x00", 0.0)
    assert a.stats.malformed == 1
    with pytest.raises(LocalProtocolError):
        a.send_cell(bytes(1025), 0.0)


def test_config_forces_variable_length() -> None:
    link = TetrysLink(TetrysConfig(symbol_size=64))
    assert link.config.variable_length
