"""Tetrys packets (RFC 9407 §5): common header, source, coded and window-update packets.

Byte layouts, and for each field how sure we are that it matches the RFC, are in
``docs/wire/tetrys.md``. In short:

- common header (RFC 9407 §5.1.1, verified): ``V(4) C(2) S(1) reserved(9) HDR_LEN(8)
  PKT_TYPE(8)``, then ``32*C`` bits of CCI, ``32*S`` bits of TSI and header extensions up to
  ``HDR_LEN`` 32-bit words. Reserved bits are zero on send and ignored on receipt. Header
  extensions follow LCT (RFC 5651 §5.2): HET < 128 carries its length HEL in 32-bit words,
  HET >= 128 is one word; they are kept as opaque (HET, content) pairs.
- source packet: header, 32-bit Source Symbol ID, the source symbol (rest of the datagram);
- coded packet: header, 32-bit Coded Symbol ID, encoding vector, coded symbol;
- window update: header, missing-source count, not-used-coded count, first source ID, an
  8-bit packet loss ratio, the SACK size in bytes and the SACK bitmap.

Every parser reads the whole datagram before building its result and raises a
:class:`~zmesh.sansio.wire.ProtocolError` subclass on anything it cannot accept.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from zmesh.sansio.tetrys.coefficients import CCGI_GF16, CCGI_GF256
from zmesh.sansio.wire import (
    LocalProtocolError,
    MalformedInput,
    OversizedInput,
    Reader,
    TruncatedInput,
    Writer,
)

__all__ = [
    "VERSION",
    "ID_MASK",
    "MAX_IDS",
    "IdFormat",
    "PacketType",
    "HeaderExtension",
    "CommonHeader",
    "SourcePacket",
    "EncodingVector",
    "CodedPacket",
    "WindowUpdate",
    "Packet",
    "parse_packet",
    "encode_packet",
    "choose_id_format",
    "id_format_fits",
    "vector_source_ids",
]

VERSION: Final = 1  # RFC 9407 §5.1.1: "V ... is 1 for this specification"
ID_MASK: Final = 0xFFFFFFFF
#: NB_IDS and NB_COEFS are 8-bit fields.
MAX_IDS: Final = 255
#: EV_LEN is an 8-bit count of 32-bit words.
MAX_EV_BYTES: Final = 255 * 4
#: b_id is 4 bits: compressed deltas are 1..16 bits wide.
MAX_DELTA_BITS: Final = 16
#: A sane bound on one datagram; DataChannel messages and UDP payloads are far below it.
MAX_PACKET: Final = 65_535


class PacketType(enum.IntEnum):
    SOURCE = 0
    CODED = 1
    WINDOW_UPDATE = 2


class IdFormat(enum.IntEnum):
    """The encoding vector's I field: how the source IDs of a combination are stored."""

    CONTIGUOUS = 0b00  # no IDs stored: FIRST_SOURCE_ID .. FIRST_SOURCE_ID + NB_IDS - 1
    EDGES = 0b01  # uncompressed edge blocks: 32-bit IDs
    LIST = 0b10  # compressed list: b_id-wide deltas
    COMPRESSED_EDGES = 0b11  # compressed edge blocks: b_id-wide deltas


@dataclass(frozen=True)
class HeaderExtension:
    het: int
    content: bytes  # the bytes after HET (and HEL when present)

    def encoded_length(self) -> int:
        if self.het >= 128:
            return 4
        return 2 + len(self.content)


@dataclass(frozen=True)
class CommonHeader:
    packet_type: PacketType
    cci: bytes = b""  # 0, 4, 8 or 12 bytes of congestion control information
    tsi: int | None = None  # 32-bit transport session identifier when S = 1
    extensions: tuple[HeaderExtension, ...] = ()


@dataclass(frozen=True)
class SourcePacket:
    source_id: int
    symbol: bytes
    header: CommonHeader = field(default_factory=lambda: CommonHeader(PacketType.SOURCE))


@dataclass(frozen=True)
class EncodingVector:
    """Which source symbols a coded symbol combines, and with which coefficients.

    ``source_ids`` are 32-bit wire IDs in sending order (increasing modulo 2^32).
    ``coefficients`` is None when they are generated from the CCGI (C = 0).
    """

    ccgi: int
    source_ids: tuple[int, ...]
    coefficients: tuple[int, ...] | None = None
    variable_length: bool = False
    id_format: IdFormat = IdFormat.CONTIGUOUS


