"""The per-node onion state machine: client, relay and exit roles over links of fixed-size cells.

One :class:`OnionNode` per node plays every role at once. Its inputs are cells from reliable,
ordered links (``receive_cell``, or ``receive_cells`` for a batch), link changes (``link_up`` /
``link_down`` / ``link_failed``), the clock (``handle_timer``) and the application's commands
(``build_circuit``, ``send_relay_message(s)``, ``destroy_circuit``); its outputs are
``cells_to_send()`` and ``next_event()``. It never reads a
clock or a socket (DESIGN.md §3).

Circuit life (formats in ``docs/wire/cells.md``, threat model in ``docs/threat-model.md``):

- **Build** (client): one Sphinx header (``sphinx.py``, zmesh geometry) carries a
  ``CircuitSetup`` per hop. It goes out in a CREATE on the link to the first hop; each relay
  unwraps its layer, answers the ephemeral key exchange (``session.py``) and forwards the next
  header in its own CREATE, under a fresh circuit id on the next link. The last hop answers with
  CREATED; every relay wraps the reply on the way back. One round trip builds the circuit.
- **Data**: RELAY cells, layered per hop (``layers.py``). Every hop forwards every cell; only
  the two ends hold plaintext (the client and the last hop). A failed tag anywhere is treated
  as tagging: that hop destroys the circuit in both directions and the error is raised.
- **Teardown**: DESTROY travels both ways hop by hop; losing a link destroys every circuit on
  it; a client build and a relay's wait for a link or a CREATED are bounded by timeouts.

Errors: malformed or hostile cells raise :class:`~zmesh.sansio.wire.ProtocolError` subclasses
and leave the circuit tables as they were, with two deliberate exceptions that are the
protocol's defined response: a failed tag (or a malformed message under a valid tag) destroys
that circuit before the error is raised, and a CREATE that cannot be accepted queues a DESTROY
for its circuit id so the sender does not wait for a timeout. Every table and queue is bounded
by :class:`OnionConfig`.
"""

from __future__ import annotations

import enum
import logging
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from zmesh._accel import cells as kernels
from zmesh.sansio.onion.cells import (
    CELL_HEADER,
    CELL_SIZE,
    CIRCUIT_ID_HIGH_BIT,
    DATA_SIZE,
    MAX_HOPS,
    MAX_RELAY_PAYLOAD,
    RELAY_KINDS,
    CellCommand,
    DestroyReason,
    RelayKind,
    UnknownCircuit,
    encode_cell,
    encode_create_body,
    encode_destroy_body,
    encode_relay_message,
    parse_cell,
    parse_create_body,
    parse_destroy_body,
    parse_relay_message,
)
from zmesh.sansio.onion.commands import NODE_ID_LENGTH, CellAead, CircuitSetup
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
from zmesh.sansio.onion.keyring import SphinxKeyRing
from zmesh.sansio.onion.layers import (
    LAYER_PLAIN_SIZE,
    MAX_CELLS_PER_DIRECTION,
    MESSAGE_OFFSET,
    BlockPipe,
    ClientLayers,
    ExitLayers,
    RelayLayers,
)
from zmesh.sansio.onion.session import (
    ClientHopHandshake,
    HopResponse,
    derive_reply_key,
    respond,
    unwrap_created,
    wrap_created,
)
from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY, Geometry, PathHop, create_header
from zmesh.sansio.wire import (
    DEFAULT_RANDOM,
    AuthenticationFailed,
    LocalProtocolError,
    MalformedInput,
    ProtocolError,
    RandomSource,
    ReplayedInput,
)

__all__ = [
    "AEAD_NAMES",
    "OnionConfig",
    "NodeStats",
    "CircuitInfo",
    "CircuitState",
    "OnionNode",
    "RelayedCircuitInfo",
]

log = logging.getLogger(__name__)

#: ``build_circuit(aead=...)`` names.
AEAD_NAMES: Final[dict[str, CellAead]] = {
    "chacha20-poly1305": CellAead.CHACHA20_POLY1305,
    "aes-256-gcm": CellAead.AES_256_GCM,
}

_RELAY: Final = int(CellCommand.RELAY)
_HEADER_PACK: Final = CELL_HEADER.pack
_MESSAGE_HEADER: Final = struct.Struct("!BH")  # relay message: kind, length (cells.md §4)
_MESSAGE_UNPACK: Final = _MESSAGE_HEADER.unpack_from
assert MESSAGE_OFFSET == 32 and LAYER_PLAIN_SIZE == 1003  # literals in _end_fn
_ZERO_FILL: Final = bytes(DATA_SIZE)
_N_KINDS: Final = len(RELAY_KINDS)


def _relay_key(circuit_id: int) -> bytes:
    return _HEADER_PACK(circuit_id, _RELAY)


_MAX_CIRCUIT_ID: Final = CIRCUIT_ID_HIGH_BIT - 1


def _no_fast(header: bytes) -> None:
    """The fast-path lookup for a link that is not up: every cell takes the checked path."""
    return None


@dataclass(frozen=True)
class OnionConfig:
    """Bounds and timeouts. Defaults suit a home node relaying a few thousand circuits."""

    build_timeout: float = 15.0  # client: CREATE sent → CREATED checked; relay: waiting CREATED
    link_wait_timeout: float = 10.0  # relay: a CREATE waiting for link_up to its next hop
    max_circuits: int = 4096  # circuit ends and relayed circuits at this node, all roles
    max_waiting_for_link: int = 64  # CREATEs parked until a link comes up
    max_queued_cells: int = 4096  # data cells queued (all links) until cells_to_send()
    max_events: int = 8192  # undrained events; receive_cell refuses input beyond this
    max_closed_remembered: int = 1024  # recently closed ids, so late cells are not errors
    geometry: Geometry = ZMESH_GEOMETRY
    min_hops: int = 2
    # True: a run of same-kind relay messages from receive_block is one RelayMessagesReceived
    # (the runtime's choice: one event per run, not per cell). False: one event per message.
    batch_events: bool = False

    def __post_init__(self) -> None:
        if self.geometry.max_hops != MAX_HOPS:
            raise LocalProtocolError(f"cells reserve {MAX_HOPS} slots; geometry must match")
        if not 1 <= self.min_hops <= MAX_HOPS:
            raise LocalProtocolError("min_hops out of range")
        for name in ("max_circuits", "max_waiting_for_link", "max_queued_cells", "max_events"):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be at least 1")


