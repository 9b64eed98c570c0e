"""atheris harness for the onion cell parsers and node: ``python fuzz/cells.py -runs=N``
(add ``-max_len=1100`` so inputs reach whole cells).

Targets, chosen by the first input byte:
  0  parse_cell, then the body parser of its command (CREATE, DESTROY, relay message)
  1  OnionNode.receive_cell of arbitrary bytes at a relay with one open circuit, on either link
  2  a genuine forward data cell with fuzzer bytes XORed in: must fail with
     AuthenticationFailed (or a framing error) unless the XOR left it unchanged
  3  unwrap_created on arbitrary bodies, parse_relay_message on arbitrary plaintexts
Anything other than a ProtocolError escaping is a bug. Targets 1 and 2 rebuild the circuit
when a fuzzed cell legitimately destroyed it (tagging defence).
"""

from __future__ import annotations

import os
import random
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

with atheris.instrument_imports():
    from zmesh.sansio.onion import OnionNode, RelayKind, RouteHop
    from zmesh.sansio.onion.cells import (
        BODY_SIZE,
        DATA_SIZE,
        CellCommand,
        parse_cell,
        parse_create_body,
        parse_destroy_body,
        parse_relay_message,
    )
    from zmesh.sansio.onion.keyring import SphinxKeyRing
    from zmesh.sansio.onion.session import unwrap_created
    from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY
    from zmesh.sansio.wire import AuthenticationFailed, ProtocolError


class _Line:
    """client - relay - exit, hand-wired, one open circuit, a stock of genuine cells."""

    def __init__(self) -> None:
        rng = random.Random(1)
        self.nodes: dict[str, OnionNode] = {}
        for i, name in enumerate(("c", "r", "x")):
            rnd = random.Random(rng.getrandbits(64)).randbytes
            ring = SphinxKeyRing(ZMESH_GEOMETRY, 0.0, random=rnd)
            self.nodes[name] = OnionNode(bytes([i + 1]) * 32, ring, random=rnd)
        for a, b in (("c", "r"), ("r", "x")):
            self.nodes[a].link_up((a, b), self.nodes[b].node_id, 0.0)
            self.nodes[b].link_up((b, a), self.nodes[a].node_id, 0.0)
        path = []
        for name in ("r", "x"):
            ring = self.nodes[name].keyring
            path.append(RouteHop(self.nodes[name].node_id, ring.public_keys(0.0)[0], 0))
        self.circuit = self.nodes["c"].build_circuit(path, 0.0)
        self.pump()
        self.nodes["c"].send_relay_message(self.circuit, RelayKind.STREAM, b"fuzz", 0.0)
        ((_, self.genuine),) = self.nodes["c"].cells_to_send()

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for node in self.nodes.values():
                while node.next_event() is not None:
                    pass
                for (src, dst), cell in node.cells_to_send():
                    moved = True
                    self.nodes[dst].receive_cell((dst, src), cell, 0.0)

    @property
    def relay(self) -> OnionNode:
        return self.nodes["r"]

    def settle(self) -> None:
        relay = self.relay
        relay.cells_to_send()
        while relay.next_event() is not None:
            pass


_line = _Line()


def _fresh_line() -> None:
    global _line
    _line = _Line()


def _parsers(data: bytes) -> None:
    parsed = parse_cell(data)
    if parsed.command is CellCommand.CREATE:
        parse_create_body(parsed.body, ZMESH_GEOMETRY.header_length)
    elif parsed.command is CellCommand.DESTROY:
        parse_destroy_body(parsed.body)
    elif parsed.command is CellCommand.RELAY:
        parse_relay_message(parsed.body[:DATA_SIZE])


def _node(data: bytes, from_client: bool) -> None:
    link = ("r", "c") if from_client else ("r", "x")
    try:
        _line.relay.receive_cell(link, data, 0.0)
    finally:
        _line.settle()
        if _line.relay.relayed_circuit_count == 0:
            _fresh_line()


def _tampered(mask: bytes) -> None:
    cell = bytes(
        a ^ b for a, b in zip(_line.genuine, mask.ljust(len(_line.genuine), b"\0"), strict=True)
    )
    try:
        _line.relay.receive_cell(("r", "c"), cell, 0.0)
    except AuthenticationFailed:
        if cell == _line.genuine:
            raise AssertionError("genuine cell rejected") from None
        _fresh_line()
        return
    except ProtocolError:
        _fresh_line()
        return
    finally:
        _line.settle()
    if cell[4:] != _line.genuine[4:] and cell[:4] == _line.genuine[:4]:
        raise AssertionError("a modified data cell was relayed")
    _fresh_line()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target, rest = data[0] % 4, data[1:]
    try:
        if target == 0:
            _parsers(rest)
        elif target == 1:
            flags, body = (rest[0], rest[1:]) if rest else (0, b"")
            if flags & 2:  # mostly well-framed cells: pad to the cell size
                body = body[:1024].ljust(1024, b"\0")
            _node(body, flags & 1 == 1)
        elif target == 2:
            _tampered(rest[:1024])
        else:
            keys = [bytes([i]) * 32 for i in range(1 + (rest[0] % 3 if rest else 0))]
            if len(rest) >= BODY_SIZE:
                unwrap_created(keys, rest[:BODY_SIZE])
            parse_relay_message(rest)
    except ProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
