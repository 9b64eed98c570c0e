"""Tetrys (RFC 9407) conformance: decode recorded sessions and check every source symbol.

A vector file is a JSON list of cases::

    {"description": str, "symbol_size": int, "ccgi": 0 | 1,
     "source_symbols": {"<source id>": "<hex>", ...},
     "packets": ["<hex datagram>", ...],          # in arrival order, losses already applied
     "variable_length": bool, "first_source_id": int, "max_window": int}   # optional

For each case a fresh decoder is fed every packet (window updates, which travelled the other
way, are parsed and must be well formed), and the case passes when

- every packet parses and re-encodes to exactly its bytes (the encoding is canonical);
- every source symbol is delivered byte-exact and none is reported lost;
- the symbols absent from the source packets were recovered from coded packets (so the case
  really exercises decoding), and there was at least one.

What it does not check: the encoder's choices (which coded packets to send, when), which are
policy and not wire format. ``conformance/make_tetrys_vectors.py`` regenerates the files.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

from zmesh.sansio.tetrys import (
    SourcePacket,
    SymbolDelivered,
    SymbolsLost,
    TetrysConfig,
    TetrysDecoder,
    encode_packet,
    parse_packet,
)
from zmesh.sansio.wire import ProtocolError

VECTORS = pathlib.Path(__file__).parent / "vectors"
DEFAULT_FILES: list[pathlib.Path] = sorted(VECTORS.glob("tetrys-*.json"))


def check_case(case: dict[str, Any]) -> list[str]:
    """The problems found in one case (empty if it passes)."""
    config = TetrysConfig(
        symbol_size=int(case["symbol_size"]),
        ccgi=int(case["ccgi"]),
        variable_length=bool(case.get("variable_length", False)),
        first_source_id=int(case.get("first_source_id", 0)),
        max_window=int(case.get("max_window", 255)),
        in_order=False,
        max_events=1 << 20,
    )
    expected = {int(k): bytes.fromhex(v) for k, v in case["source_symbols"].items()}
    decoder = TetrysDecoder(config)
    problems: list[str] = []
    delivered: dict[int, bytes] = {}
    recovered: set[int] = set()
    sent_as_source: set[int] = set()
    for index, text in enumerate(case["packets"]):
        raw = bytes.fromhex(text)
        try:
            packet = parse_packet(raw)
            if encode_packet(packet) != raw:
                problems.append(f"packet {index} does not re-encode to the same bytes")
            if isinstance(packet, SourcePacket):
                sent_as_source.add(packet.source_id)
            decoder.receive_datagram(raw, float(index))
        except ProtocolError as exc:
            problems.append(f"packet {index} rejected: {exc}")
            continue
        while (event := decoder.next_event()) is not None:
            if isinstance(event, SymbolsLost):
                problems.append(f"{event.count} symbols lost from {event.first_source_id}")
            elif isinstance(event, SymbolDelivered):
                if event.source_id in delivered:
                    problems.append(f"symbol {event.source_id} delivered twice")
                delivered[event.source_id] = event.data
                if event.recovered:
                    recovered.add(event.source_id)
    for sid, data in expected.items():
        if sid not in delivered:
            problems.append(f"symbol {sid} not delivered")
        elif delivered[sid] != data:
            problems.append(f"symbol {sid} differs")
    extra = set(delivered) - set(expected)
    if extra:
        problems.append(f"unexpected symbols {sorted(extra)[:5]}")
    must_recover = set(expected) - sent_as_source
    if not must_recover:
        problems.append("no source symbol was lost: the case does not exercise decoding")
    if recovered != must_recover & set(delivered):
        problems.append("recovered flags do not match the symbols missing from source packets")
    return problems


def check_file(path: pathlib.Path, out: Callable[[str], None]) -> tuple[int, int]:
    cases = json.loads(pathlib.Path(path).read_text())
    passed = failed = 0
    for number, case in enumerate(cases):
        try:
            problems = check_case(case)
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            problems = [f"malformed case: {exc!r}"]
        if problems:
            failed += 1
            label = case.get("description", "?") if isinstance(case, dict) else "?"
            for problem in problems[:10]:
                out(f"FAIL {path.name}#{number} ({label}): {problem}")
        else:
            passed += 1
    return passed, failed
