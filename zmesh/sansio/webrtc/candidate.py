"""ICE candidates and their SDP form (RFC 8839 §5.1, priorities from RFC 8445 §5.1.2).

We print candidates the way Chrome does (decimal foundation, ``generation 0 network-id 1
network-cost 10``) and parse what Chrome, Firefox and aiortc print, with or without the
``candidate:`` prefix. Unknown extension attributes are kept in order so nothing is lost.
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field
from typing import Final

from zmesh.sansio.wire import MalformedInput

__all__ = ["Candidate", "candidate_priority", "candidate_foundation", "TYPE_PREFERENCE"]

#: RFC 8445 §5.1.2.2 recommended type preferences.
TYPE_PREFERENCE: Final = {"host": 126, "prflx": 110, "srflx": 100, "relay": 0}
_LOCAL_PREFERENCE: Final = 65535  # one interface per socket: the maximum (RFC 8445 §5.1.2.1)
_MAX_LINE: Final = 512
_MAX_TOKENS: Final = 40
_TYPES: Final = frozenset(TYPE_PREFERENCE)
_ICE_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def candidate_priority(
    cand_type: str, component: int = 1, local_pref: int = _LOCAL_PREFERENCE
) -> int:
    """RFC 8445 §5.1.2.1: ``2^24*type_pref + 2^8*local_pref + (256 - component)``."""
    return (TYPE_PREFERENCE[cand_type] << 24) | (local_pref << 8) | (256 - component)


def candidate_foundation(cand_type: str, transport: str, base_host: str) -> str:
    """A decimal foundation (as browsers print), equal for equal type/base/transport (§5.1.1.3)."""
    return str(zlib.crc32(f"{cand_type}|{transport}|{base_host}".encode()))


@dataclass(frozen=True)
class Candidate:
    foundation: str
    component: int
    transport: str  # "udp" (TCP candidates are parsed but never paired)
    priority: int
    host: str
    port: int
    type: str  # host | srflx | prflx | relay
    related_address: str | None = None
    related_port: int | None = None
    extensions: tuple[tuple[str, str], ...] = field(default=())

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def to_sdp(self) -> str:
        """The value of an ``a=candidate:`` attribute, without the ``candidate:`` prefix."""
        parts = [self.foundation, str(self.component), self.transport, str(self.priority),
                 self.host, str(self.port), "typ", self.type]
        if self.related_address is not None and self.related_port is not None:
            parts += ["raddr", self.related_address, "rport", str(self.related_port)]
        for key, value in self.extensions:
            parts += [key, value]
        return " ".join(parts)

    @classmethod
    def from_sdp(cls, text: str) -> Candidate:
        """Parse ``[candidate:]foundation component transport priority addr port typ T ...``."""
        if len(text) > _MAX_LINE:
            raise MalformedInput("candidate line too long")
        if text.startswith("a="):
            text = text[2:]
        if text.startswith("candidate:"):
            text = text[len("candidate:"):]
        tokens = text.split()
        if len(tokens) < 8 or len(tokens) > _MAX_TOKENS:
            raise MalformedInput(f"candidate needs 8..{_MAX_TOKENS} tokens, got {len(tokens)}")
        if tokens[6] != "typ":
            raise MalformedInput("candidate lacks 'typ'")
        foundation, component_s, transport, priority_s, host, port_s, _, cand_type = tokens[:8]
        # RFC 8839 §5.1: foundation = 1*32ice-char (ALPHA / DIGIT / "+" / "/")
        if not 1 <= len(foundation) <= 32 or not all(c in _ICE_CHARS for c in foundation):
            raise MalformedInput("bad candidate foundation")
        component = _bounded_int(component_s, 1, 256, "component")
        priority = _bounded_int(priority_s, 1, 0xFFFFFFFF, "priority")
        port = _bounded_int(port_s, 0, 65535, "port")
        transport = transport.lower()
        if transport not in ("udp", "tcp"):
            raise MalformedInput(f"unknown candidate transport {transport!r}")
        if cand_type not in _TYPES:
            raise MalformedInput(f"unknown candidate type {cand_type!r}")
        if not _valid_host(host):
            raise MalformedInput("bad candidate address")
        rest = tokens[8:]
        if len(rest) % 2:
            raise MalformedInput("candidate extension without a value")
        related_address: str | None = None
        related_port: int | None = None
        extensions: list[tuple[str, str]] = []
        for key, value in zip(rest[::2], rest[1::2], strict=True):
            if key == "raddr":
                if not _valid_host(value):
                    raise MalformedInput("bad raddr")
                related_address = value
            elif key == "rport":
                related_port = _bounded_int(value, 0, 65535, "rport")
            else:
                extensions.append((key, value))
        return cls(foundation, component, transport, priority, host, port, cand_type,
                   related_address, related_port, tuple(extensions))


def _bounded_int(text: str, low: int, high: int, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise MalformedInput(f"candidate {what} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise MalformedInput(f"candidate {what} {value} out of range")
    return value


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    # mDNS names (``<uuid>.local``) that browsers hide their addresses behind.
    return (0 < len(host) <= 253 and host.isascii() and host.endswith(".local")
            and all(c.isalnum() or c in "-." for c in host))
