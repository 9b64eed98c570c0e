"""SCTP wire codec: CRC32c, common header, chunks, RE-CONFIG parameters, TSN arithmetic."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.webrtc.sctp import chunks as ch
from zmesh.sansio.webrtc.sctp.cookie import (
    COOKIE_SIZE,
    CookieExpired,
    StateCookie,
    open_cookie,
    seal_cookie,
)
from zmesh.sansio.webrtc.sctp.packet import (
    CRC32C_BACKEND,
    PacketBuilder,
    crc32c,
    crc32c_python,
    packet_checksum_ok,
    parse_header,
    with_checksum,
)
from zmesh.sansio.webrtc.sctp.streams_reset import (
    OutgoingResetRequest,
    ReconfigResponse,
    decode_reconfig,
)
from zmesh.sansio.webrtc.sctp.tsn import ReceivedTsns, serial16_lt, serial32_lt, unwrap
from zmesh.sansio.wire import (
    AuthenticationFailed,
    LocalProtocolError,
    MalformedInput,
    ProtocolError,
    TruncatedInput,
)

# RFC 3720 Appendix B.4 (iSCSI) CRC32c test vectors, plus the classic check value.
CRC_VECTORS = [
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"123456789", 0xE3069283),
]


@pytest.mark.parametrize(("data", "expected"), CRC_VECTORS)
def test_crc32c_vectors(data: bytes, expected: int) -> None:
    assert crc32c_python(data) == expected
    assert crc32c(data) == expected


@settings(max_examples=200)
@given(st.binary(max_size=2000))
def test_crc32c_backend_matches_python_twin(data: bytes) -> None:
    assert crc32c(data) == crc32c_python(data)


def test_backend_is_reported() -> None:
    assert CRC32C_BACKEND in ("google-crc32c", "python")


def _packet(*chunks: ch.Chunk, vtag: int = 0x01020304) -> bytes:
    b = PacketBuilder(1188)
    b.start(5000, 5000, vtag)
    for c in chunks:
        b.append(c.encode())
    return b.finish()


def test_builder_packet_checksum_and_header() -> None:
    pkt = _packet(ch.CookieAckChunk())
    assert packet_checksum_ok(pkt)
    header = parse_header(pkt)
    assert (header.source_port, header.destination_port, header.verification_tag) == (
        5000,
        5000,
        0x01020304,
    )
    corrupted = bytearray(pkt)
    corrupted[-1] ^= 0x40
    assert not packet_checksum_ok(bytes(corrupted))
    assert with_checksum(corrupted) != pkt
    assert packet_checksum_ok(with_checksum(corrupted))


def test_append_data_matches_chunk_encoding() -> None:
    b = PacketBuilder(1188)
    b.start(5000, 5000, 7)
    b.append_data(0x03, 0xFFFFFFFF, 3, 9, 53, b"hello")
    pkt = b.finish()
    assert pkt[12:] == ch.DataChunk(0x03, 0xFFFFFFFF, 3, 9, 53, b"hello").encode()
    assert ch.parse_chunks(pkt) == [ch.DataChunk(0x03, 0xFFFFFFFF, 3, 9, 53, b"hello")]


def test_builder_refuses_overflow() -> None:
    b = PacketBuilder(256)
    b.start(1, 2, 3)
    with pytest.raises(LocalProtocolError):
        b.append_data(3, 1, 0, 0, 0, bytes(300))
    with pytest.raises(LocalProtocolError):
        PacketBuilder(10)


def test_runt_packets() -> None:
    with pytest.raises(TruncatedInput):
        parse_header(b"\x00" * 11)
    assert not packet_checksum_ok(b"\x00" * 8)
    with pytest.raises(TruncatedInput):
        ch.parse_chunks(b"\x00" * 12)
    with pytest.raises(MalformedInput):
        parse_header(b"\x00" * 12)  # port 0


_u16 = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 0xFFFFFFFF)
_params = st.lists(st.tuples(_u16, st.binary(max_size=40)), max_size=4).map(tuple)

chunk_strategy = st.one_of(
    st.builds(
        ch.DataChunk,
        st.integers(0, 0xFF),
        _u32,
        _u16,
        _u16,
        _u32,
        st.binary(min_size=1, max_size=64),
    ),
    st.builds(
        ch.InitChunk,
        st.integers(1, 0xFFFFFFFF),
        _u32,
        st.integers(1, 0xFFFF),
        st.integers(1, 0xFFFF),
        _u32,
        _params,
    ),
    st.builds(
        ch.InitAckChunk,
        st.integers(1, 0xFFFFFFFF),
        _u32,
        st.integers(1, 0xFFFF),
        st.integers(1, 0xFFFF),
        _u32,
        _params,
    ),
    st.builds(
        ch.SackChunk,
        _u32,
        _u32,
        st.lists(
            st.tuples(st.integers(1, 0x7FFF), st.integers(0, 0x7FFF)).map(
                lambda t: (t[0], t[0] + t[1])
            ),
            max_size=8,
        ).map(tuple),
        st.lists(_u32, max_size=8).map(tuple),
    ),
    st.builds(ch.HeartbeatChunk, st.binary(max_size=32)),
    st.builds(ch.HeartbeatAckChunk, st.binary(max_size=32)),
    st.builds(ch.AbortChunk, _params, st.booleans()),
    st.builds(ch.ShutdownChunk, _u32),
    st.just(ch.ShutdownAckChunk()),
    st.builds(ch.ErrorChunk, _params),
    st.builds(ch.CookieEchoChunk, st.binary(max_size=80)),
    st.just(ch.CookieAckChunk()),
    st.builds(ch.ShutdownCompleteChunk, st.booleans()),
    st.builds(ch.ReconfigChunk, _params),
    st.builds(ch.ForwardTsnChunk, _u32, st.lists(st.tuples(_u16, _u16), max_size=6).map(tuple)),
    st.builds(
        ch.UnknownChunk,
        st.sampled_from([0x40, 0x81, 0xC1, 99]),
        st.integers(0, 255),
        st.binary(max_size=20),
    ),
)


@settings(max_examples=150)
@given(st.lists(chunk_strategy, min_size=1, max_size=5))
def test_chunks_round_trip(chunks: list[ch.Chunk]) -> None:
    encoded = b"".join(c.encode() for c in chunks)
    assert all(len(c.encode()) % 4 == 0 for c in chunks)
    assert ch.parse_chunks(b"\x00" * 12 + encoded) == chunks


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_chunk_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        ch.parse_chunks(b"\x00" * 12 + data)


@settings(max_examples=150)
@given(chunk_strategy, st.data())
def test_mutated_chunks_raise_only_protocol_errors(chunk: ch.Chunk, data: st.DataObject) -> None:
    encoded = bytearray(chunk.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(encoded) - 1))
        encoded[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    with contextlib.suppress(ProtocolError):
        ch.parse_chunks(b"\x00" * 12 + bytes(encoded[:cut]))


def test_last_chunk_padding_may_be_missing() -> None:
    encoded = ch.DataChunk(3, 1, 0, 0, 51, b"abc").encode()
    assert len(encoded) == 20
    assert ch.parse_chunks(b"\x00" * 12 + encoded[:19]) == [ch.DataChunk(3, 1, 0, 0, 51, b"abc")]


def test_chunk_validation() -> None:
    with pytest.raises(MalformedInput):  # DATA without user data
        ch.parse_chunks(b"\x00" * 12 + b"\x00\x03\x00\x10" + bytes(12))
    with pytest.raises(MalformedInput):  # INIT with tag 0
        ch.parse_chunks(b"\x00" * 12 + ch.InitChunk(1, 1, 1, 1, 1).encode()[:4] + bytes(16))
    with pytest.raises(MalformedInput):  # chunk length below 4
        ch.parse_chunks(b"\x00" * 12 + b"\x0b\x00\x00\x02")
    with pytest.raises(TruncatedInput):
        ch.parse_chunks(b"\x00" * 12 + b"\x0b\x00\x00\x08")
    with pytest.raises(MalformedInput):  # SACK count mismatch
        ch.parse_chunks(b"\x00" * 12 + b"\x03\x00\x00\x10" + bytes(8) + b"\x00\x01\x00\x00")
    with pytest.raises(MalformedInput):  # FORWARD TSN with half a stream entry
        ch.parse_chunks(b"\x00" * 12 + b"\xc0\x00\x00\x0a" + bytes(6) + b"\x00\x00")


def test_reconfig_params_round_trip() -> None:
    req = OutgoingResetRequest(7, 6, 0xFFFFFFFF, (1, 3, 65535))
    resp = ReconfigResponse(7, 1)
    assert decode_reconfig((req.encode(), resp.encode())) == [req, resp]
    with pytest.raises(MalformedInput):
        decode_reconfig(())
    with pytest.raises(MalformedInput):
        decode_reconfig(((13, b"\x00" * 13),))
    with pytest.raises(MalformedInput):
        decode_reconfig(((99, b""),))


@settings(max_examples=100)
@given(_params)
def test_reconfig_random_params_raise_only_protocol_errors(params: ch.Params) -> None:
    with contextlib.suppress(ProtocolError):
        decode_reconfig(params)


def test_serial_arithmetic_wraps() -> None:
    assert serial32_lt(0xFFFFFFFF, 0)
    assert not serial32_lt(0, 0xFFFFFFFF)
    assert serial32_lt(5, 6) and not serial32_lt(6, 6)
    assert serial16_lt(0xFFFF, 0) and not serial16_lt(0, 0xFFFF)
    assert unwrap(2, 0xFFFFFFFE) == 0x100000002
    assert unwrap(0xFFFFFFFE, 0x100000002) == 0xFFFFFFFE
    assert unwrap(5, 10) == 5


@settings(max_examples=200)
@given(st.integers(-5, 2**33), st.lists(st.integers(1, 60), max_size=80))
def test_received_tsns_matches_a_set_model(base: int, offsets: list[int]) -> None:
    tracker = ReceivedTsns(base)
    seen: set[int] = set()
    for off in offsets:
        tsn = base + off
        assert tracker.add(tsn) == (tsn not in seen)
        seen.add(tsn)
        cum = base
        while cum + 1 in seen:
            cum += 1
        assert tracker.cumulative == cum
        assert all(tracker.contains(t) for t in seen)
        blocks = tracker.gap_blocks(1000)
        covered = {cum + s + i for s, e in blocks for i in range(e - s + 1)}
        assert covered == {t for t in seen if t > cum}
        for (_s1, e1), (s2, _e2) in itertools.pairwise(blocks):
            assert s2 > e1 + 1  # disjoint, sorted, not adjacent


def test_received_tsns_advance_and_bound() -> None:
    tracker = ReceivedTsns(100, max_ranges=2)
    assert tracker.add(103) and tracker.add(105)
    assert not tracker.can_add(107)  # a third range would exceed the bound
    assert tracker.can_add(104) and tracker.can_add(101)
    tracker.advance_to(104)
    assert tracker.cumulative == 105 and not tracker.has_gaps


def _cookie(created: float = 10.0) -> StateCookie:
    return StateCookie(created, 1, 2, 3, 4, 5, 6, 7, True, False)


def test_cookie_seal_open() -> None:
    key = b"k" * 32
    sealed = seal_cookie(_cookie(), key)
    assert len(sealed) == COOKIE_SIZE == 77
    assert open_cookie(sealed, key, 20.0, 60.0) == _cookie()
    tampered = bytearray(sealed)
    tampered[9] ^= 1
    with pytest.raises(AuthenticationFailed):
        open_cookie(bytes(tampered), key, 20.0, 60.0)
    with pytest.raises(AuthenticationFailed):
        open_cookie(sealed, b"x" * 32, 20.0, 60.0)
    with pytest.raises(CookieExpired) as info:
        open_cookie(sealed, key, 71.0, 60.0)
    assert info.value.peer_tag == 2
    with pytest.raises(MalformedInput):
        open_cookie(sealed[:-1], key, 20.0, 60.0)


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=40), st.binary(max_size=6))
def test_single_data_fast_path_agrees_with_general_parser(payload: bytes, tail: bytes) -> None:
    raw = b"\x00" * 12 + ch.DataChunk(3, 9, 1, 2, 53, payload).encode().rstrip(b"\x00") + tail
    # bytes take the fast path; a memoryview takes the general loop.
    try:
        fast: list[ch.Chunk] | type = ch.parse_chunks(raw)
    except ProtocolError as exc:
        fast = type(exc)
    try:
        slow: list[ch.Chunk] | type = ch.parse_chunks(memoryview(raw))
    except ProtocolError as exc:
        slow = type(exc)
    assert fast == slow
