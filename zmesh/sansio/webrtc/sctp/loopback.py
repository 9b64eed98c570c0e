"""Two sans-IO SCTP ends wired back to back in virtual time (tests, benchmarks, examples).

:class:`Loopback` moves packets between two objects that have the association surface
(``receive_data``/``data_to_send``/``get_timer``/``handle_timer``/``next_event``: an
:class:`~.association.SctpAssociation` or a
:class:`~zmesh.sansio.webrtc.datachannel.DataChannelEndpoint`) with a fixed one-way latency,
and jumps the clock straight to the next delivery or timer. Loss and corruption come from
caller-supplied predicates, so the randomness stays in the caller's seeded generator. The
lead's ``zmesh.sim`` simulator does the same with a richer link model; this one has no
dependencies and is what the throughput benchmark uses.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any, Protocol

from zmesh.sansio.wire import RemoteProtocolError

__all__ = ["Loopback", "SctpLike"]


class SctpLike(Protocol):
    def receive_data(self, packet: bytes, now: float) -> None: ...

    def data_to_send(self, now: float) -> list[bytes]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> Any: ...


#: Decides the fate of a packet: return None to drop it, or the bytes to deliver.
Mangler = Callable[[bytes], bytes | None]


class Loopback:
    def __init__(
        self,
        a: SctpLike,
        b: SctpLike,
        *,
        latency: float = 0.0,
        a_to_b: Mangler | None = None,
        b_to_a: Mangler | None = None,
        on_event: Callable[[str, Any], None] | None = None,
        batch: bool = False,
    ) -> None:
        self.a = a
        self.b = b
        self.latency = latency
        self.batch = batch
        self.now = 0.0
        self.events: dict[str, list[Any]] = {"a": [], "b": []}
        self.rejected: dict[str, int] = {"a": 0, "b": 0}
        self._manglers = {"a": a_to_b, "b": b_to_a}
        self._on_event = on_event
        self._heap: list[tuple[float, int, str, bytes]] = []
        self._seq = 0
        self.packets = {"a": 0, "b": 0}  # packets sent by each side

    def _end(self, name: str) -> SctpLike:
        return self.a if name == "a" else self.b

    def flush(self) -> None:
        """Drain events and outgoing packets of both ends (repeat until quiet)."""
        progress = True
        while progress:
            progress = False
            for name in ("a", "b"):
                end = self._end(name)
                while True:
                    event = end.next_event()
                    if event is None:
                        break
                    progress = True
                    if self._on_event is not None:
                        self._on_event(name, event)
                    else:
                        self.events[name].append(event)
                packets = end.data_to_send(self.now)
                if packets:
                    progress = True
                dest = "b" if name == "a" else "a"
                mangle = self._manglers[name]
                for packet in packets:
                    self.packets[name] += 1
                    if mangle is not None:
                        mangled = mangle(packet)
                        if mangled is None:
                            continue
                        packet = mangled
                    self._seq += 1
                    heapq.heappush(self._heap, (self.now + self.latency, self._seq, dest, packet))

    def step(self) -> bool:
        """Advance to the next packet delivery or timer; False when nothing is pending."""
        self.flush()
        candidates: list[tuple[float, int, str]] = []
        if self._heap:
            candidates.append((self._heap[0][0], 0, "packet"))
        for name in ("a", "b"):
            t = self._end(name).get_timer()
            if t is not None:
                candidates.append((t, 1, name))
        if not candidates:
            return False
        when, _, what = min(candidates)
        self.now = max(self.now, when)
        if what == "packet":
            # One packet per step, as a driver that answers each datagram would behave
            # (``batch=True`` delivers everything due at once, like a recvmmsg driver).
            while self._heap and self._heap[0][0] <= self.now:
                _, _, dest, packet = heapq.heappop(self._heap)
                try:
                    self._end(dest).receive_data(packet, self.now)
                except RemoteProtocolError:
                    self.rejected[dest] += 1
                if not self.batch:
                    break
        else:
            self._end(what).handle_timer(self.now)
        return True

    def run(
        self,
        until: Callable[[], bool] | None = None,
        *,
        timeout: float = 60.0,
        max_steps: int = 10_000_000,
    ) -> bool:
        """Run until ``until()`` is true (returns True), or idle / ``timeout`` virtual seconds
        elapsed / ``max_steps`` (returns whether ``until`` holds)."""
        deadline = self.now + timeout
        for _ in range(max_steps):
            self.flush()
            if until is not None and until():
                return True
            if self.now > deadline or not self.step():
                break
        self.flush()
        return until() if until is not None else True
