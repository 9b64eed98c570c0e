"""The link interface every transport between two neighbouring nodes implements.

A link carries fixed-size onion cells between two authenticated nodes, reliably and in order
(the WebRTC link rebuilds order and loss on its own, with Tetrys). The WebSocket-over-HTTPS
link and the WebRTC DataChannel link both implement :class:`Link`; the node runtime never
knows which one it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class LinkClosed(Exception):
    """The link is gone (closed by either side, or failed); ``reason`` says why."""

    def __init__(self, reason: str = "closed") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class LinkStats:
    """Counters a link keeps for ``zmesh status``; all monotonic except ``rtt``."""

    cells_sent: int = 0
    cells_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    dropped_malformed: int = 0
    rtt: float | None = None  # seconds, latest keepalive round trip
    fec_repair_ratio: float | None = None  # Tetrys links only
    extra: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Link(Protocol):
    """One authenticated, reliable, ordered cell pipe to a neighbour."""

    @property
    def peer_id(self) -> bytes:
        """The neighbour's 32-byte node id (SHA-256 of its Ed25519 identity key), verified."""
        ...

    @property
    def kind(self) -> str:
        """``"websocket"`` or ``"webrtc"``."""
        ...

    @property
    def stats(self) -> LinkStats: ...

    async def send_cell(self, cell: bytes) -> None:
        """Queue one cell. Blocks while the bounded send queue is full (back-pressure).

        Raises :class:`LinkClosed` once the link is closed.
        """
        ...

    async def receive_cell(self) -> bytes:
        """The next cell from the neighbour; raises :class:`LinkClosed` when the link ends."""
        ...

    async def aclose(self) -> None:
        """Close gracefully; idempotent and safe under cancellation."""
        ...
