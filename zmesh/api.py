"""``MeshVPN``: the public Python API (DESIGN.md §5), a thin trio facade over a :class:`Node`.

::

    config = NodeConfig(rendezvous=("wss://host:8443/zmesh/rendezvous",), relay=False, exit=False)
    async with zmesh.api.MeshVPN(config) as mesh:
        await mesh.connect(hops=2, exit="direct")
        stream = await mesh.open_tcp_stream("example.org", 80)    # a trio.abc.HalfCloseableStream
        await mesh.send(peer_id, b"hello")                        # anonymous message to a peer
        async for message in mesh.messages(): ...                 # or mesh.on("message", cb)
        await mesh.disconnect()

``exit="cloudflare"`` is refused with :class:`ExitUnavailable` until the Worker exit lands.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

import trio

from zmesh.io_trio.circuit_streams import MeshStream
from zmesh.io_trio.node import Node, NodeConfig, ReceivedMessage
from zmesh.sansio.onion.cells import DestroyReason

__all__ = ["MeshVPN", "ExitUnavailable", "NotConnected", "NodeConfig", "ReceivedMessage"]

MessageCallback = Callable[[ReceivedMessage], object | Awaitable[object]]


class ExitUnavailable(Exception):
    """The requested exit kind is not available in this build or configuration."""


class NotConnected(Exception):
    """``open_tcp_stream`` before ``connect`` (or after ``disconnect``)."""


class MeshVPN:
    """One zmesh node used as a VPN client from Python (trio)."""

    def __init__(self, config: NodeConfig | None = None) -> None:
        if config is None:
            # A plain API user is a client: it does not relay or exit for others.
            config = NodeConfig(relay=False, exit=False)
        self.node = Node(config)
        self._hops: int | None = None
        self._callbacks: list[MessageCallback] = []
        self._send, self._recv = trio.open_memory_channel[ReceivedMessage](config.message_queue)
        self._nursery: trio.Nursery | None = None
        self._nursery_manager = trio.open_nursery()
        self.messages_dropped = 0

    async def __aenter__(self) -> MeshVPN:
        self._nursery = await self._nursery_manager.__aenter__()
        try:
            await self.node.__aenter__()
        except BaseException as exc:
            await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._nursery.start_soon(self._dispatch_messages)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        try:
            await self.node.__aexit__(exc_type, exc, tb)
        finally:
            await self._nursery_manager.__aexit__(exc_type, exc, tb)
        return None

    async def connect(
        self,
        hops: int = 2,
        exit: str = "direct",
        country: str | None = None,
        enable_fec: bool = True,
    ) -> None:
        """Build the circuit new streams will use.

        ``enable_fec`` applies to WebRTC links (Tetrys); WebSocket links run over TCP and
        need none, so it is accepted and has no effect on them.
        """
        if hops not in (2, 3):
            raise ValueError("hops must be 2 or 3")
        if exit == "cloudflare":
            raise ExitUnavailable(
                "exit='cloudflare' needs the Cloudflare Worker exit (worker/ and its trio "
                "tunnel client), which is not implemented yet; use exit='direct'"
            )
        if exit != "direct":
            raise ValueError(f"unknown exit kind {exit!r}; choose 'direct' or 'cloudflare'")
        if country is not None:
            raise ExitUnavailable("country= selects a Cloudflare Worker exit; not available")
        del enable_fec
        await self.node.current_circuit(hops)
        self._hops = hops

    async def open_tcp_stream(self, host: str, port: int) -> MeshStream:
        """A TCP stream to ``host``:``port`` through the circuit; DNS happens at the exit."""
        if self._hops is None:
            raise NotConnected("call connect() first")
        return await self.node.open_tcp_stream(host, port, hops=self._hops)

    async def send(self, peer_id: bytes, data: bytes) -> None:
        """Send ``data`` (at most one relay payload, 968 bytes) anonymously to ``peer_id``."""
        await self.node.send_message(peer_id, data, hops=self._hops or 2)

    async def messages(self) -> AsyncIterator[ReceivedMessage]:
        """Messages that arrived for this node, while no ``on("message")`` callback is set."""
        async for message in self._recv:
            yield message

    def on(self, event: str, callback: MessageCallback) -> None:
        """Register ``callback`` (plain or async) for ``"message"``."""
        if event != "message":
            raise ValueError(f"unknown event {event!r}; only 'message' is supported")
        self._callbacks.append(callback)

    async def _dispatch_messages(self) -> None:
        async for message in self.node.message_channel:
            if self._callbacks:
                for callback in list(self._callbacks):
                    result = callback(message)
                    if inspect.isawaitable(result):
                        await result
            else:
                try:
                    self._send.send_nowait(message)
                except trio.WouldBlock:
                    self.messages_dropped += 1

    async def disconnect(self) -> None:
        """Tear down the circuits this client built (DESTROY goes out); the node stays up."""
        self._hops = None
        node = self.node
        for info in list(node._circuits.values()):
            node._destroy(info.circuit, DestroyReason.REQUESTED)
        await trio.lowlevel.checkpoint()

    def status(self) -> dict[str, object]:
        return self.node.status()
