"""Onion routing (DESIGN.md §2, §4): Sphinx circuit setup, fixed-size layered cells, node roles.

Public face of the room. ``OnionNode`` is the per-node state machine (client, relay and exit at
once); cells, their layering and the per-hop key exchange live in ``cells``, ``layers`` and
``session``; Sphinx itself in ``sphinx``, ``commands``, ``replay`` and ``keyring``.
"""

from zmesh.sansio.onion.cells import (
    CELL_SIZE,
    MAX_HOPS,
    MAX_RELAY_PAYLOAD,
    CellCommand,
    DestroyReason,
    RelayKind,
    UnknownCircuit,
)
from zmesh.sansio.onion.events import (
    CellDropped,
    CircuitBuilt,
    CircuitDestroyed,
    CircuitHandle,
    CircuitOpened,
    CircuitRole,
    DestroyOrigin,
    LinkId,
    LinkNeeded,
    OnionEvent,
    RelayMessageReceived,
    RelayMessagesReceived,
    RouteHop,
)
from zmesh.sansio.onion.node import (
    AEAD_NAMES,
    CircuitInfo,
    CircuitState,
    NodeStats,
    OnionConfig,
    OnionNode,
    RelayedCircuitInfo,
)

__all__ = [
    "AEAD_NAMES",
    "CELL_SIZE",
    "MAX_HOPS",
    "MAX_RELAY_PAYLOAD",
    "CellCommand",
    "CellDropped",
    "CircuitBuilt",
    "CircuitDestroyed",
    "CircuitHandle",
    "CircuitInfo",
    "CircuitOpened",
    "CircuitRole",
    "CircuitState",
    "DestroyOrigin",
    "DestroyReason",
    "LinkId",
    "LinkNeeded",
    "NodeStats",
    "OnionConfig",
    "OnionEvent",
    "OnionNode",
    "RelayKind",
    "RelayMessageReceived",
    "RelayMessagesReceived",
    "RelayedCircuitInfo",
    "RouteHop",
    "UnknownCircuit",
]
