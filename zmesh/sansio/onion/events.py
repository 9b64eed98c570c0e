"""What :class:`~zmesh.sansio.onion.node.OnionNode` tells its driver, and the handles it hands out.

Events are frozen dataclasses named in the past tense (DESIGN.md §3); the driver drains them
with ``OnionNode.next_event()`` after every input.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TypeAlias

from zmesh.sansio.onion.cells import DestroyReason, RelayKind

__all__ = [
    "LinkId",
    "RouteHop",
    "CircuitRole",
    "CircuitHandle",
    "DestroyOrigin",
    "CircuitBuilt",
    "CircuitOpened",
    "RelayMessageReceived",
    "RelayMessagesReceived",
    "CircuitDestroyed",
    "LinkNeeded",
    "CellDropped",
    "OnionEvent",
]

#: Whatever the driver uses to name a link (an object, a port number, a peer name). It is
#: hashed once per cell on the relay fast path: prefer objects, ints or strings to tuples.
LinkId: TypeAlias = Hashable


@dataclass(frozen=True)
class RouteHop:
    """One hop of a path the client chose: who, and which of its epoch keys to use."""

    node_id: bytes
    sphinx_public_key: bytes = field(repr=False)
    epoch: int


class CircuitRole(enum.Enum):
    CLIENT = "client"  # this node built the circuit
    EXIT = "exit"  # the circuit ends at this node


@dataclass(frozen=True)
class CircuitHandle:
    """Names one circuit end at this node; opaque to the application, valid until destroyed."""

    number: int
    role: CircuitRole

    def __hash__(self) -> int:
        # Numbers are unique per node whatever the role; the generated hash would hash the
        # role enum too (two Python-level calls), and the runtime looks a handle up per cell.
        return self.number


class DestroyOrigin(enum.Enum):
    LOCAL = "local"  # this node decided (destroy_circuit, a timeout, a failed tag)
    REMOTE = "remote"  # a DESTROY cell arrived (from a hop or the other end)
    LINK = "link"  # the link the circuit ran on went down here


@dataclass(frozen=True)
class CircuitBuilt:
    circuit: CircuitHandle
    hops: tuple[bytes, ...]  # node ids, first hop first
    rtt: float  # seconds from CREATE sent to CREATED checked


@dataclass(frozen=True)
class CircuitOpened:
    """A circuit now ends at this node (exit role); reply with ``send_relay_message``."""

    circuit: CircuitHandle


@dataclass(frozen=True)
class RelayMessageReceived:
    circuit: CircuitHandle
    kind: RelayKind
    payload: bytes


@dataclass(frozen=True)
class RelayMessagesReceived:
    """Several relay messages of one kind, in order, from one run of cells (only with
    ``OnionConfig.batch_events``: one event per run instead of one per cell)."""

    circuit: CircuitHandle
    kind: RelayKind
    payloads: tuple[bytes, ...]


@dataclass(frozen=True)
class CircuitDestroyed:
    circuit: CircuitHandle
    reason: DestroyReason
    origin: DestroyOrigin


@dataclass(frozen=True)
class LinkNeeded:
    """A relay must forward a CREATE to ``peer_id`` and has no link to it: connect, then call
    ``link_up``; the CREATE waits (bounded, with a timeout)."""

    peer_id: bytes


@dataclass(frozen=True)
class CellDropped:
    """A cell was dropped without an error (late cell on a closed circuit, full queue)."""

    link: LinkId
    reason: str


OnionEvent: TypeAlias = (
    CircuitBuilt
    | CircuitOpened
    | RelayMessageReceived
    | RelayMessagesReceived
    | CircuitDestroyed
    | LinkNeeded
    | CellDropped
)
