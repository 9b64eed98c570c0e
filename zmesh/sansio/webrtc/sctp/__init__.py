"""SCTP over DTLS for WebRTC data channels (RFC 9260, RFC 8261, RFC 3758, RFC 6525), sans-IO.

Modules, by concept: :mod:`.packet` (common header, CRC32c), :mod:`.chunks` (chunk codec),
:mod:`.tsn` (serial arithmetic, received-TSN tracking), :mod:`.cookie` (State Cookie),
:mod:`.congestion` (RTO, cwnd), :mod:`.send_queue` (outbound scheduling), :mod:`.reassembly`
(inbound streams), :mod:`.streams_reset` (RE-CONFIG), :mod:`.association` (the state machine).
"""

from .association import (
    AssociationState,
    BadChecksum,
    SctpAssociation,
    SctpStats,
    SendBufferFull,
)
from .config import MAX_MESSAGE_SIZE, SctpConfig
from .events import (
    AssociationClosed,
    AssociationEstablished,
    BufferedAmountLow,
    DataReceived,
    SctpEvent,
    StreamsReset,
    StreamsResetFailed,
)
from .packet import CRC32C_BACKEND

__all__ = [
    "CRC32C_BACKEND",
    "MAX_MESSAGE_SIZE",
    "AssociationClosed",
    "AssociationEstablished",
    "AssociationState",
    "BadChecksum",
    "BufferedAmountLow",
    "DataReceived",
    "SctpAssociation",
    "SctpConfig",
    "SctpEvent",
    "SctpStats",
    "SendBufferFull",
    "StreamsReset",
    "StreamsResetFailed",
]