@dataclass(frozen=True)
class CodedPacket:
    coded_id: int
    vector: EncodingVector
    symbol: bytes
    header: CommonHeader = field(default_factory=lambda: CommonHeader(PacketType.CODED))


@dataclass(frozen=True)
class WindowUpdate:
    """Receiver feedback. ``sack`` bit i (MSB first) set = source ``first_source_id + i`` known.

    ``plr`` is the packet loss ratio the receiver measured, quantised as ``round(p * 255)``.
    """

    nb_missing: int
    nb_not_used: int
    first_source_id: int
    plr: int
    sack: bytes = b""
    header: CommonHeader = field(default_factory=lambda: CommonHeader(PacketType.WINDOW_UPDATE))

    def acknowledged_offsets(self) -> list[int]:
        """Offsets from ``first_source_id`` whose SACK bit is set."""
        out: list[int] = []
        for byte_index, byte in enumerate(self.sack):
            if byte:
                base = byte_index * 8
                out.extend(base + bit for bit in range(8) if byte & (0x80 >> bit))
        return out


Packet = SourcePacket | CodedPacket | WindowUpdate


# ---- bit fields ----------------------------------------------------------------------------


class _BitWriter:
    __slots__ = ("_acc", "_bits")

    def __init__(self) -> None:
        self._acc = 0
        self._bits = 0

    def put(self, value: int, width: int) -> None:
        self._acc = (self._acc << width) | value
        self._bits += width

    def padded_bytes(self) -> bytes:
        """The bits so far, zero-padded to a multiple of 32 bits."""
        total = -(-self._bits // 32) * 32
        return (self._acc << (total - self._bits)).to_bytes(total // 8, "big")


class _BitReader:
    __slots__ = ("_acc", "_left")

    def __init__(self, data: memoryview) -> None:
        self._acc = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def take(self, width: int) -> int:
        if width > self._left:
            raise TruncatedInput("encoding vector bit field shorter than announced")
        self._left -= width
        return (self._acc >> self._left) & ((1 << width) - 1)


def _words(n_bits: int) -> int:
    return -(-n_bits // 32)


# ---- source-ID storage (the I field) -------------------------------------------------------


def _edges(ids: Sequence[int]) -> list[int]:
    """Start/end wire IDs of the runs of consecutive IDs (end inclusive)."""
    edges = [ids[0]]
    for prev, cur in itertools.pairwise(ids):
        if (cur - prev) & ID_MASK != 1:
            edges += [prev, cur]
    edges.append(ids[-1])
    return edges


def _delta_width(deltas: Sequence[int]) -> int:
    return max(1, *(d.bit_length() for d in deltas)) if deltas else 1


def _id_deltas(fmt: IdFormat, ids: Sequence[int]) -> list[int]:
    if fmt is IdFormat.LIST:
        return [((b - a) & ID_MASK) - 1 for a, b in itertools.pairwise(ids)]
    edges = _edges(ids)
    # an end is >= its start (delta >= 0); a start is >= the previous end + 2 (a gap exists)
    return [
        ((edges[k] - edges[k - 1]) & ID_MASK) - (0 if k % 2 else 2) for k in range(1, len(edges))
    ]


def _id_field_bits(fmt: IdFormat, ids: Sequence[int]) -> int | None:
    """Bits the ID field takes in ``fmt`` (after FIRST_SOURCE_ID), None if it cannot hold them."""
    if fmt is IdFormat.CONTIGUOUS:
        contiguous = all((b - a) & ID_MASK == 1 for a, b in itertools.pairwise(ids))
        return 0 if contiguous and len(ids) <= MAX_IDS else None
    if fmt is IdFormat.EDGES:
        n = len(_edges(ids))
        return 32 * (n - 1) if n <= MAX_IDS else None
    count = len(ids) if fmt is IdFormat.LIST else len(_edges(ids))
    if count > MAX_IDS:
        return None
    width = _delta_width(_id_deltas(fmt, ids))
    if width > MAX_DELTA_BITS:
        return None
    return 4 + width * (count - 1)


def id_format_fits(fmt: IdFormat, ids: Sequence[int]) -> bool:
    """Whether ``ids`` can be stored with I = ``fmt``."""
    return _id_field_bits(fmt, ids) is not None


def choose_id_format(ids: Sequence[int]) -> IdFormat | None:
    """The I value with the shortest encoding of ``ids`` (None if none can hold them)."""
    best: tuple[int, IdFormat] | None = None
    for fmt in IdFormat:
        bits = _id_field_bits(fmt, ids)
        if bits is not None and (best is None or _words(bits) < _words(best[0])):
            best = (bits, fmt)
    return None if best is None else best[1]


def _write_vector(w: Writer, ev: EncodingVector) -> None:
    ids = ev.source_ids
    if not ids:
        raise LocalProtocolError("an encoding vector needs at least one source ID")
    if any(not 0 <= i <= ID_MASK for i in ids):
        raise LocalProtocolError("source IDs are 32-bit")
    if ev.ccgi not in (CCGI_GF16, CCGI_GF256):
        raise LocalProtocolError(f"unsupported CCGI {ev.ccgi}")
    fmt = ev.id_format
    bits = _id_field_bits(fmt, ids)
    if bits is None:
        raise LocalProtocolError(f"source IDs cannot be stored as {fmt.name}")
    steps = [(b - a) & ID_MASK for a, b in itertools.pairwise(ids)]
    if any(step == 0 or step >= 1 << 31 for step in steps):
        raise LocalProtocolError("source IDs must increase (modulo 2^32)")
    id_field = b""
    if fmt is IdFormat.EDGES:
        id_field = b"".join(e.to_bytes(4, "big") for e in _edges(ids)[1:])
    elif fmt in (IdFormat.LIST, IdFormat.COMPRESSED_EDGES):
        deltas = _id_deltas(fmt, ids)
        width = _delta_width(deltas)
        bw = _BitWriter()
        bw.put(width - 1, 4)
        for d in deltas:
            bw.put(d, width)
        id_field = bw.padded_bytes()
    nb_ids = len(ids) if fmt in (IdFormat.CONTIGUOUS, IdFormat.LIST) else len(_edges(ids))
    coef_field = b""
    nb_coefs = 0
    if ev.coefficients is not None:
        coefs = ev.coefficients
        limit = 16 if ev.ccgi == CCGI_GF16 else 256
        if len(coefs) != len(ids) or len(coefs) > MAX_IDS:
            raise LocalProtocolError("one explicit coefficient per source ID, at most 255")
        if any(not 0 <= c < limit for c in coefs):
            raise LocalProtocolError("coefficient outside the field")
        bw = _BitWriter()
        width = 4 if ev.ccgi == CCGI_GF16 else 8
        for c in coefs:
            bw.put(c, width)
        coef_field = bw.padded_bytes()
        nb_coefs = len(coefs)
    total = 8 + len(id_field) + len(coef_field)
    if total > MAX_EV_BYTES:
        raise LocalProtocolError(f"encoding vector of {total} bytes exceeds EV_LEN")
    flags = (ev.ccgi << 4) | (fmt << 2) | ((ev.coefficients is not None) << 1) | ev.variable_length
    w.u8(total // 4).u8(flags).u8(nb_ids).u8(nb_coefs).u32(ids[0])
    w.bytes_(id_field).bytes_(coef_field)


def vector_source_ids(
    fmt: IdFormat, first: int, nb_ids: int, body: memoryview
) -> tuple[list[int], int]:
    """The source IDs an encoding vector's I field describes, and the bytes of ``body`` (the
    vector after its fixed 8 bytes) that the ID field used.

    Raises :class:`~zmesh.sansio.wire.RemoteProtocolError` subclasses exactly as
    :func:`parse_packet` does; the decoder's fast path for C = 0 coded packets shares it.
    """
    ids: list[int]
    pos = 0  # bytes of body used by the ID field
    if fmt is IdFormat.CONTIGUOUS:
        ids = [(first + k) & ID_MASK for k in range(nb_ids)]
    elif fmt is IdFormat.EDGES:
        if nb_ids % 2:
            raise MalformedInput("edge blocks need an even number of edges")
        pos = 4 * (nb_ids - 1)
        if pos > len(body):
            raise TruncatedInput("edge list longer than EV_LEN")
        edges = [first] + [
            int.from_bytes(body[4 * k : 4 * k + 4], "big") for k in range(nb_ids - 1)
        ]
        ids = _expand_edges(edges)
    else:
        # b_id (4 bits), then NB_IDS - 1 deltas of b_id + 1 bits, MSB first
        total = 8 * len(body)
        if total < 4:
            raise TruncatedInput("encoding vector bit field shorter than announced")
        acc = int.from_bytes(body, "big")
        width = ((acc >> (total - 4)) & 0xF) + 1
        bits = 4 + width * (nb_ids - 1)
        if bits > total:
            raise TruncatedInput("encoding vector bit field shorter than announced")
        mask = (1 << width) - 1
        deltas = [(acc >> (total - 4 - width * k)) & mask for k in range(1, nb_ids)]
        pos = _words(bits) * 4
        if fmt is IdFormat.LIST:
            ids = [first]
            for d in deltas:
                ids.append((ids[-1] + d + 1) & ID_MASK)
        else:
            if nb_ids % 2:
                raise MalformedInput("edge blocks need an even number of edges")
            edges = [first]
            for k, d in enumerate(deltas, start=1):
                edges.append((edges[-1] + d + (0 if k % 2 else 2)) & ID_MASK)
            ids = _expand_edges(edges)
    if len(ids) > MAX_IDS:
        raise OversizedInput(f"{len(ids)} source IDs in one combination (limit {MAX_IDS})")
    if (ids[-1] - ids[0]) & ID_MASK >= 1 << 31:
        raise MalformedInput("source IDs wrap more than half the ID space")
    return ids, pos


def _read_vector(r: Reader) -> EncodingVector:
    ev_len = r.u8()
    flags = r.u8()
    nb_ids = r.u8()
    nb_coefs = r.u8()
    first = r.u32()
    if ev_len < 2:
        raise MalformedInput(f"EV_LEN {ev_len} is shorter than the fixed part")
    body = r.view(ev_len * 4 - 8)
    ccgi = flags >> 4
    fmt = IdFormat((flags >> 2) & 0b11)
    explicit = bool(flags & 0b10)
    variable = bool(flags & 0b01)
    if ccgi not in (CCGI_GF16, CCGI_GF256):
        raise MalformedInput(f"unsupported CCGI {ccgi}")
    if nb_ids == 0:
        raise MalformedInput("encoding vector with no source IDs")
    ids, pos = vector_source_ids(fmt, first, nb_ids, body)
    coefficients: tuple[int, ...] | None = None
    if explicit:
        if nb_coefs != len(ids):
            raise MalformedInput(f"{nb_coefs} coefficients for {len(ids)} source IDs")
        width = 4 if ccgi == CCGI_GF16 else 8
        need = _words(width * nb_coefs) * 4
        if pos + need > len(body):
            raise TruncatedInput("coefficients longer than EV_LEN")
        br = _BitReader(body[pos : pos + need])
        coefficients = tuple(br.take(width) for _ in range(nb_coefs))
    elif nb_coefs:
        raise MalformedInput("NB_COEFS must be 0 when C = 0")
    return EncodingVector(ccgi, tuple(ids), coefficients, variable, fmt)


def _expand_edges(edges: Sequence[int]) -> list[int]:
    ids: list[int] = []
    prev_end: int | None = None
    for k in range(0, len(edges), 2):
        start, end = edges[k], edges[k + 1]
        run = (end - start) & ID_MASK
        if prev_end is not None and not 2 <= (start - prev_end) & ID_MASK < 1 << 31:
            raise MalformedInput("edge blocks overlap, touch or go backwards")
        if len(ids) + run + 1 > MAX_IDS:
            raise OversizedInput(f"edge blocks cover more than {MAX_IDS} source IDs")
        if start + run <= ID_MASK:
            ids.extend(range(start, start + run + 1))
        else:
            ids.extend((start + i) & ID_MASK for i in range(run + 1))
        prev_end = end
    return ids


# ---- common header -------------------------------------------------------------------------


def _write_header(w: Writer, h: CommonHeader) -> None:
    if len(h.cci) not in (0, 4, 8, 12):
        raise LocalProtocolError("CCI is 0, 32, 64 or 96 bits")
    ext = Writer()
    for e in h.extensions:
        if e.het >= 128:
            if len(e.content) != 3:
                raise LocalProtocolError("a fixed-length header extension has 3 content bytes")
            ext.u8(e.het).bytes_(e.content)
        else:
            size = 2 + len(e.content)
            if size % 4 or size > 255 * 4:
                raise LocalProtocolError("header extension length must be whole 32-bit words")
            ext.u8(e.het).u8(size // 4).bytes_(e.content)
    c = len(h.cci) // 4
    s = 1 if h.tsi is not None else 0
    hdr_len = 1 + c + s + len(ext) // 4
    if hdr_len > 255:
        raise LocalProtocolError("header longer than HDR_LEN can say")
    w.u8((VERSION << 4) | (c << 2) | (s << 1)).u8(0).u8(hdr_len).u8(h.packet_type)
    w.bytes_(h.cci)
    if h.tsi is not None:
        w.u32(h.tsi)
    w.bytes_(ext.getvalue())


def _read_header(r: Reader) -> CommonHeader:
    b0 = r.u8()
    r.u8()  # the low 8 reserved bits: ignored on receipt (RFC 9407 §5.1.1)
    hdr_len = r.u8()
    ptype = r.u8()
    version = b0 >> 4
    if version != VERSION:
        raise MalformedInput(f"Tetrys version {version}, expected {VERSION}")
    c = (b0 >> 2) & 0b11
    s = (b0 >> 1) & 1
    if hdr_len < 1 + c + s:
        raise MalformedInput(f"HDR_LEN {hdr_len} shorter than the CCI and TSI it announces")
    try:
        packet_type = PacketType(ptype)
    except ValueError:
        raise MalformedInput(f"unknown PKT_TYPE {ptype}") from None
    cci = r.bytes_(4 * c)
    tsi = r.u32() if s else None
    ext_view = r.view(4 * (hdr_len - 1 - c - s))
    extensions: list[HeaderExtension] = []
    er = Reader(ext_view)
    while not er.at_end():
        het = er.u8()
        if het >= 128:
            extensions.append(HeaderExtension(het, er.bytes_(3)))
            continue
        hel = er.u8()
        if hel == 0:
            raise MalformedInput("header extension with HEL 0")
        extensions.append(HeaderExtension(het, er.bytes_(4 * hel - 2)))
    return CommonHeader(packet_type, cci, tsi, tuple(extensions))


# ---- packets -------------------------------------------------------------------------------


def encode_packet(packet: Packet) -> bytes:
    """The datagram for ``packet``. Raises :class:`LocalProtocolError` on unencodable fields."""
    w = Writer()
    _write_header(w, packet.header)
    if isinstance(packet, SourcePacket):
        if packet.header.packet_type is not PacketType.SOURCE:
            raise LocalProtocolError("source packet with a non-source header")
        w.u32(packet.source_id).bytes_(packet.symbol)
    elif isinstance(packet, CodedPacket):
        if packet.header.packet_type is not PacketType.CODED:
            raise LocalProtocolError("coded packet with a non-coded header")
        w.u32(packet.coded_id)
        _write_vector(w, packet.vector)
        w.bytes_(packet.symbol)
    else:
        if packet.header.packet_type is not PacketType.WINDOW_UPDATE:
            raise LocalProtocolError("window update with another packet type")
        if len(packet.sack) > 255:
            raise LocalProtocolError("SACK bitmap longer than 255 bytes")
        w.u32(packet.nb_missing).u32(packet.nb_not_used).u32(packet.first_source_id)
        w.u8(packet.plr).u8(len(packet.sack)).u16(0)
        w.bytes_(packet.sack).zeros(-len(packet.sack) % 4)
    return w.getvalue()


def parse_packet(data: bytes | bytearray | memoryview) -> Packet:
    """Parse one Tetrys datagram. Raises a ``RemoteProtocolError`` subclass if malformed."""
    if len(data) > MAX_PACKET:
        raise OversizedInput(f"datagram of {len(data)} bytes")
    r = Reader(data)
    header = _read_header(r)
    if header.packet_type is PacketType.SOURCE:
        source_id = r.u32()
        return SourcePacket(source_id, r.rest().tobytes(), header)
    if header.packet_type is PacketType.CODED:
        coded_id = r.u32()
        vector = _read_vector(r)
        return CodedPacket(coded_id, vector, r.rest().tobytes(), header)
    nb_missing = r.u32()
    nb_not_used = r.u32()
    first = r.u32()
    plr = r.u8()
    sack_size = r.u8()
    r.u16()  # reserved
    sack = r.bytes_(sack_size)
    r.skip(-sack_size % 4)
    r.expect_end()
    return WindowUpdate(nb_missing, nb_not_used, first, plr, sack, header)
