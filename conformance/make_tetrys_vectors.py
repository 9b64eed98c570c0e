"""Regenerate ``conformance/vectors/tetrys-*.json`` deterministically.

``python -m conformance.make_tetrys_vectors`` runs a zmesh Tetrys encoder and decoder against
each other over a scripted lossy channel and records, in arrival order, every packet the
decoder received and every window update the encoder received. Symbol contents, losses and
explicit coefficients all come from fixed seeds, so the output is byte-for-byte reproducible.

Each case is ``{"description", "symbol_size", "ccgi", "source_symbols": {"<id>": "<hex>"},
"packets": ["<hex>", ...]}`` plus the session parameters a decoder needs when they differ
from the defaults: ``variable_length`` (default false), ``first_source_id`` (default 0) and
``max_window`` (default 255). ``conformance/tetrys.py`` checks them.
"""

from __future__ import annotations

import json
import pathlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from zmesh.sansio.tetrys import (
    CCGI_GF16,
    CCGI_GF256,
    IdFormat,
    RateConfig,
    SourcePacket,
    SymbolDelivered,
    TetrysConfig,
    TetrysDecoder,
    TetrysEncoder,
    WindowUpdate,
    parse_packet,
)

VECTORS = pathlib.Path(__file__).parent / "vectors"


@dataclass
class Case:
    name: str
    description: str
    ccgi: int = CCGI_GF256
    symbol_size: int = 32
    count: int = 24
    variable_length: bool = False
    first_source_id: int = 0
    max_window: int = 255
    explicit: bool | None = None
    id_format: IdFormat | None = None
    ratio: float | None = 0.25  # fixed repair ratio; None = adaptive
    lose_source: set[int] = field(default_factory=set)  # by source index
    random_loss: float = 0.0
    feedback_every: int = 0  # 0: no window updates reach the encoder
    lose_feedback: float = 0.0
    seed: int = 1


def run_case(case: Case) -> dict[str, object]:
    rng = random.Random(case.seed)
    cfg = TetrysConfig(
        symbol_size=case.symbol_size,
        ccgi=case.ccgi,
        variable_length=case.variable_length,
        first_source_id=case.first_source_id,
        max_window=case.max_window,
        explicit_coefficients=case.explicit,
        id_format=case.id_format,
        rate=RateConfig(fixed_ratio=case.ratio) if case.ratio is not None else RateConfig(),
        feedback_every=max(case.feedback_every, 1),
        in_order=False,
    )
    enc = TetrysEncoder(cfg, random=random.Random(case.seed + 1000).randbytes)
    dec = TetrysDecoder(cfg)
    symbols: dict[int, bytes] = {}
    packets: list[str] = []
    delivered: dict[int, bytes] = {}
    now = 0.0
    source_index = 0

    def lost(raw: bytes) -> bool:
        nonlocal source_index
        if isinstance(parse_packet(raw), SourcePacket):
            source_index += 1
            if source_index - 1 in case.lose_source:
                return True
        return rng.random() < case.random_loss

    def deliver(raws: list[bytes]) -> None:
        for raw in raws:
            if lost(raw):
                continue
            packets.append(raw.hex())
            dec.receive_datagram(raw, now)
        while (e := dec.next_event()) is not None:
            if isinstance(e, SymbolDelivered):
                delivered[e.source_id] = e.data
        if case.feedback_every:
            for raw in dec.datagrams_to_send(now):
                if rng.random() >= case.lose_feedback:
                    packets.append(raw.hex())
                    update = parse_packet(raw)
                    assert isinstance(update, WindowUpdate)
                    enc.receive_window_update(update, now)

    for _ in range(case.count):
        now += 0.001
        size = rng.randint(0, case.symbol_size) if case.variable_length else case.symbol_size
        data = rng.randbytes(size)
        symbols[enc.send_source(data, now)] = data
        deliver(enc.datagrams_to_send(now))
    for _ in range(200):  # top up with on-demand repairs until everything decoded
        if len(delivered) == len(symbols):
            break
        now += 0.001
        enc.send_repair(now)
        deliver(enc.datagrams_to_send(now))
    if delivered != symbols:
        raise SystemExit(f"case {case.name} did not decode; adjust its script")
    out: dict[str, object] = {
        "description": case.description,
        "symbol_size": case.symbol_size,
        "ccgi": case.ccgi,
    }
    if case.variable_length:
        out["variable_length"] = True
    if case.first_source_id:
        out["first_source_id"] = case.first_source_id
    if case.max_window != 255:
        out["max_window"] = case.max_window
    out["source_symbols"] = {str(k): v.hex() for k, v in symbols.items()}
    out["packets"] = packets
    return out


