"""Sphinx per-hop routing commands: Katzenpost's set plus zmesh's ``CircuitSetup``.

Each hop of a Sphinx header owns one fixed-size slot of routing information
(``Geometry.per_hop_routing_info_length`` bytes). Once the hop has decrypted it, the slot holds
a sequence of commands, each a one-byte code followed by a fixed-length body, ended by the
``0x00`` terminator whose remaining bytes must all be zero. The slot may also be filled exactly,
without a terminator.

The Katzenpost commands follow katzenpost/katzenpost ``core/sphinx/commands/commands.go``
(current code: 32-byte MACs, see ``docs/wire/sphinx.md``):

====  ===========  =====================================  ======
code  name         body                                   total
====  ===========  =====================================  ======
0x00  terminator   zero bytes up to the end of the slot   1+
0x01  NextNodeHop  node id (32) | header MAC (32)         65
0x02  Recipient    recipient id (32)                      33
0x03  SURBReply    SURB id (16)                           17
0x80  NodeDelay    delay, u32 big-endian (4)              5
0x10  CircuitSetup zmesh: ephemeral X25519 key (32) |     38
                   flags (1) | circuit tag (4)
====  ===========  =====================================  ======

``0x10`` is in Katzenpost's "generic" range but unused by it; zmesh never sends Katzenpost
packets, and a Katzenpost node would reject the code as unknown rather than misread it.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from zmesh.sansio.wire import LocalProtocolError, MalformedInput, TruncatedInput

__all__ = [
    "NODE_ID_LENGTH",
    "HEADER_MAC_LENGTH",
    "RECIPIENT_ID_LENGTH",
    "SURB_ID_LENGTH",
    "CIRCUIT_TAG_LENGTH",
    "CellAead",
    "NextNodeHop",
    "Recipient",
    "SURBReply",
    "NodeDelay",
    "CircuitSetup",
    "Command",
    "decode_commands",
    "encode_commands",
]

NODE_ID_LENGTH: Final = 32  # Katzenpost constants.NodeIDLength
HEADER_MAC_LENGTH: Final = 32  # HMAC-SHA256, untruncated in the current Katzenpost code
RECIPIENT_ID_LENGTH: Final = 32  # Katzenpost constants.RecipientIDLength
SURB_ID_LENGTH: Final = 16  # Katzenpost constants.SURBIDLength
EPHEMERAL_KEY_LENGTH: Final = 32  # X25519 public key
CIRCUIT_TAG_LENGTH: Final = 4

TERMINATOR: Final = 0x00
NEXT_NODE_HOP: Final = 0x01
RECIPIENT: Final = 0x02
SURB_REPLY: Final = 0x03
CIRCUIT_SETUP: Final = 0x10  # zmesh-defined; not used by Katzenpost
NODE_DELAY: Final = 0x80  # Katzenpost "implementation defined" range

_U32: Final = struct.Struct("!I")

# CircuitSetup flags byte.
_FLAG_EXIT: Final = 0x01
_AEAD_SHIFT: Final = 1
_AEAD_MASK: Final = 0x06
_RESERVED_FLAGS: Final = 0xF8


class CellAead(enum.IntEnum):
    """The AEAD a circuit's data cells use on this hop (CircuitSetup flags bits 1-2)."""

    CHACHA20_POLY1305 = 0
    AES_256_GCM = 1


