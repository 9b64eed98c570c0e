"""Direct exit: open the destination's TCP connection from this node, under an exit policy.

The exit resolves the name itself (the client never does, so it leaks no DNS), checks every
resolved address with :class:`~zmesh.sansio.exit.policy.ExitPolicy` and connects only to
addresses the policy accepts, by address, so a name that resolves differently a second time
(DNS rebinding) cannot slip past the check. Failures raise
:class:`~zmesh.sansio.streams.StreamOpenFailed` with the RESET reason the client's SOCKS
server turns into a reply code (``docs/exit-policy.md``).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable

import trio

from zmesh.sansio.exit.policy import ExitPolicy, IPAddress
from zmesh.sansio.streams import ResetReason, StreamOpenFailed, validate_hostname
from zmesh.sansio.wire import MalformedInput

__all__ = ["Resolver", "open_exit_connection", "resolve_system", "StreamOpenFailed"]

log = logging.getLogger(__name__)

#: ``resolve(host, port) -> addresses``; raises ``StreamOpenFailed`` when the name has none.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

#: Addresses tried per stream; a name with more is cut.
MAX_ADDRESSES = 8
#: RFC 8305 §5 "Connection Attempt Delay": the recommended 250 ms before starting the next
#: address while the previous attempt is still pending.
ATTEMPT_DELAY = 0.25

_ERRNO_REASONS = {
    errno.ECONNREFUSED: ResetReason.CONNECTION_REFUSED,
    errno.ENETUNREACH: ResetReason.NETWORK_UNREACHABLE,
    errno.EHOSTUNREACH: ResetReason.HOST_UNREACHABLE,
    errno.EHOSTDOWN: ResetReason.HOST_UNREACHABLE,
    errno.EADDRNOTAVAIL: ResetReason.HOST_UNREACHABLE,
    errno.ETIMEDOUT: ResetReason.TTL_EXPIRED,
}
# How specific a failure is: when several addresses fail, the most telling one is reported.
_SPECIFICITY = [
    ResetReason.GENERAL_FAILURE,
    ResetReason.NETWORK_UNREACHABLE,
    ResetReason.HOST_UNREACHABLE,
    ResetReason.TTL_EXPIRED,
    ResetReason.CONNECTION_REFUSED,
]


async def resolve_system(host: str, port: int) -> list[IPAddress]:
    """The system resolver (``getaddrinfo`` in a worker thread), addresses in its order."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StreamOpenFailed(ResetReason.HOST_UNREACHABLE, "name did not resolve") from exc
    out: list[IPAddress] = []
    for family, *_, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if addr not in out:
            out.append(addr)
    if not out:
        raise StreamOpenFailed(ResetReason.HOST_UNREACHABLE, "name has no IP address")
    return out


async def open_exit_connection(
    host: str,
    port: int,
    policy: ExitPolicy,
    *,
    timeout: float = 30.0,
    resolve: Resolver = resolve_system,
) -> trio.SocketStream:
    """Connect to ``host``:``port`` if ``policy`` allows it; the whole attempt (resolution
    included) gives up after ``timeout`` seconds with ``TTL_EXPIRED``.

    Raises :class:`StreamOpenFailed`: ``POLICY_REFUSED`` when no resolved address is allowed,
    ``HOST_UNREACHABLE`` when the name does not resolve, ``CONNECTION_REFUSED``,
    ``NETWORK_UNREACHABLE``, ``TTL_EXPIRED`` or ``GENERAL_FAILURE`` from the connection.
    """
    if not 1 <= port <= 0xFFFF:
        raise StreamOpenFailed(ResetReason.POLICY_REFUSED, f"port {port}")
    literal = _literal(host)
    with trio.move_on_after(timeout) as scope:
        addresses = [literal] if literal is not None else await resolve(host, port)
        verdicts = [(addr, policy.check(addr, port)) for addr in addresses[:MAX_ADDRESSES]]
        allowed = [addr for addr, verdict in verdicts if verdict.allowed]
        if not allowed:
            why = verdicts[0][1].explanation if verdicts else "no address"
            log.debug("exit policy refused a stream: %s", why)
            raise StreamOpenFailed(ResetReason.POLICY_REFUSED, why)
        return await _connect_any(allowed, port)
    assert scope.cancelled_caught
    raise StreamOpenFailed(ResetReason.TTL_EXPIRED, f"no connection within {timeout} s")


def _literal(host: str) -> IPAddress | None:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        try:
            validate_hostname(host)
        except MalformedInput as exc:
            raise StreamOpenFailed(ResetReason.HOST_UNREACHABLE, str(exc)) from None
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        # A zone index names one of the exit's own interfaces: never a remote destination.
        raise StreamOpenFailed(ResetReason.POLICY_REFUSED, "scoped IPv6 address")
    return addr


async def _connect_any(addresses: list[IPAddress], port: int) -> trio.SocketStream:
    """Happy Eyeballs (RFC 8305 §5): start the next attempt when the previous one fails or
    after ``ATTEMPT_DELAY``, keep the first connection that succeeds, close the rest."""
    if len(addresses) == 1:
        # Nothing to race: connect in this task (no nursery, no timer, fewer task switches
        # on every stream's first byte).
        try:
            return await _connect(addresses[0], port)
        except OSError as exc:
            reason = _ERRNO_REASONS.get(exc.errno or 0, ResetReason.GENERAL_FAILURE)
            raise StreamOpenFailed(reason, "1 address(es) failed") from None
    winner: trio.SocketStream | None = None
    reasons: list[ResetReason] = []

    async def attempt(addr: IPAddress, done: trio.Event, nursery: trio.Nursery) -> None:
        nonlocal winner
        try:
            stream = await _connect(addr, port)
        except OSError as exc:
            reasons.append(_ERRNO_REASONS.get(exc.errno or 0, ResetReason.GENERAL_FAILURE))
            done.set()
            return
        if winner is None:
            winner = stream
            nursery.cancel_scope.cancel()
        else:
            stream.socket.close()  # a slower attempt also got through; one is enough

    try:
        async with trio.open_nursery() as nursery:
            for addr in addresses:
                done = trio.Event()
                nursery.start_soon(attempt, addr, done, nursery)
                with trio.move_on_after(ATTEMPT_DELAY):
                    await done.wait()
    except BaseException:
        # The caller's timeout (or cancellation) may land just after an attempt won.
        if winner is not None:
            winner.socket.close()
        raise
    if winner is not None:
        return winner
    # Every attempt failed: report the most telling failure.
    failure = max(reasons, key=_SPECIFICITY.index, default=ResetReason.GENERAL_FAILURE)
    raise StreamOpenFailed(failure, f"{len(addresses)} address(es) failed")


async def _connect(addr: IPAddress, port: int) -> trio.SocketStream:
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect((str(addr), port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)