CASES: dict[str, list[Case]] = {
    "tetrys-gf256.json": [
        Case(
            "gf256-generated",
            "GF(2^8), generated coefficients (C=0), contiguous window (I=0), no feedback; "
            "source symbols 3, 7 and 12 lost",
            lose_source={3, 7, 12},
        ),
        Case(
            "gf256-explicit",
            "GF(2^8), explicit coefficients (C=1), contiguous window; a burst of 4 lost",
            explicit=True,
            lose_source={5, 6, 7, 8},
            ratio=0.34,
        ),
        Case(
            "gf256-feedback-sack",
            "GF(2^8), adaptive rate with window updates every 4 packets, 15 % random loss on "
            "data and 20 % on feedback; windows shrink to non-contiguous sets",
            ratio=None,
            count=120,
            random_loss=0.15,
            feedback_every=4,
            lose_feedback=0.2,
            seed=5,
        ),
        Case(
            "gf256-wrap",
            "GF(2^8) across the 2^32 source ID wrap (explicit coefficients where the IDs "
            "0xFFFFFFFF and 0 share a residue mod 255)",
            first_source_id=0xFFFFFFF6,
            lose_source={8, 9, 10, 13},
            ratio=0.3,
        ),
        Case(
            "gf256-variable",
            "GF(2^8), variable-length symbols (V=1, 16-bit length prefix in coded symbols)",
            variable_length=True,
            symbol_size=40,
            lose_source={0, 4, 11, 19},
            ratio=0.3,
            seed=3,
        ),
        Case(
            "gf256-small-window",
            "GF(2^8), max_window 8: the encoder evicts, coded packets span 8 IDs at most",
            max_window=8,
            lose_source={2, 9, 17},
            ratio=0.5,
            seed=4,
        ),
    ],
    "tetrys-gf16.json": [
        Case(
            "gf16-generated",
            "GF(2^4), generated coefficients, window kept under 15 IDs by window updates",
            ccgi=CCGI_GF16,
            count=40,
            feedback_every=3,
            lose_source={4, 9, 21, 30},
            ratio=0.3,
            seed=6,
        ),
        Case(
            "gf16-explicit",
            "GF(2^4) without feedback: generated coefficients while the window spans at most "
            "15 IDs, explicit nibble coefficients (C=1) once it grows past that",
            ccgi=CCGI_GF16,
            count=30,
            lose_source={1, 14, 15, 27},
            ratio=0.3,
            seed=7,
        ),
    ],
    "tetrys-idformats.json": [
        Case(
            f"ids-{fmt.name.lower()}",
            f"GF(2^8), source IDs stored as I={fmt.value:#04b} ({fmt.name}) after selective "
            "acknowledgements left holes in the window",
            id_format=fmt,
            count=60,
            random_loss=0.12,
            feedback_every=5,
            ratio=0.2,
            seed=10 + fmt.value,
        )
        for fmt in (IdFormat.EDGES, IdFormat.LIST, IdFormat.COMPRESSED_EDGES)
    ],
}


def main(write: Callable[[pathlib.Path, str], None] | None = None) -> None:
    for filename, cases in CASES.items():
        text = json.dumps([run_case(c) for c in cases], indent=1) + "\n"
        path = VECTORS / filename
        if write is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path} ({len(cases)} cases)")
        else:
            write(path, text)


if __name__ == "__main__":
    main()
