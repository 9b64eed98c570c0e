"""The State Cookie: association state handed to the peer and back (RFC 9260 §5.1.3, §5.1.5).

A listener stays stateless until COOKIE ECHO: the INIT ACK carries everything needed to build
the association, signed with HMAC-SHA256 under a per-association random key, with the time it
was made. On COOKIE ECHO the MAC is checked with :func:`hmac.compare_digest` and the cookie is
refused when older than ``Valid.Cookie.Life``.

Layout (77 bytes, all big-endian)::

    0      8        12        16         20         24        28    30    32     33     45   77
    | time | my tag | peer tag | my TSN  | peer TSN | peer rwnd| OS  | MIS | flags| rsvd | MAC |
      f64    u32      u32        u32       u32        u32        u16   u16   u8   12 x 0   32

``time`` is the ``now`` the association was given (seconds, float64); ``flags`` bit 0 = the peer
supports PR-SCTP, bit 1 = the peer supports RE-CONFIG. The reserved bytes keep room for a
future field without changing the MAC position.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from zmesh.sansio.wire import AuthenticationFailed, MalformedInput, RemoteProtocolError

__all__ = ["COOKIE_SIZE", "CookieExpired", "StateCookie", "open_cookie", "seal_cookie"]

_BODY: Final = struct.Struct("!dIIIIIHHB12x")
_MAC_SIZE: Final = 32
COOKIE_SIZE: Final = _BODY.size + _MAC_SIZE


class CookieExpired(RemoteProtocolError):
    """A correctly signed cookie that is older than its lifetime (or from the future)."""

    def __init__(self, staleness: float, peer_tag: int) -> None:
        super().__init__(f"state cookie stale by {staleness:.3f} s")
        self.staleness = staleness
        self.peer_tag = peer_tag  # where the Stale Cookie error goes


@dataclass(frozen=True, slots=True)
class StateCookie:
    created: float
    local_tag: int
    peer_tag: int
    local_initial_tsn: int
    peer_initial_tsn: int
    peer_a_rwnd: int
    peer_outbound_streams: int
    peer_inbound_streams: int
    peer_partial_reliability: bool
    peer_reconfig: bool


def _mac(key: bytes, body: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(body)
    return mac.finalize()


def seal_cookie(cookie: StateCookie, key: bytes) -> bytes:
    flags = (1 if cookie.peer_partial_reliability else 0) | (2 if cookie.peer_reconfig else 0)
    body = _BODY.pack(
        cookie.created,
        cookie.local_tag,
        cookie.peer_tag,
        cookie.local_initial_tsn,
        cookie.peer_initial_tsn,
        cookie.peer_a_rwnd,
        cookie.peer_outbound_streams,
        cookie.peer_inbound_streams,
        flags,
    )
    return body + _mac(key, body)


def open_cookie(data: bytes, key: bytes, now: float, lifetime: float) -> StateCookie:
    """Verify and decode; raises AuthenticationFailed, CookieExpired or MalformedInput."""
    if len(data) != COOKIE_SIZE:
        raise MalformedInput(f"state cookie of {len(data)} bytes")
    body, mac = data[: _BODY.size], data[_BODY.size :]
    if not hmac.compare_digest(_mac(key, body), mac):
        raise AuthenticationFailed("state cookie MAC mismatch")
    created, ltag, ptag, ltsn, ptsn, prwnd, pos, pmis, flags = _BODY.unpack(body)
    age = now - created
    if age > lifetime:
        raise CookieExpired(age - lifetime, ptag)
    if age < -1.0:  # made in our future: not ours, or our clock input went backwards
        raise CookieExpired(age, ptag)
    return StateCookie(
        created, ltag, ptag, ltsn, ptsn, prwnd, pos, pmis, bool(flags & 1), bool(flags & 2)
    )
