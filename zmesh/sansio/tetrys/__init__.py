"""Tetrys (RFC 9407): on-the-fly network coding for zmesh's peer links.

- :mod:`.gf256`, :mod:`.gf16`: the two coefficient fields (region kernels in ``zmesh._accel``);
- :mod:`.coefficients`: CCGI values and the Vandermonde coefficient generator;
- :mod:`.packets`: the RFC 9407 §5 wire format;
- :mod:`.encoder` / :mod:`.decoder`: the elastic-window encoder and the on-the-fly decoder;
- :mod:`.rate`: the loss-EMA repair-ratio controller;
- :mod:`.link`: :class:`TetrysLink`, the cell <-> datagram adapter the WebRTC link uses.

Wire layout: ``docs/wire/tetrys.md``; design and rate controller: ``docs/tetrys-design.md``.
"""

from zmesh.sansio.tetrys.coefficients import CCGI_GF16, CCGI_GF256
from zmesh.sansio.tetrys.config import TetrysConfig
from zmesh.sansio.tetrys.decoder import (
    DecoderEvent,
    DecoderStats,
    SymbolDelivered,
    SymbolsLost,
    TetrysDecoder,
)
from zmesh.sansio.tetrys.encoder import EncoderStats, TetrysEncoder
from zmesh.sansio.tetrys.link import (
    CellReceived,
    CellsLost,
    LinkEvent,
    TetrysLink,
    TetrysLinkStats,
)
from zmesh.sansio.tetrys.packets import (
    CodedPacket,
    CommonHeader,
    EncodingVector,
    HeaderExtension,
    IdFormat,
    Packet,
    PacketType,
    SourcePacket,
    WindowUpdate,
    encode_packet,
    parse_packet,
)
from zmesh.sansio.tetrys.rate import RateConfig, RateController

__all__ = [
    "CCGI_GF16",
    "CCGI_GF256",
    "CellReceived",
    "CellsLost",
    "CodedPacket",
    "CommonHeader",
    "DecoderEvent",
    "DecoderStats",
    "EncoderStats",
    "EncodingVector",
    "HeaderExtension",
    "IdFormat",
    "LinkEvent",
    "Packet",
    "PacketType",
    "RateConfig",
    "RateController",
    "SourcePacket",
    "SymbolDelivered",
    "SymbolsLost",
    "TetrysConfig",
    "TetrysDecoder",
    "TetrysEncoder",
    "TetrysLink",
    "TetrysLinkStats",
    "WindowUpdate",
    "encode_packet",
    "parse_packet",
]
