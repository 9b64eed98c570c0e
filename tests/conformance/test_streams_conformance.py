"""The streams conformance suite passes on its vectors, and notices broken vectors and code."""

from __future__ import annotations

import copy
import json
import pathlib
import tempfile
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import __main__ as runner
from conformance import streams as suite
from zmesh.sansio.streams import AddressType, MessageType, ResetReason, parse_message
from zmesh.sansio.wire import MalformedInput

DATA: dict[str, Any] = json.loads(suite.STREAMS_V1.read_text())
TOTAL = len(DATA["valid"]) + len(DATA["invalid"]) + len(DATA["unencodable"])


def run(data: dict[str, Any]) -> tuple[int, int, list[str]]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "streams.json"
        path.write_text(json.dumps(data))
        passed, failed = suite.check_file(path, lines.append)
    return passed, failed, [line for line in lines if line.startswith("FAIL")]


def test_committed_vectors_pass() -> None:
    lines: list[str] = []
    assert suite.check_file(suite.STREAMS_V1, lines.append) == (TOTAL, 0)
    assert TOTAL == 87
    assert any(line.startswith("not checked:") for line in lines)


def test_every_kind_reason_and_address_form_has_a_vector() -> None:
    messages = [v["message"] for v in DATA["valid"]]
    assert {m["type"] for m in messages} == {t.name for t in MessageType}
    assert {m["reason"] for m in messages if m["type"] == "RESET"} == {r.name for r in ResetReason}
    assert {m["address_type"] for m in messages if m["type"] == "BEGIN"} == {
        a.name for a in AddressType
    }
    # Every kind also has at least one encoding that must be refused.
    refused_types = {bytes.fromhex(v["encoded"])[:1] for v in DATA["invalid"]}
    assert {bytes((t,)) for t in MessageType} <= refused_types


def test_generator_reproduces_the_file_byte_for_byte() -> None:
    from conformance import make_stream_vectors

    built = json.dumps(make_stream_vectors.build(), indent=1) + "\n"
    assert built == suite.STREAMS_V1.read_text()


def test_changed_vectors_fail() -> None:
    data = copy.deepcopy(DATA)
    data["valid"][0]["encoded"] = data["valid"][0]["encoded"][:-2] + "bc"  # port 443 -> 444
    data["valid"][-1]["message"]["credit"] -= 1
    reset = next(v for v in data["valid"] if v["message"]["type"] == "RESET")
    reset["message"]["socks_reply"] = 9
    data["invalid"][0]["error"] = "MalformedInput"  # empty payload is TruncatedInput
    data["unencodable"][0]["message"]["stream_id"] = 1  # now a fine BEGIN
    passed, failed, lines = run(data)
    assert (passed, failed) == (TOTAL - 5, 5)
    assert any("SOCKS reply" in line for line in lines)
    assert any("expected LocalProtocolError" in line for line in lines)


def test_a_lenient_parser_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A codec that tolerated trailing bytes would be caught by the invalid vectors."""

    def lenient(payload: bytes) -> Any:
        try:
            return parse_message(payload)
        except MalformedInput:
            return parse_message(payload[:-1])

    monkeypatch.setattr(suite, "parse_message", lenient)
    _, failed, lines = run(DATA)
    accepted = [line for line in lines if "was accepted" in line]
    assert len(accepted) >= 5 and failed == len(lines)
    assert any("trailing byte" in line for line in accepted)
    assert any("with a body" in line for line in accepted)


def test_missing_and_unreadable_files(tmp_path: pathlib.Path) -> None:
    lines: list[str] = []
    assert suite.check_file(tmp_path / "absent.json", lines.append) == (0, 1)
    odd = tmp_path / "odd.json"
    odd.write_text("[1, 2]")
    assert suite.check_file(odd, lines.append) == (0, 1)


@settings(max_examples=60, deadline=None)
@given(encoded=st.binary(max_size=300), kind=st.sampled_from(["valid", "invalid"]))
def test_random_entries_never_crash_the_suite(encoded: bytes, kind: str) -> None:
    """Arbitrary bytes in any entry give a pass or a FAIL line, never an exception."""
    entry: dict[str, Any] = {"name": "random", "encoded": encoded.hex(), "error": "MalformedInput"}
    if kind == "valid":
        entry["message"] = {"type": "DATA", "stream_id": 1, "data": encoded.hex()}
    passed, failed, lines = run({kind: [entry]})
    assert passed + failed == 1 and len(lines) == failed


def test_runner_lists_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert "streams" in runner.SUITES
    assert runner.main(["streams"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"{TOTAL} passed, 0 failed")
