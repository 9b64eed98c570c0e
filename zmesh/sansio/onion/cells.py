"""Fixed-size onion cells: the link header, every command's body and the relay message layer.

Byte layouts are in ``docs/wire/cells.md``; this module is their executable form. Every cell
is :data:`CELL_SIZE` bytes on every link, whatever its command, its hop position or the path
length, so a link observer learns nothing from sizes (research notes ``sphinx.md`` §3.3)::

    cell     = circuit_id (u32) | command (u8) | body (1019 bytes)
    RELAY    = AEAD ciphertext (1003 bytes) | AEAD tag (16 bytes), one layer per hop nested
    message  = kind (u8) | length (u16) | payload (length bytes) | zero bytes   (971 bytes,
               at offset 32 of the innermost 1003-byte plaintext)

The data-cell layering (pads, nested tags) lives in :mod:`.layers`, the
CREATE/CREATED key exchange in :mod:`.session`; this module only frames and parses, raising a
:class:`~zmesh.sansio.wire.ProtocolError` subclass for anything the format does not allow.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from zmesh.sansio.wire import (
    LocalProtocolError,
    MalformedInput,
    OversizedInput,
    RandomSource,
    RemoteProtocolError,
    TruncatedInput,
)

__all__ = [
    "CELL_SIZE",
    "CELL_HEADER_SIZE",
    "BODY_SIZE",
    "MAX_HOPS",
    "TAG_SIZE",
    "LAYER_OVERHEAD",
    "DATA_SIZE",
    "RELAY_MESSAGE_HEADER_SIZE",
    "MAX_RELAY_PAYLOAD",
    "CREATE_EPOCH_SIZE",
    "CIRCUIT_ID_HIGH_BIT",
    "CellCommand",
    "RelayKind",
    "RELAY_KINDS",
    "DestroyReason",
    "UnknownCircuit",
    "ParsedCell",
    "parse_cell",
    "encode_cell",
    "encode_create_body",
    "parse_create_body",
    "encode_destroy_body",
    "parse_destroy_body",
    "encode_relay_message",
    "parse_relay_message",
]

#: One cell on every link. 1024 bytes leave room for DTLS (~29 B), SCTP DATA chunk (16 B + 12 B
#: common header) and a Tetrys repair header inside a 1200-byte WebRTC datagram.
CELL_SIZE: Final = 1024
CELL_HEADER: Final = struct.Struct("!IB")  # circuit id, command
CELL_HEADER_SIZE: Final = CELL_HEADER.size  # 5
BODY_SIZE: Final = CELL_SIZE - CELL_HEADER_SIZE  # 1019

#: Room is reserved for the longest circuit, so 2- and 3-hop cells look the same.
MAX_HOPS: Final = 3
TAG_SIZE: Final = 16  # Poly1305 / GCM tag
#: One tag, plus 16 bytes per further possible hop (forward pads / backward dropped blocks).
LAYER_OVERHEAD: Final = MAX_HOPS * TAG_SIZE  # 48
DATA_SIZE: Final = BODY_SIZE - LAYER_OVERHEAD  # 971: the relay message

_RELAY_MESSAGE_HEADER: Final = struct.Struct("!BH")
RELAY_MESSAGE_HEADER_SIZE: Final = _RELAY_MESSAGE_HEADER.size  # 3
_RELAY_MESSAGE_UNPACK: Final = _RELAY_MESSAGE_HEADER.unpack_from
#: Largest payload one relay message (one data cell) carries; streams size their frames to it.
MAX_RELAY_PAYLOAD: Final = DATA_SIZE - RELAY_MESSAGE_HEADER_SIZE  # 968

_CREATE_EPOCH: Final = struct.Struct("!I")
CREATE_EPOCH_SIZE: Final = _CREATE_EPOCH.size

#: Circuit ids are per link; the end whose node id sorts lower allocates ids with this bit set,
#: the other end without it, so both ends can open circuits without coordinating.
CIRCUIT_ID_HIGH_BIT: Final = 0x8000_0000

_ZERO_BODY: Final = bytes(BODY_SIZE)


class CellCommand(enum.IntEnum):
    """The link-level command byte."""

    PADDING = 0  # link padding, circuit id 0, body ignored
    CREATE = 1  # epoch hint + Sphinx header: set up one hop
    CREATED = 2  # layered reply: every hop's key share and confirmation
    RELAY = 3  # layered data cell, either direction
    DESTROY = 4  # tear the circuit down; propagated both ways


class RelayKind(enum.IntEnum):
    """What a relay message inside the innermost layer carries."""

    PADDING = 0  # cover traffic: authenticated, then dropped by the receiving end
    STREAM = 1  # a stream frame (``zmesh.sansio.streams`` owns its payload)
    E2E_MESSAGE = 2  # an end-to-end message to or from a peer
    PING = 3  # health probe; the other end answers with PONG (runtime decides)
    PONG = 4


class DestroyReason(enum.IntEnum):
    """Why a circuit was torn down (DESTROY body byte 0)."""

    REQUESTED = 0  # an end closed it on purpose
    PROTOCOL = 1  # a tag failed (tagging) or a hop broke the protocol
    TIMEOUT = 2  # build or link-wait timeout
    LINK_LOST = 3  # a link on the path went down
    RESOURCE_LIMIT = 4  # a table or queue bound was hit
    NO_ROUTE = 5  # the next hop could not be reached
    REPLAYED = 6  # the CREATE's Sphinx header was a replay


# Byte -> member tables: indexing a tuple is several times cheaper than calling the enum, and
# these run once per cell (the values of both enums are contiguous from 0).
_COMMANDS: Final[tuple[CellCommand, ...]] = tuple(CellCommand)
RELAY_KINDS: Final[tuple[RelayKind, ...]] = tuple(RelayKind)
assert all(c == i for i, c in enumerate(_COMMANDS))
assert all(k == i for i, k in enumerate(RELAY_KINDS))


class UnknownCircuit(RemoteProtocolError):
    """A cell named a circuit id that does not exist on its link."""


@dataclass(frozen=True, slots=True)
class ParsedCell:
    circuit_id: int
    command: CellCommand
    body: memoryview


def encode_cell(circuit_id: int, command: CellCommand, body: bytes | bytearray) -> bytes:
    """Frame ``body`` (at most :data:`BODY_SIZE` bytes; zero-filled up to it)."""
    if not 0 <= circuit_id <= 0xFFFF_FFFF:
        raise LocalProtocolError(f"circuit id out of range: {circuit_id}")
    if len(body) > BODY_SIZE:
        raise LocalProtocolError(f"cell body of {len(body)} bytes exceeds {BODY_SIZE}")
    return CELL_HEADER.pack(circuit_id, command) + body + _ZERO_BODY[len(body) :]


def parse_cell(cell: bytes | bytearray | memoryview) -> ParsedCell:
    """Split a cell into its header fields and a view of its body; check the framing rules."""
    view = memoryview(cell).cast("B") if not isinstance(cell, memoryview) else cell
    if len(view) != CELL_SIZE:
        if len(view) < CELL_SIZE:
            raise TruncatedInput(f"cell of {len(view)} bytes, expected {CELL_SIZE}")
        raise OversizedInput(f"cell of {len(view)} bytes, expected {CELL_SIZE}")
    circuit_id, command_byte = CELL_HEADER.unpack_from(view)
    if command_byte >= len(_COMMANDS):
        raise MalformedInput(f"unknown cell command {command_byte}")
    command = _COMMANDS[command_byte]
    if (circuit_id == 0) != (command is CellCommand.PADDING):
        raise MalformedInput(f"circuit id {circuit_id} not allowed with {command.name}")
    return ParsedCell(circuit_id, command, view[CELL_HEADER_SIZE:])


def encode_create_body(epoch: int, header: bytes, random: RandomSource) -> bytes:
    """CREATE body: epoch hint, Sphinx header, then fresh random bytes (never reused per link)."""
    used = CREATE_EPOCH_SIZE + len(header)
    if used > BODY_SIZE:
        raise LocalProtocolError(f"Sphinx header of {len(header)} bytes does not fit a cell")
    if not 0 <= epoch <= 0xFFFF_FFFF:
        raise LocalProtocolError(f"epoch out of u32 range: {epoch}")
    return _CREATE_EPOCH.pack(epoch) + header + random(BODY_SIZE - used)


def parse_create_body(body: memoryview, header_length: int) -> tuple[int, memoryview]:
    """Return (epoch hint, Sphinx header view). The padding after the header is not checked:
    it is random by design."""
    if len(body) < CREATE_EPOCH_SIZE + header_length:
        raise TruncatedInput("CREATE body shorter than epoch + Sphinx header")
    (epoch,) = _CREATE_EPOCH.unpack_from(body)
    return epoch, body[CREATE_EPOCH_SIZE : CREATE_EPOCH_SIZE + header_length]


def encode_destroy_body(reason: DestroyReason) -> bytes:
    return bytes((int(reason),))


def parse_destroy_body(body: memoryview) -> DestroyReason:
    if len(body) < 1:
        raise TruncatedInput("empty DESTROY body")
    try:
        reason = DestroyReason(body[0])
    except ValueError:
        raise MalformedInput(f"unknown destroy reason {body[0]}") from None
    if body[1:] != _ZERO_BODY[: len(body) - 1]:
        raise MalformedInput("non-zero bytes after the destroy reason")
    return reason


def encode_relay_message(kind: RelayKind, payload: bytes | bytearray | memoryview) -> bytes:
    """The innermost plaintext of a data cell, exactly :data:`DATA_SIZE` bytes."""
    n = len(payload)
    if n > MAX_RELAY_PAYLOAD:
        raise LocalProtocolError(f"relay payload of {n} bytes exceeds {MAX_RELAY_PAYLOAD}")
    return b"".join(
        (_RELAY_MESSAGE_HEADER.pack(int(kind), n), payload, _ZERO_BODY[: MAX_RELAY_PAYLOAD - n])
    )


def parse_relay_message(plaintext: bytes | memoryview) -> tuple[RelayKind, bytes]:
    """Inverse of :func:`encode_relay_message`; the zero fill must be zero (parse fully)."""
    if len(plaintext) != DATA_SIZE:
        raise MalformedInput(f"relay message of {len(plaintext)} bytes, expected {DATA_SIZE}")
    kind_byte, n = _RELAY_MESSAGE_UNPACK(plaintext)
    if kind_byte >= len(RELAY_KINDS):
        raise MalformedInput(f"unknown relay message kind {kind_byte}")
    if n > MAX_RELAY_PAYLOAD:
        raise MalformedInput(f"relay message length {n} exceeds {MAX_RELAY_PAYLOAD}")
    end = RELAY_MESSAGE_HEADER_SIZE + n
    if end < DATA_SIZE and plaintext[end:] != _ZERO_BODY[: DATA_SIZE - end]:
        raise MalformedInput("non-zero fill after the relay message")
    return RELAY_KINDS[kind_byte], bytes(plaintext[RELAY_MESSAGE_HEADER_SIZE:end])
