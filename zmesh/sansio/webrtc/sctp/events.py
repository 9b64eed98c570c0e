"""Events an :class:`~zmesh.sansio.webrtc.sctp.association.SctpAssociation` reports.

Frozen dataclasses named in the past tense (DESIGN.md §3); drained with ``next_event()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "AssociationClosed",
    "AssociationEstablished",
    "BufferedAmountLow",
    "DataReceived",
    "SctpEvent",
    "StreamsReset",
    "StreamsResetFailed",
]


@dataclass(frozen=True, slots=True)
class AssociationEstablished:
    """The four-way handshake finished; data can flow."""

    outbound_streams: int
    inbound_streams: int
    peer_supports_partial_reliability: bool


@dataclass(frozen=True, slots=True)
class DataReceived:
    """One complete user message (reassembled, and in order if ``ordered``)."""

    stream_id: int
    ppid: int
    data: bytes
    ordered: bool


@dataclass(frozen=True, slots=True)
class StreamsReset:
    """Streams were reset (RFC 6525). ``incoming``: the peer reset its outgoing streams
    (our incoming direction); otherwise our own outgoing reset request succeeded."""

    stream_ids: tuple[int, ...]
    incoming: bool


@dataclass(frozen=True, slots=True)
class StreamsResetFailed:
    """The peer refused our outgoing reset request for these streams."""

    stream_ids: tuple[int, ...]
    result: int


@dataclass(frozen=True, slots=True)
class BufferedAmountLow:
    """A stream's queued-but-unsent bytes fell to its low-water mark (room to ``send`` again)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class AssociationClosed:
    """The association ended: ``reason`` says why; ``by_peer`` whether the peer ended it."""

    reason: str
    by_peer: bool


SctpEvent: TypeAlias = (
    AssociationEstablished
    | DataReceived
    | StreamsReset
    | StreamsResetFailed
    | BufferedAmountLow
    | AssociationClosed
)
