"""Why a stream was refused or torn down, shared by the stream layer, the exits and SOCKS5.

Codes 1 to 6 are deliberately the RFC 1928 §6 reply codes with the same meaning, so the
client end of a circuit turns an exit's RESET into the SOCKS reply the application expects
without a lookup table that could drift. Codes from 0x10 are zmesh's own and all reach a SOCKS
client as "general SOCKS server failure" (0x01).
"""

from __future__ import annotations

import enum

__all__ = ["ResetReason", "StreamOpenFailed"]


class ResetReason(enum.IntEnum):
    """The reason byte of a RESET message (see ``docs/wire/streams.md``)."""

    GENERAL_FAILURE = 0x01  # RFC 1928 X'01' general SOCKS server failure
    POLICY_REFUSED = 0x02  # X'02' connection not allowed by ruleset (the exit policy)
    NETWORK_UNREACHABLE = 0x03  # X'03' network unreachable
    HOST_UNREACHABLE = 0x04  # X'04' host unreachable (also: the name did not resolve)
    CONNECTION_REFUSED = 0x05  # X'05' connection refused (TCP RST from the destination)
    TTL_EXPIRED = 0x06  # X'06' TTL expired: zmesh uses it for every timeout
    PROTOCOL_ERROR = 0x10  # the peer's stream layer broke the protocol on this stream
    RESOURCE_LIMIT = 0x11  # too many streams, or a buffer bound was reached
    CANCELLED = 0x12  # the application at this end gave up on the stream
    CIRCUIT_FAILED = 0x13  # the circuit under the stream died

    @property
    def socks_reply(self) -> int:
        """The RFC 1928 REP byte a SOCKS client should see for this reason."""
        return int(self) if self <= ResetReason.TTL_EXPIRED else 0x01

    @classmethod
    def from_socks_reply(cls, rep: int) -> ResetReason:
        """The reason matching a SOCKS REP byte (unknown and non-failure codes → general)."""
        if 0x01 <= rep <= 0x06:
            return cls(rep)
        return cls.GENERAL_FAILURE


class StreamOpenFailed(Exception):
    """Opening a stream (at the exit, or end to end through a circuit) failed.

    Raised by ``zmesh.io_trio.exit_direct.open_exit_connection`` and by the ``open_stream``
    callbacks the SOCKS5 server calls; ``reason`` picks the RESET reason and the SOCKS reply.
    """

    def __init__(self, reason: ResetReason, detail: str = "") -> None:
        super().__init__(f"{reason.name.lower()}: {detail}" if detail else reason.name.lower())
        self.reason = reason
        self.detail = detail
