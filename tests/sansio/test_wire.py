"""Reader/Writer bounds and the error hierarchy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zmesh.sansio.wire import (
    LocalProtocolError,
    MalformedInput,
    ProtocolError,
    Reader,
    RemoteProtocolError,
    TruncatedInput,
    Writer,
)


def test_round_trip_fields() -> None:
    data = Writer().u8(1).u16(0x0203).u24(0x040506).u32(7).u64(2**63).uint(5, 5).bytes_(b"xy")
    r = Reader(data.getvalue())
    assert (r.u8(), r.u16(), r.u24(), r.u32(), r.u64(), r.uint(5)) == (1, 0x0203, 0x040506, 7, 2**63, 5)
    assert r.bytes_(2) == b"xy"
    r.expect_end()


def test_truncation_and_trailing_bytes() -> None:
    with pytest.raises(TruncatedInput):
        Reader(b"\x00").u16()
    with pytest.raises(MalformedInput):
        Reader(b"\x00").expect_end()
    assert issubclass(TruncatedInput, RemoteProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)


def test_writer_rejects_out_of_range() -> None:
    with pytest.raises(LocalProtocolError):
        Writer().u8(256)
    with pytest.raises(LocalProtocolError):
        Writer().uint(1 << 16, 2)


@given(st.binary(max_size=64), st.lists(st.sampled_from(["u8", "u16", "u24", "u32", "u64"])))
def test_reader_raises_only_protocol_errors(data: bytes, ops: list[str]) -> None:
    r = Reader(data)
    try:
        for op in ops:
            getattr(r, op)()
    except ProtocolError:
        pass
    assert 0 <= r.position <= len(data)
