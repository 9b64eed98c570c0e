"""Stream message conformance: ``python -m conformance streams [FILE ...]``.

Checks ``conformance/vectors/streams-v1.json`` (written by ``conformance/make_stream_vectors.py``)
against ``zmesh/sansio/streams/messages.py``; the byte layouts are ``docs/wire/streams.md`` §1-§2.
The file has three lists:

- ``valid``: a message's fields and its exact bytes. Checked both ways: parsing the bytes gives
  the fields, encoding the fields gives the bytes. ``also_encodes_from`` lists other spellings of
  the same address (``2001:DB8:0::1``) that must encode to the same bytes (one canonical
  encoding per address) and parse back to the canonical text. RESET entries also name the
  RFC 1928 reply code a SOCKS client sees for the reason.
- ``invalid``: bytes a receiver must refuse, with the ``ProtocolError`` subclass zmesh raises
  (``MalformedInput``, ``TruncatedInput``); another implementation need only refuse them.
- ``unencodable``: fields a sender must refuse to encode (``LocalProtocolError`` in zmesh).

Field names: ``type`` (BEGIN, CONNECTED, DATA, END, RESET, SENDME), ``stream_id``; BEGIN
``host`` (canonical text), ``address_type`` (IPV4, DOMAIN, IPV6), ``port``; DATA ``data`` (hex);
RESET ``reason`` (name), ``reason_code``, ``socks_reply``; SENDME ``credit``.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

from zmesh.sansio.streams import (
    AddressType,
    Begin,
    Connected,
    Data,
    End,
    Message,
    Reset,
    ResetReason,
    Sendme,
    encode_message,
    parse_message,
)
from zmesh.sansio.wire import LocalProtocolError, ProtocolError

_HERE = pathlib.Path(__file__).resolve().parent
STREAMS_V1 = _HERE / "vectors" / "streams-v1.json"

DEFAULT_FILES: list[pathlib.Path] = [STREAMS_V1]

_NOT_CHECKED = (
    "not checked: the mux state machine (which message is allowed when, flow-control windows, "
    "docs/wire/streams.md §3-§5) and the DATA size limit, which the mux enforces from "
    "max_message_size rather than the codec"
)

Problem = str | None


def message_of(fields: dict[str, Any]) -> Message:
    """Build the zmesh message a vector's fields describe."""
    kind, sid = fields["type"], fields["stream_id"]
    if kind == "BEGIN":
        return Begin(sid, fields["host"], fields["port"])
    if kind == "CONNECTED":
        return Connected(sid)
    if kind == "DATA":
        return Data(sid, bytes.fromhex(fields["data"]))
    if kind == "END":
        return End(sid)
    if kind == "RESET":
        return Reset(sid, ResetReason[fields["reason"]])
    if kind == "SENDME":
        return Sendme(sid, fields["credit"])
    raise ValueError(f"unknown message type {kind!r}")


def _check_valid(entry: dict[str, Any]) -> Problem:
    fields, wire = entry["message"], bytes.fromhex(entry["encoded"])
    want = message_of(fields)
    got = parse_message(wire)
    if got != want:
        return f"parsed as {got!r}, expected {want!r}"
    if encode_message(want) != wire:
        return f"encodes as {encode_message(want).hex()}"
    if fields["type"] == "BEGIN":
        # ATYP is byte 3; the file names it so a reader sees which address form is meant.
        if wire[3] != AddressType[fields["address_type"]]:
            return f"ATYP byte {wire[3]} is not {fields['address_type']}"
        for spelling in entry.get("also_encodes_from", []):
            other = Begin(fields["stream_id"], spelling, fields["port"])
            if encode_message(other) != wire:
                return f"{spelling!r} encodes differently"
    if fields["type"] == "RESET":
        reason = ResetReason[fields["reason"]]
        if int(reason) != fields["reason_code"]:
            return f"{reason.name} is code {int(reason)}, not {fields['reason_code']}"
        if reason.socks_reply != fields["socks_reply"]:
            return f"{reason.name} maps to SOCKS reply {reason.socks_reply}"
    return None


def _check_invalid(entry: dict[str, Any]) -> Problem:
    try:
        got = parse_message(bytes.fromhex(entry["encoded"]))
    except ProtocolError as exc:
        if type(exc).__name__ == entry["error"]:
            return None
        return f"raised {type(exc).__name__} ({exc}), expected {entry['error']}"
    return f"was accepted as {got!r}, expected {entry['error']}"


def _check_unencodable(entry: dict[str, Any]) -> Problem:
    try:
        wire = encode_message(message_of(entry["message"]))
    except LocalProtocolError:
        return None
    return f"was encoded as {wire.hex()}, expected LocalProtocolError"


_CHECKS: dict[str, Callable[[dict[str, Any]], Problem]] = {
    "valid": _check_valid,
    "invalid": _check_invalid,
    "unencodable": _check_unencodable,
}


def check_file(path: pathlib.Path, out: Callable[[str], None]) -> tuple[int, int]:
    """Check one vector file; return (passed, failed)."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not any(k in data for k in _CHECKS):
            raise ValueError("no 'valid', 'invalid' or 'unencodable' list")
    except (OSError, ValueError) as exc:
        out(f"{path}: cannot read stream vectors: {exc}")
        return 0, 1
    passed = failed = 0
    for section, check in _CHECKS.items():
        for entry in data.get(section, []):
            try:
                problem = check(entry)
            except (ProtocolError, ValueError, KeyError, TypeError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                passed += 1
            else:
                failed += 1
                out(f"FAIL {section} {entry.get('name', '?')}: {problem}")
    out(_NOT_CHECKED)
    return passed, failed