class CircuitState(enum.Enum):
    BUILDING = "building"  # client: CREATE sent, waiting for CREATED
    WAITING_FOR_LINK = "waiting-for-link"  # relay: next hop has no link yet
    EXTENDING = "extending"  # relay: CREATE forwarded, waiting for CREATED
    OPEN = "open"


@dataclass
class NodeStats:
    """Counters for ``zmesh status`` and the demo. Cells, not bytes: every cell is 1024 B."""

    cells_received: int = 0
    cells_sent: int = 0
    relayed_forward: int = 0
    relayed_backward: int = 0
    link_padding_received: int = 0
    circuits_built: int = 0  # as client
    circuits_opened: int = 0  # as exit
    circuits_relayed: int = 0  # as middle hop (CREATE accepted)
    circuits_destroyed: int = 0
    tag_failures: int = 0
    creates_rejected: int = 0
    cells_dropped: int = 0


@dataclass(frozen=True)
class CircuitInfo:
    """A snapshot of one circuit end, for status displays."""

    circuit: CircuitHandle
    state: CircuitState
    hops: tuple[bytes, ...]  # client: the path; exit: empty (the exit knows only its link)
    cells_sent: int
    cells_received: int
    rtt: float | None


@dataclass(frozen=True)
class RelayedCircuitInfo:
    """A snapshot of one circuit this node relays (it sees only its two neighbours)."""

    previous_peer: bytes
    next_peer: bytes
    state: CircuitState
    cells_forward: int
    cells_backward: int


# -- per-circuit records -----------------------------------------------------------------------


@dataclass(eq=False)
class _Link:
    link: LinkId
    peer_id: bytes
    our_high_bit: int  # CIRCUIT_ID_HIGH_BIT or 0: our half of the circuit id space
    next_id: int = 1


@dataclass(eq=False)
class _ClientCircuit:
    handle: CircuitHandle
    link: LinkId
    circuit_id: int
    hops: tuple[bytes, ...]
    handshakes: tuple[ClientHopHandshake, ...]
    secrets: tuple[bytes, ...] = field(repr=False)
    started: float
    out_header: bytes
    state: CircuitState = CircuitState.BUILDING
    layers: ClientLayers | None = None
    rtt: float | None = None
    cells_sent: int = 0
    cells_received: int = 0


@dataclass(eq=False)
class _ExitCircuit:
    handle: CircuitHandle
    link: LinkId
    circuit_id: int
    layers: ExitLayers
    out_header: bytes
    cells_sent: int = 0
    cells_received: int = 0


@dataclass(eq=False)
class _RelayCircuit:
    prev_link: LinkId
    prev_id: int
    prev_header: bytes  # RELAY header toward the previous hop
    next_peer: bytes
    response: HopResponse
    layers: RelayLayers
    epoch: int
    pending_header: bytes | None  # the next hop's Sphinx header, until forwarded
    state: CircuitState = CircuitState.WAITING_FOR_LINK
    next_link: LinkId | None = None
    next_id: int = 0
    next_header: bytes = b""  # RELAY header toward the next hop


_Circuit = _ClientCircuit | _ExitCircuit | _RelayCircuit


