"""Streams multiplexed on a circuit: BEGIN/CONNECTED/DATA/END/RESET/SENDME (DESIGN.md §2).

The wire format is in ``docs/wire/streams.md``; :class:`StreamMux` is the sans-IO state machine
one circuit end runs.
"""

from zmesh.sansio.streams.messages import (
    CIRCUIT_STREAM_ID,
    HEADER_SIZE,
    MIN_MESSAGE_SIZE,
    AddressType,
    Begin,
    Connected,
    Data,
    End,
    Message,
    MessageType,
    Reset,
    Sendme,
    encode_message,
    parse_message,
    validate_hostname,
)
from zmesh.sansio.streams.mux import (
    DEFAULT_CIRCUIT_WINDOW,
    DEFAULT_MAX_STREAMS,
    DEFAULT_STREAM_WINDOW,
    BeginRequested,
    DataReceived,
    EndReceived,
    Role,
    SendWindowOpened,
    StreamConnected,
    StreamEvent,
    StreamMux,
    StreamReset,
    StreamState,
)
from zmesh.sansio.streams.reasons import ResetReason, StreamOpenFailed

__all__ = [
    "CIRCUIT_STREAM_ID",
    "HEADER_SIZE",
    "MIN_MESSAGE_SIZE",
    "AddressType",
    "Begin",
    "Connected",
    "Data",
    "End",
    "Message",
    "MessageType",
    "Reset",
    "Sendme",
    "encode_message",
    "parse_message",
    "validate_hostname",
    "DEFAULT_CIRCUIT_WINDOW",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_STREAM_WINDOW",
    "BeginRequested",
    "DataReceived",
    "EndReceived",
    "Role",
    "SendWindowOpened",
    "StreamConnected",
    "StreamEvent",
    "StreamMux",
    "StreamReset",
    "StreamState",
    "ResetReason",
    "StreamOpenFailed",
]
