"""RFC 9407 §5 packet parsing and encoding: layouts, round trips, hostile input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.tetrys.coefficients import CCGI_GF16, CCGI_GF256
from zmesh.sansio.tetrys.packets import (
    CodedPacket,
    CommonHeader,
    EncodingVector,
    HeaderExtension,
    IdFormat,
    PacketType,
    SourcePacket,
    WindowUpdate,
    choose_id_format,
    encode_packet,
    id_format_fits,
    parse_packet,
)
from zmesh.sansio.wire import (
    LocalProtocolError,
    MalformedInput,
    ProtocolError,
    TruncatedInput,
)


def test_source_packet_bytes() -> None:
    data = encode_packet(SourcePacket(0x01020304, b"hello"))
    # V=1, C=0, S=0 | reserved | HDR_LEN=1 | PKT_TYPE=0 | source id | symbol
    assert data == bytes([0x10, 0x00, 0x01, 0x00, 1, 2, 3, 4]) + b"hello"
    assert parse_packet(data) == SourcePacket(0x01020304, b"hello")


def test_header_with_cci_tsi_and_extensions() -> None:
    header = CommonHeader(
        PacketType.SOURCE,
        cci=b"\xaa" * 8,
        tsi=0xDEADBEEF,
        extensions=(HeaderExtension(5, b"\x01\x02"), HeaderExtension(200, b"xyz")),
    )
    data = encode_packet(SourcePacket(7, b"", header))
    assert data[0] == 0x10 | (2 << 2) | (1 << 1)
    assert data[2] == 1 + 2 + 1 + 2  # words: common, CCI, TSI, two extensions
    assert parse_packet(data) == SourcePacket(7, b"", header)


def test_reserved_bits_ignored_on_receipt() -> None:
    data = bytearray(encode_packet(SourcePacket(9, b"x")))
    data[0] |= 0x01  # the top reserved bit
    data[1] = 0xFF  # the other eight
    assert parse_packet(bytes(data)) == SourcePacket(9, b"x")


def test_unknown_extension_skipped_by_length() -> None:
    data = bytearray(encode_packet(SourcePacket(9, b"x")))
    data[2] = 3  # HDR_LEN 3 words: two words of header extension follow
    ext = bytes([42, 2, 0xAB, 0xCD, 0xEF, 0x01, 0x02, 0x03])
    packet = parse_packet(bytes(data[:4]) + ext + bytes(data[4:]))
    assert isinstance(packet, SourcePacket)
    assert packet.symbol == b"x"
    assert packet.header.extensions == (HeaderExtension(42, ext[2:]),)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: d.__setitem__(0, 0x20), MalformedInput),  # version 2
        (lambda d: d.__setitem__(3, 9), MalformedInput),  # unknown type
        (lambda d: d.__setitem__(2, 0), MalformedInput),  # HDR_LEN 0
        (lambda d: d.__setitem__(2, 9), TruncatedInput),  # header past the end
    ],
)
def test_bad_headers(mutate: object, error: type[Exception]) -> None:
    data = bytearray(encode_packet(SourcePacket(1, b"abcd")))
    mutate(data)  # type: ignore[operator]
    with pytest.raises(error):
        parse_packet(bytes(data))


def test_coded_packet_contiguous_layout() -> None:
    vector = EncodingVector(CCGI_GF256, (10, 11, 12), None, False, IdFormat.CONTIGUOUS)
    data = encode_packet(CodedPacket(77, vector, b"\x00" * 4))
    assert data[3] == PacketType.CODED
    assert data[4:8] == (77).to_bytes(4, "big")
    # EV_LEN=2 words | CCGI=1, I=0, C=0, V=0 | NB_IDS=3 | NB_COEFS=0 | FIRST_SOURCE_ID=10
    assert data[8:16] == bytes([2, 0x10, 3, 0]) + (10).to_bytes(4, "big")
    assert parse_packet(data) == CodedPacket(77, vector, b"\x00" * 4)


def test_explicit_gf16_coefficients_are_nibbles() -> None:
    vector = EncodingVector(CCGI_GF16, (1, 2, 3), (0xA, 0xB, 0xC), True, IdFormat.CONTIGUOUS)
    data = encode_packet(CodedPacket(1, vector, b"zz"))
    assert data[9] == (0 << 4) | (0 << 2) | 0b10 | 0b01
    assert data[11] == 3  # NB_COEFS
    assert data[16:20] == bytes([0xAB, 0xC0, 0, 0])
    assert parse_packet(data) == CodedPacket(1, vector, b"zz")


@pytest.mark.parametrize("fmt", list(IdFormat))
def test_each_id_format_round_trips(fmt: IdFormat) -> None:
    ids = (100, 101, 102, 110, 111, 140) if fmt is not IdFormat.CONTIGUOUS else (5, 6, 7)
    vector = EncodingVector(CCGI_GF256, ids, None, False, fmt)
    packet = CodedPacket(3, vector, b"abc")
    assert parse_packet(encode_packet(packet)) == packet


def test_ids_wrap_around_32_bits() -> None:
    ids = (0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 5)
    for fmt in (IdFormat.EDGES, IdFormat.LIST, IdFormat.COMPRESSED_EDGES):
        packet = CodedPacket(3, EncodingVector(CCGI_GF256, ids, None, False, fmt), b"")
        assert parse_packet(encode_packet(packet)) == packet


def test_choose_id_format_prefers_shortest() -> None:
    assert choose_id_format(list(range(50))) is IdFormat.CONTIGUOUS
    assert choose_id_format([1, 3, 5, 7]) is IdFormat.LIST
    assert not id_format_fits(IdFormat.CONTIGUOUS, [1, 3])
    assert not id_format_fits(IdFormat.LIST, [1, 1 + (1 << 17)])  # delta wider than 16 bits


def test_encoder_refuses_unencodable() -> None:
    with pytest.raises(LocalProtocolError):
        encode_packet(CodedPacket(1, EncodingVector(CCGI_GF256, ()), b""))
    with pytest.raises(LocalProtocolError):
        encode_packet(
            CodedPacket(
                1, EncodingVector(CCGI_GF256, (1, 3), None, False, IdFormat.CONTIGUOUS), b""
            )
        )
    with pytest.raises(LocalProtocolError):
        encode_packet(CodedPacket(1, EncodingVector(CCGI_GF16, (1,), (16,)), b""))


def test_edge_blocks_must_not_overlap() -> None:
    vector = EncodingVector(CCGI_GF256, (10, 11, 20, 21), None, False, IdFormat.EDGES)
    data = bytearray(encode_packet(CodedPacket(1, vector, b"")))
    # edges after FIRST: end0=11, start1=20, end1=21. Make start1 touch end0.
    data[20:24] = (12).to_bytes(4, "big")
    with pytest.raises(MalformedInput):
        parse_packet(bytes(data))


def test_window_update_layout_and_sack() -> None:
    wu = WindowUpdate(2, 1, 1000, 26, bytes([0b10110000]))
    data = encode_packet(wu)
    assert data[:4] == bytes([0x10, 0, 1, PacketType.WINDOW_UPDATE])
    assert data[4:16] == (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + (1000).to_bytes(4, "big")
    assert data[16:20] == bytes([26, 1, 0, 0])
    assert data[20:] == bytes([0b10110000, 0, 0, 0])
    assert parse_packet(data) == wu
    assert wu.acknowledged_offsets() == [0, 2, 3]


def test_window_update_trailing_bytes_rejected() -> None:
    data = encode_packet(WindowUpdate(0, 0, 0, 0)) + b"\x00"
    with pytest.raises(MalformedInput):
        parse_packet(data)


# ---- hypothesis --------------------------------------------------------------------------

ids_strategy = st.lists(st.integers(0, 300), min_size=1, max_size=60, unique=True).map(
    lambda xs: sorted(xs)
)


@st.composite
def coded_packets(draw: st.DrawFn) -> CodedPacket:
    base = draw(st.integers(0, 0xFFFFFFFF))
    ids = tuple((base + i) & 0xFFFFFFFF for i in draw(ids_strategy))
    ccgi = draw(st.sampled_from([CCGI_GF16, CCGI_GF256]))
    fmts = [f for f in IdFormat if id_format_fits(f, ids)]
    fmt = draw(st.sampled_from(fmts))
    coefs = None
    if draw(st.booleans()):
        top = 15 if ccgi == CCGI_GF16 else 255
        coefs = tuple(draw(st.lists(st.integers(0, top), min_size=len(ids), max_size=len(ids))))
    vector = EncodingVector(ccgi, ids, coefs, draw(st.booleans()), fmt)
    header = CommonHeader(
        PacketType.CODED,
        cci=draw(st.sampled_from([b"", b"1234", b"12345678abcd"])),
        tsi=draw(st.none() | st.integers(0, 0xFFFFFFFF)),
    )
    return CodedPacket(
        draw(st.integers(0, 0xFFFFFFFF)), vector, draw(st.binary(max_size=40)), header
    )


@settings(max_examples=200, deadline=None)
@given(coded_packets())
def test_coded_round_trip(packet: CodedPacket) -> None:
    assert parse_packet(encode_packet(packet)) == packet


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 255),
    st.binary(max_size=255),
)
def test_window_update_round_trip(m: int, u: int, first: int, plr: int, sack: bytes) -> None:
    wu = WindowUpdate(m, u, first, plr, sack)
    assert parse_packet(encode_packet(wu)) == wu


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_packet(data)


@settings(max_examples=300, deadline=None)
@given(coded_packets(), st.data())
def test_mutated_packets_raise_only_protocol_errors(
    packet: CodedPacket, data: st.DataObject
) -> None:
    raw = bytearray(encode_packet(packet))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(ProtocolError):
        parse_packet(bytes(raw[:cut]))