class OnionNode:
    """One node's onion layer: every circuit it originates, relays or terminates."""

    def __init__(
        self,
        node_id: bytes,
        keyring: SphinxKeyRing,
        *,
        random: RandomSource = DEFAULT_RANDOM,
        config: OnionConfig | None = None,
    ) -> None:
        if len(node_id) != NODE_ID_LENGTH:
            raise LocalProtocolError(f"node ids are {NODE_ID_LENGTH} bytes")
        self.node_id = bytes(node_id)
        self.keyring = keyring
        self.config = config or OnionConfig()
        self._counters = NodeStats()
        self._received = 0
        self._link_padding = 0
        self._dropped = 0
        # Relayed-cell counts of circuits already torn down (live ones count in their layers).
        self._relayed_closed = [0, 0]
        self._random = random
        self._links: dict[LinkId, _Link] = {}
        self._link_by_peer: dict[bytes, LinkId] = {}
        # (link, circuit id) -> (circuit, True if cells arriving here travel forward).
        self._table: dict[tuple[LinkId, int], tuple[_Circuit, bool]] = {}
        # Open circuits: link -> RELAY cell header (cell[0:5]) -> per-cell closure. A relayed
        # circuit's closure forwards the cell; a circuit end's opens it and emits the message.
        self._fast: dict[LinkId, dict[bytes, Callable[[bytes], None]]] = {}
        self._fast_get = self._fast.get
        # The same circuits' run fast paths (receive_block): header -> BlockPipe.
        self._runs: dict[LinkId, dict[bytes, BlockPipe]] = {}
        self._relays: set[_RelayCircuit] = set()
        self._queue_limit = self.config.max_queued_cells
        self._event_limit = self.config.max_events
        self._ends: dict[CircuitHandle, _ClientCircuit | _ExitCircuit] = {}
        self._relay_count = 0
        self._waiting: dict[_RelayCircuit, float] = {}  # relay circuits parked for a link
        self._deadlines: dict[_Circuit, float] = {}
        self._closed: OrderedDict[tuple[LinkId, int], None] = OrderedDict()
        # Queued output: (link, one cell) or (link, a run of whole cells); _out_extra counts
        # the cells beyond one per entry, so the queue bound is in cells.
        self._out: deque[tuple[LinkId, bytes]] = deque()
        self._out_extra = 0
        self._events: deque[OnionEvent] = deque()
        self._next_handle = 1

    # -- links -------------------------------------------------------------------------------

    def link_up(self, link: LinkId, peer_id: bytes, now: float) -> None:
        """A reliable, ordered link to ``peer_id`` is ready; parked CREATEs for it go out."""
        if link in self._links:
            raise LocalProtocolError(f"link {link!r} is already up")
        peer_id = bytes(peer_id)
        if peer_id == self.node_id:
            raise LocalProtocolError("a link to ourselves")
        high = CIRCUIT_ID_HIGH_BIT if self.node_id < peer_id else 0
        self._links[link] = _Link(link, peer_id, high)
        self._fast[link] = {}
        self._runs[link] = {}
        self._link_by_peer[peer_id] = link
        for relay in [r for r in self._waiting if r.next_peer == peer_id]:
            del self._waiting[relay]
            self._extend(relay, link, now)

    def link_down(self, link: LinkId, now: float) -> None:
        """The link is gone: destroy every circuit on it, telling the other side of each."""
        state = self._links.pop(link, None)
        if state is None:
            return
        if self._link_by_peer.get(state.peer_id) == link:
            del self._link_by_peer[state.peer_id]
        for key in [k for k in self._table if k[0] == link]:
            entry = self._table.get(key)
            if entry is not None:
                self._teardown(entry[0], DestroyReason.LINK_LOST, DestroyOrigin.LINK, skip=link)
        self._fast.pop(link, None)
        self._runs.pop(link, None)
        if any(lk == link for lk, _ in self._out):
            # Rebuild in place: the relay closures hold this deque's append.
            kept = [item for item in self._out if item[0] != link]
            self._out.clear()
            self._out.extend(kept)
            self._out_extra = sum(len(data) // CELL_SIZE - 1 for _, data in kept)

    def link_failed(self, peer_id: bytes, now: float) -> None:
        """A link to ``peer_id`` (asked for by ``LinkNeeded``) could not be set up: every
        CREATE parked for it fails now (DESTROY ``NO_ROUTE`` back toward its client) instead
        of at the link-wait timeout. A no-op when nothing waits for that peer."""
        peer_id = bytes(peer_id)
        for relay in [r for r in self._waiting if r.next_peer == peer_id]:
            self._teardown(relay, DestroyReason.NO_ROUTE, DestroyOrigin.LOCAL)

    def send_link_padding(self, link: LinkId) -> None:
        """Queue one PADDING cell (random body) on ``link``: cover traffic a link observer
        cannot tell from a data cell; the peer counts and drops it."""
        if link not in self._links:
            raise LocalProtocolError(f"link {link!r} is not up")
        if self.queued_cells >= self._queue_limit:
            raise LocalProtocolError("cell queue full")
        self._queue(link, encode_cell(0, CellCommand.PADDING, self._random(CELL_SIZE - 5)))

    def linked_peers(self) -> dict[bytes, LinkId]:
        return dict(self._link_by_peer)

    # -- outputs -----------------------------------------------------------------------------

    @property
    def queued_cells(self) -> int:
        """Cells waiting for ``cells_to_send`` / ``blocks_to_send`` (bounded by
        ``max_queued_cells``, plus at most two control cells per circuit)."""
        return len(self._out) + self._out_extra

    def cells_to_send(self) -> list[tuple[LinkId, bytes]]:
        """Every queued cell, in order, one 1024-byte cell per entry."""
        out: list[tuple[LinkId, bytes]] = []
        for link, data in self._out:
            if len(data) == CELL_SIZE:
                out.append((link, data))
            else:
                out.extend((link, data[i : i + CELL_SIZE]) for i in range(0, len(data), CELL_SIZE))
        self._out.clear()
        self._out_extra = 0
        self._counters.cells_sent += len(out)
        return out

    def blocks_to_send(self) -> list[tuple[LinkId, bytes]]:
        """Every queued cell, in order, as it was queued: each entry's bytes hold one or more
        whole cells for that link (a run a kernel produced stays one buffer). Same cells as
        :meth:`cells_to_send`, without cutting runs up; a driver uses one or the other."""
        out = list(self._out)
        self._counters.cells_sent += len(out) + self._out_extra
        self._out.clear()
        self._out_extra = 0
        return out

    def next_event(self) -> OnionEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = list(self._deadlines.values())
        ring = self.keyring.get_timer()
        if ring is not None:
            deadlines.append(ring)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        self.keyring.handle_timer(now)
        for circuit in [c for c, at in self._deadlines.items() if at <= now]:
            if circuit not in self._deadlines:
                continue  # torn down as a side effect of an earlier one
            waiting = isinstance(circuit, _RelayCircuit) and circuit in self._waiting
            reason = DestroyReason.NO_ROUTE if waiting else DestroyReason.TIMEOUT
            self._teardown(circuit, reason, DestroyOrigin.LOCAL)

    # -- client commands ---------------------------------------------------------------------

    def build_circuit(
        self, path: Sequence[RouteHop], now: float, *, aead: str = "chacha20-poly1305"
    ) -> CircuitHandle:
        """Send one CREATE that sets up every hop of ``path``; ``CircuitBuilt`` follows.

        ``path[0]`` must have a link up. Every hop's key must be of the same epoch: relays
        forward the client's epoch hint, they cannot know another node's key schedule.
        """
        if not self.config.min_hops <= len(path) <= MAX_HOPS:
            raise LocalProtocolError(f"paths have {self.config.min_hops}..{MAX_HOPS} hops")
        if aead not in AEAD_NAMES:
            raise LocalProtocolError(f"unknown cell AEAD {aead!r}; choose {sorted(AEAD_NAMES)}")
        epochs = {hop.epoch for hop in path}
        if len(epochs) != 1:
            raise LocalProtocolError("every hop's Sphinx key must be of the same epoch")
        ids = [bytes(hop.node_id) for hop in path]
        if len(set(ids)) != len(ids) or self.node_id in ids:
            raise LocalProtocolError("a path may not repeat a node or include this node")
        link = self._link_by_peer.get(ids[0])
        if link is None:
            raise LocalProtocolError("no link up to the first hop")
        self._check_room(link)
        cipher = AEAD_NAMES[aead]
        handshakes = tuple(
            ClientHopHandshake(is_exit=i == len(path) - 1, aead=cipher, random=self._random)
            for i in range(len(path))
        )
        created = create_header(
            self.config.geometry,
            [
                PathHop(node_id=hop.node_id, public_key=hop.sphinx_public_key, commands=(hs.setup,))
                for hop, hs in zip(path, handshakes, strict=True)
            ],
            self._random,
        )
        body = encode_create_body(epochs.pop(), created.header, self._random)
        circuit_id = self._allocate_id(link)
        handle = self._new_handle(CircuitRole.CLIENT)
        circuit = _ClientCircuit(
            handle=handle,
            link=link,
            circuit_id=circuit_id,
            hops=tuple(ids),
            handshakes=handshakes,
            secrets=created.shared_secrets,
            started=now,
            out_header=CELL_HEADER.pack(circuit_id, _RELAY),
        )
        self._table[(link, circuit_id)] = (circuit, False)
        self._ends[handle] = circuit
        self._deadlines[circuit] = now + self.config.build_timeout
        self._queue(link, encode_cell(circuit_id, CellCommand.CREATE, body))
        return handle

    def send_relay_message(
        self,
        circuit: CircuitHandle,
        kind: RelayKind,
        payload: bytes | bytearray | memoryview,
        now: float,
    ) -> None:
        """Send one relay message (one cell) to the circuit's other end."""
        end = self._open_end(circuit)
        plaintext = encode_relay_message(kind, payload)
        if self.queued_cells >= self._queue_limit:
            raise LocalProtocolError("cell queue full: check circuit_send_capacity first")
        if isinstance(end, _ClientCircuit):
            assert end.layers is not None  # OPEN implies built
            cell = end.layers.seal_forward(plaintext, end.out_header)
        else:
            cell = end.layers.seal_backward(plaintext, end.out_header)
        end.cells_sent += 1
        self._queue(end.link, cell)

    def send_relay_messages(
        self,
        circuit: CircuitHandle,
        kind: RelayKind,
        payloads: Sequence[bytes | bytearray | memoryview],
        now: float,
    ) -> int:
        """Send the first relay messages of ``payloads`` (one cell each), as many as the cell
        queue has room for; return how many were taken. Nothing is sent if any payload is
        too long or the circuit is not open (``LocalProtocolError``)."""
        end = self._open_end(circuit)
        if any(len(p) > MAX_RELAY_PAYLOAD for p in payloads):
            raise LocalProtocolError(f"a relay payload exceeds {MAX_RELAY_PAYLOAD} bytes")
        room = self._queue_limit - self.queued_cells
        batch = payloads[:room] if room < len(payloads) else payloads
        if not batch:
            return 0
        if len(batch) == 1:
            # A lone message (a SENDME, a request): the per-cell seal is cheaper than a
            # kernel call (bench/cells.py, 1-cell runs).
            self.send_relay_message(circuit, kind, batch[0], now)
            return 1
        # The whole run: framed and sealed by the batch kernels into one buffer.
        plains = kernels.frame_messages(
            int(kind), b"".join(batch), [len(p) for p in batch], _ZERO_FILL[:MESSAGE_OFFSET]
        )
        if isinstance(end, _ClientCircuit):
            assert end.layers is not None  # OPEN implies built
            sealed = end.layers.seal_forward_run(plains, end.out_header)
        else:
            sealed = end.layers.seal_backward_run(plains, end.out_header)
        self._queue_run(end.link, sealed, len(batch))
        end.cells_sent += len(batch)
        return len(batch)

    def destroy_circuit(self, circuit: CircuitHandle, reason: DestroyReason, now: float) -> None:
        """Tear a circuit down from this end; a ``CircuitDestroyed`` (origin LOCAL) follows."""
        end = self._ends.get(circuit)
        if end is None:
            raise LocalProtocolError(f"no circuit {circuit}")
        self._teardown(end, reason, DestroyOrigin.LOCAL)

    def circuit_send_capacity(self, circuit: CircuitHandle) -> int:
        """How many more cells ``send_relay_message`` may queue before ``cells_to_send``."""
        end = self._ends.get(circuit)
        if end is None or (isinstance(end, _ClientCircuit) and end.state is not CircuitState.OPEN):
            return 0
        return max(0, self._queue_limit - self.queued_cells)

    def circuit_info(self, circuit: CircuitHandle) -> CircuitInfo:
        end = self._ends.get(circuit)
        if end is None:
            raise LocalProtocolError(f"no circuit {circuit}")
        if isinstance(end, _ClientCircuit):
            return CircuitInfo(
                circuit, end.state, end.hops, end.cells_sent, end.cells_received, end.rtt
            )
        return CircuitInfo(circuit, CircuitState.OPEN, (), end.cells_sent, end.cells_received, None)

    @property
    def stats(self) -> NodeStats:
        """A snapshot of the node's counters."""
        forward = self._relayed_closed[0] + sum(r.layers.forward_count for r in self._relays)
        backward = self._relayed_closed[1] + sum(r.layers.backward_count for r in self._relays)
        return replace(
            self._counters,
            cells_received=self._received + forward + backward,
            relayed_forward=forward,
            relayed_backward=backward,
            link_padding_received=self._link_padding,
            cells_dropped=self._dropped,
        )

    def relayed_circuits(self) -> list[RelayedCircuitInfo]:
        return [
            RelayedCircuitInfo(
                self._links[r.prev_link].peer_id,
                r.next_peer,
                r.state,
                r.layers.forward_count,
                r.layers.backward_count,
            )
            for r in self._relays
        ]

    def circuits(self) -> list[CircuitHandle]:
        return list(self._ends)

    @property
    def relayed_circuit_count(self) -> int:
        return self._relay_count

    # -- cells in ----------------------------------------------------------------------------

    def receive_cell(self, link: LinkId, cell: bytes | bytearray | memoryview, now: float) -> None:
        """Process one cell from ``link``. Raises ProtocolError on bad input (see module doc)."""
        if type(cell) is bytes and len(cell) == CELL_SIZE:
            # Fast path: a RELAY cell on an open circuit, room in both queues. The key is the
            # raw header (circuit id + command byte): no unpacking, no tuple, no enum.
            circuits = self._fast_get(link)
            if circuits is not None:
                fast = circuits.get(cell[:5])
                if fast is not None and len(self._out) + self._out_extra < self._queue_limit:
                    fast(cell)
                    return
        if link not in self._links:
            raise LocalProtocolError(f"cell on link {link!r} that is not up")
        if len(self._events) >= self.config.max_events:
            raise LocalProtocolError("events not drained; refusing input until they are")
        if not isinstance(cell, bytes):
            cell = bytes(cell)
        parsed = parse_cell(cell)
        command = parsed.command
        if command is CellCommand.PADDING:
            self._received += 1
            self._link_padding += 1
            return
        key = (link, parsed.circuit_id)
        if command is CellCommand.CREATE:
            self._receive_create(link, parsed.circuit_id, parsed.body, now)
            self._received += 1
            return
        entry = self._table.get(key)
        if entry is None:
            if key in self._closed:
                self._dropped += 1
                self._emit(CellDropped(link, f"late {command.name} on a closed circuit"))
                return
            raise UnknownCircuit(f"{command.name} for unknown circuit {parsed.circuit_id}")
        circuit, forward = entry
        if command is CellCommand.DESTROY:
            reason = parse_destroy_body(parsed.body)
            self._received += 1
            self._teardown(circuit, reason, DestroyOrigin.REMOTE, skip=link)
        elif command is CellCommand.CREATED:
            self._receive_created(link, circuit, forward, parsed.body, now)
            self._received += 1
        elif isinstance(circuit, _RelayCircuit):
            self._relay_slow(circuit, forward, cell)
        else:
            self._end_cell(circuit, cell)
            self._received += 1

    def receive_cells(
        self, link: LinkId, cells: Iterable[bytes | bytearray | memoryview], now: float
    ) -> list[ProtocolError]:
        """Process a batch of cells from ``link`` in order; the runtime's hot path.

        Same effect as :meth:`receive_cell` on each cell, except that a cell's
        ``ProtocolError`` does not stop the batch: the errors come back in order (empty
        when every cell was fine), one per refused cell, so the caller can log and count.
        """
        errors: list[ProtocolError] = []
        circuits = self._fast_get(link)
        if circuits is None:
            get: Callable[[bytes], Callable[[bytes], None] | None] = _no_fast
        else:
            get = circuits.get
        out, queue_limit = self._out, self._queue_limit
        for cell in cells:
            if type(cell) is bytes and len(cell) == 1024:  # CELL_SIZE
                fast = get(cell[:5])
                if fast is not None and len(out) + self._out_extra < queue_limit:
                    try:
                        fast(cell)
                    except ProtocolError as exc:
                        errors.append(exc)
                    continue
            try:
                self.receive_cell(link, cell, now)
            except ProtocolError as exc:
                errors.append(exc)
        return errors

    def receive_block(
        self, link: LinkId, block: bytes | bytearray | memoryview, now: float
    ) -> list[ProtocolError]:
        """Process ``block``, any whole number of cells back to back from ``link``, in order;
        the runtime's hot path. Same effect and errors as :meth:`receive_cells` on its cells.

        Consecutive cells of one open circuit (a *run*: same 5-byte header) go through that
        circuit's run closure, one batch kernel call (:mod:`zmesh._accel.cells`); a cell it
        stops at (bad tag, malformed message, full queue) and every cell of other kinds take
        the per-cell path, so errors and teardowns are exactly those of :meth:`receive_cell`.
        """
        if not isinstance(block, bytes):
            block = bytes(block)
        n, rest = divmod(len(block), CELL_SIZE)
        if rest:
            raise LocalProtocolError("a block is a whole number of cells")
        errors: list[ProtocolError] = []
        runs = self._runs.get(link)
        get = runs.get if runs is not None else _no_fast
        limit = self._queue_limit
        i = 0
        while i < n:
            base = i * CELL_SIZE
            header = block[base : base + 5]
            j = i + 1
            while j < n and block[j * CELL_SIZE : j * CELL_SIZE + 5] == header:
                j += 1
            # A lone cell takes the per-cell closure: a kernel call costs more than it saves
            # on one cell (bench/cells.py), and single cells are the interactive case.
            run = get(header) if j - i > 1 else None
            if run is not None and len(self._out) + self._out_extra + (j - i) <= limit:
                i += run(block, i, j - i)
                if i == j:
                    continue
            # The cell the run stopped at (or a cell without a run path): one by one.
            cell = block[i * CELL_SIZE : (i + 1) * CELL_SIZE]
            errors.extend(self.receive_cells(link, [cell], now))
            i += 1
        return errors

    def _end_run_fn(self, circuit: _ClientCircuit | _ExitCircuit) -> BlockPipe:
        """The per-run work for an open circuit end: open the run (one kernel call), check
        every relay message (another), emit them. Stops before a cell that fails either
        check; the per-cell path then reports it (and tears the circuit down)."""
        client = isinstance(circuit, _ClientCircuit)
        layers = circuit.layers
        assert layers is not None
        keys = (
            layers.backward_run_keys
            if isinstance(layers, ClientLayers)
            else layers.forward_run_keys
        )
        handle = circuit.handle
        events = self._events
        emit = events.append
        event_limit = self._event_limit
        batch = self.config.batch_events
        kinds_by_value = RELAY_KINDS

        def end_run(block: bytes, start: int, n: int) -> int:
            if len(events) >= event_limit:
                return 0
            counter = layers.backward_count if client else layers.forward_count
            if counter + n > MAX_CELLS_PER_DIRECTION:
                return 0
            plains, k = kernels.end_open(
                keys, counter, memoryview(block)[start * CELL_SIZE : (start + n) * CELL_SIZE]
            )
            if not k:
                return 0
            kinds, lengths, ok = kernels.scan_messages(plains, _N_KINDS)
            if not ok:
                return 0
            if client:
                layers.backward_count = counter + ok
            else:
                layers.forward_count = counter + ok
            circuit.cells_received += ok
            self._received += ok
            # Message i sits at plains[i * 1003 + 35 :][: lengths[i]] (offset 32 + header 3).
            if batch:
                i = 0
                while i < ok:
                    kind = kinds[i]
                    j = i + 1
                    while j < ok and kinds[j] == kind:
                        j += 1
                    if kind:  # 0: PADDING, authenticated and dropped
                        emit(
                            RelayMessagesReceived(
                                handle,
                                kinds_by_value[kind],
                                tuple(
                                    plains[m * 1003 + 35 : m * 1003 + 35 + lengths[m]]
                                    for m in range(i, j)
                                ),
                            )
                        )
                    i = j
            else:
                for m in range(ok):
                    if kinds[m]:
                        emit(
                            RelayMessageReceived(
                                handle,
                                kinds_by_value[kinds[m]],
                                plains[m * 1003 + 35 : m * 1003 + 35 + lengths[m]],
                            )
                        )
            return ok

        return end_run

    def _end_fn(self, circuit: _ClientCircuit | _ExitCircuit) -> Callable[[bytes], None]:
        """The per-cell work for an open circuit end, as one closure: open the layers, parse
        the relay message (ints, not enum calls; the zero fill checked), emit it."""
        if isinstance(circuit, _ClientCircuit):
            assert circuit.layers is not None
            open_cell = circuit.layers.open_backward_plain
        else:
            open_cell = circuit.layers.open_forward_plain
        handle = circuit.handle
        events = self._events
        emit = events.append
        event_limit = self._event_limit

        def end_cell(
            cell: bytes,
            unpack: Callable[[bytes, int], tuple[int, int]] = _MESSAGE_UNPACK,
            kinds: tuple[RelayKind, ...] = RELAY_KINDS,
            zeros: bytes = _ZERO_FILL,
        ) -> None:
            if len(events) >= event_limit:  # receive_cell's check, here off the relay path
                raise LocalProtocolError("events not drained; refusing input until they are")
            try:
                plain = open_cell(cell)
            except AuthenticationFailed:
                self._tagging_detected(circuit)
                raise
            # The message sits at offset 32 (MESSAGE_OFFSET) of the innermost plaintext.
            kind, n = unpack(plain, 32)
            end = 35 + n  # + RELAY_MESSAGE_HEADER_SIZE
            if (
                kind >= _N_KINDS
                or n > MAX_RELAY_PAYLOAD
                or (end < 1003 and plain[end:] != zeros[: 1003 - end])  # LAYER_PLAIN_SIZE
            ):
                # Under a valid tag only the other end could have written this: it is broken.
                try:
                    parse_relay_message(plain[32:])
                except ProtocolError:
                    self._teardown(circuit, DestroyReason.PROTOCOL, DestroyOrigin.LOCAL)
                    raise
            circuit.cells_received += 1
            self._received += 1
            if kind:  # 0: RelayKind.PADDING, authenticated and dropped
                emit(RelayMessageReceived(handle, kinds[kind], plain[35:end]))

        return end_cell

    def _relay_fns(
        self, circuit: _RelayCircuit, forward: bool
    ) -> tuple[Callable[[bytes], None], BlockPipe]:
        """The per-cell and per-run work for one side of an open relayed circuit, as closures
        sharing that direction's state: the fast path is then a dict lookup and a call (see
        bench/onion.py)."""
        header = circuit.next_header if forward else circuit.prev_header
        target = circuit.next_link if forward else circuit.prev_link
        return circuit.layers.pipe(
            forward,
            header,
            target,
            self._out.append,
            lambda: self._tagging_detected(circuit),
            self._queue_run,
        )

    def _relay_slow(self, circuit: _RelayCircuit, forward: bool, cell: bytes) -> None:
        if circuit.state is not CircuitState.OPEN:
            raise MalformedInput("RELAY cell before the circuit was built")
        if self.queued_cells >= self._queue_limit:
            self._dropped += 1
            self._emit(CellDropped(circuit.prev_link, "cell queue full; circuit destroyed"))
            self._teardown(circuit, DestroyReason.RESOURCE_LIMIT, DestroyOrigin.LOCAL)
            return
        link, circuit_id = (
            (circuit.prev_link, circuit.prev_id)
            if forward
            else (circuit.next_link, circuit.next_id)
        )
        self._fast[link][_relay_key(circuit_id)](cell)

    def _end_cell(self, circuit: _ClientCircuit | _ExitCircuit, cell: bytes) -> None:
        if isinstance(circuit, _ClientCircuit):
            layers = circuit.layers
            if layers is None:
                raise MalformedInput("RELAY cell before CREATED")
            try:
                plaintext = layers.open_backward(cell)
            except AuthenticationFailed:
                self._tagging_detected(circuit)
                raise
        else:
            try:
                plaintext = circuit.layers.open_forward(cell)
            except AuthenticationFailed:
                self._tagging_detected(circuit)
                raise
        try:
            kind, payload = parse_relay_message(plaintext)
        except ProtocolError:
            # Under a valid tag only the other end could have written this: it is broken.
            self._teardown(circuit, DestroyReason.PROTOCOL, DestroyOrigin.LOCAL)
            raise
        circuit.cells_received += 1
        if kind is RelayKind.PADDING:
            return
        self._emit(RelayMessageReceived(circuit.handle, kind, payload))

    def _tagging_detected(self, circuit: _Circuit) -> None:
        self._counters.tag_failures += 1
        log.info("cell failed its tag; destroying the circuit (tagging defence)")
        self._teardown(circuit, DestroyReason.PROTOCOL, DestroyOrigin.LOCAL)

    def _receive_create(self, link: LinkId, circuit_id: int, body: memoryview, now: float) -> None:
        key = (link, circuit_id)
        if key in self._table:
            raise MalformedInput(f"CREATE for circuit id {circuit_id} already in use")
        if circuit_id & CIRCUIT_ID_HIGH_BIT == self._links[link].our_high_bit:
            raise MalformedInput(f"CREATE with circuit id {circuit_id} from our half of the space")
        epoch, header = parse_create_body(body, self.config.geometry.header_length)
        if len(self._ends) + self._relay_count >= self.config.max_circuits:
            self._reject_create(link, circuit_id, DestroyReason.RESOURCE_LIMIT)
            self._emit(CellDropped(link, "CREATE refused: circuit table full"))
            return
        try:
            unwrapped = self.keyring.unwrap(header, epoch, now)
            setups = [c for c in unwrapped.commands if isinstance(c, CircuitSetup)]
            if len(setups) != 1 or len(unwrapped.commands) != 1:
                raise MalformedInput("a hop needs exactly one CircuitSetup and nothing else")
            setup = setups[0]
            if setup.is_exit != (unwrapped.next_hop is None):
                raise MalformedInput("CircuitSetup exit flag disagrees with the routing")
            if unwrapped.next_hop == self.node_id:
                raise MalformedInput("next hop is this node")
            response = respond(setup, unwrapped.shared_secret, self._random)
        except ReplayedInput:
            self._reject_create(link, circuit_id, DestroyReason.REPLAYED)
            raise
        except ProtocolError:
            self._reject_create(link, circuit_id, DestroyReason.PROTOCOL)
            raise
        if setup.is_exit:
            handle = self._new_handle(CircuitRole.EXIT)
            end = _ExitCircuit(
                handle=handle,
                link=link,
                circuit_id=circuit_id,
                layers=ExitLayers(response.keys),
                out_header=CELL_HEADER.pack(circuit_id, _RELAY),
            )
            self._table[key] = (end, True)
            self._ends[handle] = end
            self._fast[link][end.out_header] = self._end_fn(end)
            self._runs[link][end.out_header] = self._end_run_fn(end)
            self._counters.circuits_opened += 1
            reply = wrap_created(response.reply_key, response.record, None, self._random)
            self._queue(link, encode_cell(circuit_id, CellCommand.CREATED, reply))
            self._emit(CircuitOpened(handle))
            return
        assert unwrapped.next_hop is not None and unwrapped.next_header is not None
        relay = _RelayCircuit(
            prev_link=link,
            prev_id=circuit_id,
            prev_header=CELL_HEADER.pack(circuit_id, _RELAY),
            next_peer=unwrapped.next_hop,
            response=response,
            layers=RelayLayers(response.keys),
            epoch=epoch,
            pending_header=unwrapped.next_header,
        )
        self._table[key] = (relay, True)
        self._relays.add(relay)
        self._relay_count += 1
        self._counters.circuits_relayed += 1
        next_link = self._link_by_peer.get(relay.next_peer)
        if next_link is not None:
            self._extend(relay, next_link, now)
            return
        if len(self._waiting) >= self.config.max_waiting_for_link:
            self._teardown(relay, DestroyReason.RESOURCE_LIMIT, DestroyOrigin.LOCAL)
            return
        first_wait = all(r.next_peer != relay.next_peer for r in self._waiting)
        self._waiting[relay] = now
        self._deadlines[relay] = now + self.config.link_wait_timeout
        if first_wait:
            self._emit(LinkNeeded(relay.next_peer))

    def _extend(self, relay: _RelayCircuit, link: LinkId, now: float) -> None:
        assert relay.pending_header is not None
        circuit_id = self._allocate_id(link)
        relay.next_link = link
        relay.next_id = circuit_id
        relay.next_header = CELL_HEADER.pack(circuit_id, _RELAY)
        relay.state = CircuitState.EXTENDING
        self._table[(link, circuit_id)] = (relay, False)
        self._deadlines[relay] = now + self.config.build_timeout
        body = encode_create_body(relay.epoch, relay.pending_header, self._random)
        relay.pending_header = None
        self._queue(link, encode_cell(circuit_id, CellCommand.CREATE, body))

    def _receive_created(
        self, link: LinkId, circuit: _Circuit, forward: bool, body: memoryview, now: float
    ) -> None:
        if isinstance(circuit, _RelayCircuit):
            if forward or circuit.state is not CircuitState.EXTENDING:
                raise MalformedInput("CREATED from the wrong side or twice")
            reply = wrap_created(
                circuit.response.reply_key, circuit.response.record, body, self._random
            )
            circuit.state = CircuitState.OPEN
            self._deadlines.pop(circuit, None)
            assert circuit.next_link is not None
            forward_key, backward_key = _relay_key(circuit.prev_id), _relay_key(circuit.next_id)
            (
                self._fast[circuit.prev_link][forward_key],
                self._runs[circuit.prev_link][forward_key],
            ) = self._relay_fns(circuit, True)
            (
                self._fast[circuit.next_link][backward_key],
                self._runs[circuit.next_link][backward_key],
            ) = self._relay_fns(circuit, False)
            self._queue(circuit.prev_link, encode_cell(circuit.prev_id, CellCommand.CREATED, reply))
            return
        if not isinstance(circuit, _ClientCircuit) or circuit.state is not CircuitState.BUILDING:
            raise MalformedInput("unexpected CREATED")
        records = unwrap_created([derive_reply_key(s) for s in circuit.secrets], body)
        try:
            keys = [
                hs.finish(secret, record)
                for hs, secret, record in zip(
                    circuit.handshakes, circuit.secrets, records, strict=True
                )
            ]
        except AuthenticationFailed:
            self._tagging_detected(circuit)
            raise
        circuit.layers = ClientLayers(keys, self._random)
        circuit.state = CircuitState.OPEN
        self._fast[circuit.link][circuit.out_header] = self._end_fn(circuit)
        self._runs[circuit.link][circuit.out_header] = self._end_run_fn(circuit)
        circuit.rtt = now - circuit.started
        # The ephemeral private keys and Sphinx secrets are no longer needed: drop them (FS).
        circuit.handshakes = ()
        circuit.secrets = ()
        self._deadlines.pop(circuit, None)
        self._counters.circuits_built += 1
        self._emit(CircuitBuilt(circuit.handle, circuit.hops, circuit.rtt))

    # -- teardown ----------------------------------------------------------------------------

    def _teardown(
        self,
        circuit: _Circuit,
        reason: DestroyReason,
        origin: DestroyOrigin,
        *,
        skip: LinkId | None = None,
    ) -> None:
        """Forget ``circuit`` and send DESTROY on each of its links except ``skip``."""
        self._deadlines.pop(circuit, None)
        self._counters.circuits_destroyed += 1
        if isinstance(circuit, _RelayCircuit):
            self._waiting.pop(circuit, None)
            self._relays.discard(circuit)
            self._relay_count -= 1
            self._relayed_closed[0] += circuit.layers.forward_count
            self._relayed_closed[1] += circuit.layers.backward_count
            sides: list[tuple[LinkId, int]] = [(circuit.prev_link, circuit.prev_id)]
            if circuit.next_link is not None:
                sides.append((circuit.next_link, circuit.next_id))
        else:
            sides = [(circuit.link, circuit.circuit_id)]
            self._ends.pop(circuit.handle, None)
            self._emit(CircuitDestroyed(circuit.handle, reason, origin))
        for link, circuit_id in sides:
            self._table.pop((link, circuit_id), None)
            fast = self._fast.get(link)
            if fast is not None:
                fast.pop(_relay_key(circuit_id), None)
            runs = self._runs.get(link)
            if runs is not None:
                runs.pop(_relay_key(circuit_id), None)
            self._remember_closed((link, circuit_id))
            if link != skip and link in self._links:
                self._queue(
                    link, encode_cell(circuit_id, CellCommand.DESTROY, encode_destroy_body(reason))
                )

    def _reject_create(self, link: LinkId, circuit_id: int, reason: DestroyReason) -> None:
        self._counters.creates_rejected += 1
        self._remember_closed((link, circuit_id))
        self._queue(link, encode_cell(circuit_id, CellCommand.DESTROY, encode_destroy_body(reason)))

    def _remember_closed(self, key: tuple[LinkId, int]) -> None:
        self._closed[key] = None
        self._closed.move_to_end(key)
        while len(self._closed) > self.config.max_closed_remembered:
            self._closed.popitem(last=False)

    # -- helpers -----------------------------------------------------------------------------

    def _open_end(self, circuit: CircuitHandle) -> _ClientCircuit | _ExitCircuit:
        end = self._ends.get(circuit)
        if end is None:
            raise LocalProtocolError(f"no circuit {circuit}")
        if isinstance(end, _ClientCircuit) and end.state is not CircuitState.OPEN:
            raise LocalProtocolError("circuit is not built yet")
        return end

    def _check_room(self, link: LinkId) -> None:
        if len(self._ends) + self._relay_count >= self.config.max_circuits:
            raise LocalProtocolError("circuit table full")
        if self.queued_cells >= self._queue_limit:
            raise LocalProtocolError("cell queue full")

    def _allocate_id(self, link: LinkId) -> int:
        state = self._links[link]
        for _ in range(_MAX_CIRCUIT_ID):
            candidate = state.next_id
            state.next_id = candidate + 1 if candidate < _MAX_CIRCUIT_ID else 1
            circuit_id = candidate | state.our_high_bit
            key = (link, circuit_id)
            if key not in self._table and key not in self._closed:
                return circuit_id
        raise LocalProtocolError("no free circuit id on this link")  # pragma: no cover

    def _new_handle(self, role: CircuitRole) -> CircuitHandle:
        handle = CircuitHandle(self._next_handle, role)
        self._next_handle += 1
        return handle

    def _queue_run(self, link: LinkId, cells: bytes, count: int) -> None:
        """Queue ``count`` whole cells in one buffer (a kernel's output)."""
        self._out.append((link, cells))
        self._out_extra += count - 1

    def _queue(self, link: LinkId, cell: bytes) -> None:
        """Queue a cell. Data cells are checked against ``max_link_queue`` by their callers;
        control cells (CREATE, CREATED, DESTROY) are not refused, and there are at most two
        per circuit, so the queue never exceeds max_queued_cells + 2 * max_circuits."""
        self._out.append((link, cell))

    def _emit(self, event: OnionEvent) -> None:
        self._events.append(event)