def _check_length(name: str, value: bytes, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        raise LocalProtocolError(f"{name} must be {length} bytes")


@dataclass(frozen=True, slots=True)
class NextNodeHop:
    """Forward to ``node_id``; ``mac`` is the MAC of the header the next hop receives."""

    node_id: bytes
    mac: bytes

    CODE: ClassVar[int] = NEXT_NODE_HOP
    LENGTH: ClassVar[int] = 1 + NODE_ID_LENGTH + HEADER_MAC_LENGTH

    def __post_init__(self) -> None:
        _check_length("node_id", self.node_id, NODE_ID_LENGTH)
        _check_length("mac", self.mac, HEADER_MAC_LENGTH)

    def encode(self) -> bytes:
        return b"\x01" + self.node_id + self.mac


@dataclass(frozen=True, slots=True)
class Recipient:
    """Katzenpost final-hop command: deliver to this recipient queue."""

    recipient_id: bytes

    CODE: ClassVar[int] = RECIPIENT
    LENGTH: ClassVar[int] = 1 + RECIPIENT_ID_LENGTH

    def __post_init__(self) -> None:
        _check_length("recipient_id", self.recipient_id, RECIPIENT_ID_LENGTH)

    def encode(self) -> bytes:
        return b"\x02" + self.recipient_id


@dataclass(frozen=True, slots=True)
class SURBReply:
    """Katzenpost final-hop command: the payload answers the SURB ``surb_id``."""

    surb_id: bytes

    CODE: ClassVar[int] = SURB_REPLY
    LENGTH: ClassVar[int] = 1 + SURB_ID_LENGTH

    def __post_init__(self) -> None:
        _check_length("surb_id", self.surb_id, SURB_ID_LENGTH)

    def encode(self) -> bytes:
        return b"\x03" + self.surb_id


@dataclass(frozen=True, slots=True)
class NodeDelay:
    """Katzenpost mix command: hold the packet ``delay`` milliseconds."""

    delay: int

    CODE: ClassVar[int] = NODE_DELAY
    LENGTH: ClassVar[int] = 1 + 4

    def __post_init__(self) -> None:
        if not isinstance(self.delay, int) or not 0 <= self.delay <= 0xFFFFFFFF:
            raise LocalProtocolError(f"NodeDelay.delay out of u32 range: {self.delay!r}")

    def encode(self) -> bytes:
        return b"\x80" + _U32.pack(self.delay)


@dataclass(frozen=True, slots=True)
class CircuitSetup:
    """zmesh: set up this hop of a persistent circuit.

    ``ephemeral_public_key`` is the client's fresh X25519 key for this hop; the hop answers with
    its own ephemeral key so the cell keys are forward-secret (the Sphinx secret alone is not:
    it comes from the hop's epoch key). ``is_exit`` marks the circuit's last hop. ``circuit_tag``
    is random; the last hop echoes it so the client can match the reply to this setup.
    """

    ephemeral_public_key: bytes
    is_exit: bool
    aead: CellAead
    circuit_tag: bytes

    CODE: ClassVar[int] = CIRCUIT_SETUP
    LENGTH: ClassVar[int] = 1 + EPHEMERAL_KEY_LENGTH + 1 + CIRCUIT_TAG_LENGTH

    def __post_init__(self) -> None:
        _check_length("ephemeral_public_key", self.ephemeral_public_key, EPHEMERAL_KEY_LENGTH)
        _check_length("circuit_tag", self.circuit_tag, CIRCUIT_TAG_LENGTH)
        if not isinstance(self.aead, CellAead):
            raise LocalProtocolError(f"aead must be a CellAead, not {self.aead!r}")

    @property
    def flags(self) -> int:
        return (_FLAG_EXIT if self.is_exit else 0) | (int(self.aead) << _AEAD_SHIFT)

    def encode(self) -> bytes:
        return b"\x10" + self.ephemeral_public_key + bytes((self.flags,)) + self.circuit_tag


Command: TypeAlias = NextNodeHop | Recipient | SURBReply | NodeDelay | CircuitSetup


def encode_commands(commands: Iterable[Command], length: int) -> bytes:
    """Serialise ``commands`` into a slot of exactly ``length`` bytes, zero-padded.

    The zero padding doubles as the terminator. Raises :class:`LocalProtocolError` when the
    commands do not fit.
    """
    body = b"".join(c.encode() for c in commands)
    if len(body) > length:
        raise LocalProtocolError(f"commands need {len(body)} bytes, slot holds {length}")
    return body + bytes(length - len(body))


def decode_commands(buf: bytes | bytearray | memoryview) -> list[Command]:
    """Parse one hop's decrypted routing-info slot into its commands.

    Raises :class:`MalformedInput` for an unknown code or non-zero bytes after the terminator,
    :class:`TruncatedInput` for a command cut off by the end of the slot.
    """
    data = bytes(buf)
    end = len(data)
    pos = 0
    out: list[Command] = []
    lengths = _LENGTHS
    while pos < end:
        code = data[pos]
        if code == TERMINATOR:
            if data.count(0, pos) != end - pos:
                raise MalformedInput(f"non-zero bytes after the terminator at offset {pos}")
            break
        length = lengths.get(code)
        if length is None:
            raise MalformedInput(f"unknown routing command 0x{code:02x} at offset {pos}")
        if pos + length > end:
            raise TruncatedInput(
                f"routing command 0x{code:02x} needs {length} bytes at offset {pos}, "
                f"slot has {end - pos}"
            )
        out.append(_decode_one(code, data[pos + 1 : pos + length]))
        pos += length
    return out


_LENGTHS: Final[dict[int, int]] = {
    NEXT_NODE_HOP: NextNodeHop.LENGTH,
    RECIPIENT: Recipient.LENGTH,
    SURB_REPLY: SURBReply.LENGTH,
    NODE_DELAY: NodeDelay.LENGTH,
    CIRCUIT_SETUP: CircuitSetup.LENGTH,
}


_AEADS: Final = tuple(CellAead)  # index = flags bits 1-2; a tuple index beats Enum(value)


def _decode_one(code: int, body: bytes) -> Command:
    if code == NEXT_NODE_HOP:
        return NextNodeHop(body[:NODE_ID_LENGTH], body[NODE_ID_LENGTH:])
    if code == RECIPIENT:
        return Recipient(body)
    if code == SURB_REPLY:
        return SURBReply(body)
    if code == NODE_DELAY:
        return NodeDelay(_U32.unpack(body)[0])
    # CIRCUIT_SETUP: the only code left in _LENGTHS.
    flags = body[EPHEMERAL_KEY_LENGTH]
    if flags & _RESERVED_FLAGS:
        raise MalformedInput(f"CircuitSetup reserved flag bits set: 0x{flags:02x}")
    aead_bits = (flags & _AEAD_MASK) >> _AEAD_SHIFT
    if aead_bits >= len(_AEADS):
        raise MalformedInput(f"CircuitSetup unknown cell AEAD {aead_bits}")
    aead = _AEADS[aead_bits]
    return CircuitSetup(
        ephemeral_public_key=body[:EPHEMERAL_KEY_LENGTH],
        is_exit=bool(flags & _FLAG_EXIT),
        aead=aead,
        circuit_tag=body[EPHEMERAL_KEY_LENGTH + 1 :],
    )
