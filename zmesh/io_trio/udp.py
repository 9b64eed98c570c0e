"""One UDP port shared by many WebRTC peer connections and a STUN binding server (trio driver).

Demultiplexing follows RFC 7983 §7 and ICE's own rule that a connectivity check names its
target in USERNAME (RFC 8445 §7.3): a datagram from an address some connection already talks to
goes to that connection; a STUN request from a new address goes to the connection whose local
ufrag opens its USERNAME (and the address is remembered for it); a plain Binding request
without credentials is answered by the built-in STUN server (RFC 8489 §6.3.1), which is how
peers learn their server-reflexive address from us. Everything else is dropped and counted.

Segmentation offload (Linux): runs of equal-sized datagrams to one destination leave in one
``sendmsg`` with ``UDP_SEGMENT`` (GSO), and the socket asks for ``UDP_GRO``, so the kernel may
hand several datagrams of one flow over in one read (split here by the segment size it reports).
On the wire these are ordinary datagrams of the same sizes; where the kernel lacks either
option the endpoint falls back to one system call per datagram.

Limitation: two of our connections cannot talk to the same remote address through one
endpoint (the route table is keyed by remote address); open a second endpoint for that.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Protocol

import trio

from zmesh.sansio.webrtc import stun
from zmesh.sansio.webrtc.ice import StunServer
from zmesh.sansio.wire import ProtocolError

__all__ = ["UdpEndpoint", "DatagramSink", "EndpointStats", "primary_address", "MAX_ROUTES",
           "MAX_ROUTES_PER_SINK"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
MAX_DATAGRAM: Final = 2048  # larger than any MTU we send; longer reads are truncated
MAX_ROUTES: Final = 4096
#: Routes one connection may own. A route is added when a check names the connection's ufrag,
#: before ICE verifies MESSAGE-INTEGRITY, so without a per-connection share one peer (which
#: knows our ufrag) could fill the table and strand every other connection on the port.
#: ICE keeps at most 64 remote candidates and 128 pairs: 256 leaves room for STUN servers.
MAX_ROUTES_PER_SINK: Final = 256
#: Datagrams read per socket wake-up before the sinks answer: bounds how many packets one SACK
#: may cover and how long a wake-up holds the trio thread (about 30 µs of work each).
MAX_BATCH: Final = 128
_SOL_UDP: Final = 17  # IPPROTO_UDP
_UDP_SEGMENT: Final = 103  # linux/udp.h: GSO segment size for sendmsg
_UDP_GRO: Final = 104  # linux/udp.h: receive coalesced datagrams with their segment size
#: Datagrams per GSO send: the kernel's UDP_MAX_SEGMENTS is 64 (128 since Linux 6.9), and
#: 48 x 1225-byte records stay below the 65 507-byte UDP payload limit.
GSO_MAX_SEGMENTS: Final = 48
_GRO_BUFFER: Final = 65536  # a coalesced read is at most one 64 KiB UDP payload
_GRO_CMSG_SPACE: Final = socket.CMSG_SPACE(4)
_SEGMENT_SIZE: Final = struct.Struct("=H")
_INT: Final = struct.Struct("=i")


class DatagramSink(Protocol):
    """A consumer attached to the endpoint (a WebRTC connection driver)."""

    @property
    def local_ufrag(self) -> str: ...

    def deliver(self, data: bytes, source: Address) -> None:
        """Take one datagram; must not block (process it, queue it or drop it)."""
        ...

    def end_of_batch(self) -> None:
        """The reader has drained the socket for now: produce and send answers (one SACK per
        batch, see ``PeerConnection``). Called once per wake-up for each sink that got data;
        must not block."""
        ...


@dataclass
class EndpointStats:
    received: int = 0
    sent: int = 0
    stun_answered: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def primary_address(family: int = socket.AF_INET) -> str:
    """The local address the default route would use (no packet is sent)."""
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1" if family == socket.AF_INET else "2001:db8::1", 9))
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1" if family == socket.AF_INET else "::1"
    finally:
        probe.close()


class UdpEndpoint:
    """``async with UdpEndpoint(("127.0.0.1", 0)) as endpoint: ...``"""

    def __init__(self, bind: Address = ("0.0.0.0", 0), *, stun_server: bool = True,
                 receive_buffer: int = 4 * 1024 * 1024, offload: bool = True) -> None:
        self._bind = bind
        self._offload = offload
        self._gso = False  # decided when the socket opens
        self._gro = False
        self._stun = StunServer() if stun_server else None
        self._receive_buffer = receive_buffer
        self._sock: socket.socket | None = None
        self._sinks: list[DatagramSink] = []
        self._routes: dict[Address, DatagramSink] = {}
        self._route_counts: dict[DatagramSink, int] = {}  # routes per sink
        self._nursery: trio.Nursery | None = None
        self._stack = contextlib.AsyncExitStack()
        self.stats = EndpointStats()
        #: Called with (data, source) for every datagram received; tests capture handshakes here.
        self.tap: Callable[[bytes, Address], None] | None = None

    @property
    def local_address(self) -> Address:
        if self._sock is None:
            raise RuntimeError("endpoint not open")
        host, port = self._sock.getsockname()[:2]
        return (str(host), int(port))

    def host_addresses(self) -> list[Address]:
        """Addresses to advertise as host candidates."""
        host, port = self.local_address
        if host in ("0.0.0.0", "::"):
            return [(primary_address(), port)]
        return [(host, port)]

    async def __aenter__(self) -> UdpEndpoint:
        family = socket.AF_INET6 if ":" in self._bind[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            # A deep kernel buffer absorbs bursts while the Python side is busy (throughput).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._receive_buffer)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._receive_buffer)
        except OSError:
            pass
        sock.bind(self._bind)
        if self._offload and hasattr(socket, "CMSG_SPACE"):
            try:
                sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
                self._gro = True
            except OSError:
                self._gro = False
            self._gso = True  # the first send tells (EINVAL/ENOPROTOOPT turn it off)
        self._sock = sock
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._nursery.start_soon(self._reader)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        result = await self._stack.__aexit__(exc_type, exc, tb)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        return result

    def attach(self, sink: DatagramSink) -> None:
        self._sinks.append(sink)

    def detach(self, sink: DatagramSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)
        for address in [a for a, s in self._routes.items() if s is sink]:
            del self._routes[address]
        self._route_counts.pop(sink, None)

    def _add_route(self, address: Address, sink: DatagramSink) -> None:
        current = self._routes.get(address)
        if current is sink:
            return
        owned = self._route_counts.get(sink, 0)
        if owned >= MAX_ROUTES_PER_SINK or (current is None and len(self._routes) >= MAX_ROUTES):
            self.stats.drop("route-limit")
            return
        if current is not None:
            self._route_counts[current] -= 1
        self._routes[address] = sink
        self._route_counts[sink] = owned + 1

    def _remember(self, destination: Address, sink: DatagramSink | None) -> None:
        # Replies from where we send (STUN servers, remote candidates) come back to the sender.
        if sink is not None and destination not in self._routes:
            self._add_route(destination, sink)

    async def sendto(self, data: bytes, destination: Address, sink: DatagramSink | None) -> None:
        """Send one datagram, waiting for kernel buffer space if needed (back-pressure)."""
        while not self.send_nowait(data, destination, sink):
            assert self._sock is not None
            await trio.lowlevel.wait_writable(self._sock)

    def send_nowait(self, data: bytes, destination: Address, sink: DatagramSink | None) -> bool:
        """Send without awaiting; False if the kernel buffer is full (the caller may await)."""
        if self._sock is None:
            return True
        self._remember(destination, sink)
        try:
            self._sock.sendto(data, destination)
        except BlockingIOError:
            return False
        except OSError as exc:
            self.stats.drop("send-error")
            log.debug("sendto failed: %s", exc)
            return True
        self.stats.sent += 1
        return True

    def send_many(self, datagrams: list[tuple[bytes, Address]], sink: DatagramSink | None) -> int:
        """Send ``datagrams`` in order without awaiting; returns how many went before the
        kernel buffer filled (the caller keeps the rest). Equal-sized runs to one destination
        go out in one GSO ``sendmsg``."""
        if not self._gso or self._sock is None:
            for index, (data, destination) in enumerate(datagrams):
                if not self.send_nowait(data, destination, sink):
                    return index
            return len(datagrams)
        sock = self._sock
        count = len(datagrams)
        index = 0
        while index < count:
            data, destination = datagrams[index]
            size = len(data)
            end = index + 1
            limit = min(count, index + GSO_MAX_SEGMENTS)
            while end < limit and datagrams[end][1] == destination \
                    and len(datagrams[end][0]) == size:
                end += 1
            if end < limit and datagrams[end][1] == destination \
                    and len(datagrams[end][0]) < size:
                end += 1  # GSO allows one shorter segment at the end
            if end - index == 1:
                if not self.send_nowait(data, destination, sink):
                    return index
                index = end
                continue
            self._remember(destination, sink)
            try:
                sock.sendmsg([d for d, _ in datagrams[index:end]],
                             [(_SOL_UDP, _UDP_SEGMENT, _SEGMENT_SIZE.pack(size))], 0, destination)
            except BlockingIOError:
                return index
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EIO):
                    log.debug("UDP GSO unavailable (%s): one datagram per send", exc)
                    self._gso = False
                    return index + self.send_many(datagrams[index:], sink)
                self.stats.drop("send-error")
                log.debug("sendmsg failed: %s", exc)
            else:
                self.stats.sent += end - index
            index = end
        return count

    async def _reader(self) -> None:
        assert self._sock is not None
        recvfrom = self._sock.recvfrom
        recvmsg = self._sock.recvmsg
        wait_readable = trio.lowlevel.wait_readable
        sock = self._sock
        touched: list[DatagramSink] = []
        while True:
            # wait_readable is the one checkpoint per batch: it yields to other tasks.
            await wait_readable(sock)
            # Drain what the kernel holds, hand each datagram to its sink, then let every sink
            # that got data answer once (its SACK covers the whole batch).
            taken = 0
            while taken < MAX_BATCH:
                try:
                    if self._gro:
                        data, ancillary, _flags, source = recvmsg(_GRO_BUFFER, _GRO_CMSG_SPACE)
                    else:
                        data, source = recvfrom(MAX_DATAGRAM)
                        ancillary = None
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self.stats.drop("recv-error")
                    break
                segment = 0
                if ancillary:
                    for level, kind, value in ancillary:
                        if level == _SOL_UDP and kind == _UDP_GRO and len(value) >= 4:
                            segment = _INT.unpack_from(value)[0]
                if 0 < segment < len(data):
                    # Several datagrams of one flow, coalesced by the kernel (UDP_GRO): one
                    # route lookup for all of them; STUN-looking datagrams (first byte < 4),
                    # unknown sources and a set tap take the full path.
                    address = source if len(source) == 2 else (str(source[0]), int(source[1]))
                    sink = self._routes.get(address)
                    for start in range(0, len(data), segment):
                        datagram = data[start:start + segment]
                        if sink is None or self.tap is not None or datagram[0] < 4:
                            target = self._dispatch(datagram, source)
                        else:
                            self.stats.received += 1
                            sink.deliver(datagram, address)
                            target = sink
                        if target is not None and target not in touched:
                            touched.append(target)
                        taken += 1
                else:
                    sink = self._dispatch(data, source)
                    if sink is not None and sink not in touched:
                        touched.append(sink)
                    taken += 1
            for sink in touched:
                try:
                    sink.end_of_batch()
                except Exception:  # one connection's bug must not take the shared port down
                    log.exception("datagram sink failed at the end of a batch")
            touched.clear()

    def _dispatch(self, data: bytes, source: Address) -> DatagramSink | None:
        """Route one datagram; return the sink that took it (None if answered or dropped)."""
        self.stats.received += 1
        if self.tap is not None:
            self.tap(data, (str(source[0]), int(source[1])))
        if len(data) > 1 and data[0] == 0 and data[1] == 1 and stun.looks_like_stun(data):
            # A Binding request: route by USERNAME (it may be a new address or a restart).
            source = (str(source[0]), int(source[1]))
            target = self._route_request(data, source)
            if target is not None:
                target.deliver(data, source)
            return target
        # The socket gives (host, port) for AF_INET and (host, port, flow, scope) for AF_INET6.
        address = source if len(source) == 2 else (str(source[0]), int(source[1]))
        sink = self._routes.get(address)
        if sink is None:
            self.stats.drop("no-route")
            return None
        sink.deliver(data, address)
        return sink

    def _route_request(self, data: bytes, source: Address) -> DatagramSink | None:
        try:
            message = stun.parse_stun(data)
        except ProtocolError:
            self.stats.drop("malformed-stun")
            return None
        username = message.attributes.get("USERNAME")
        if username is None:
            if self._stun is not None and "MESSAGE-INTEGRITY" not in message.attributes:
                reply = self._stun.handle(data, source)
                if reply is not None:
                    self.stats.stun_answered += 1
                    self.send_nowait(reply, source, None)
                    return None
            return self._routes.get(source)
        local_ufrag = str(username).partition(":")[0]
        for sink in self._sinks:
            if sink.local_ufrag == local_ufrag:
                self._add_route(source, sink)
                return sink
        self.stats.drop("unknown-ufrag")
        return None
