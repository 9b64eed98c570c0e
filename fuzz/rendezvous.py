"""Fuzz the rendezvous message codec (atheris).

``decode_message`` must raise only ``ProtocolError`` and round-trip what it accepts; the
service's request handler must answer every input with a well-formed reply.

Run: ``python fuzz/rendezvous.py -runs=20000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh.io_trio.rendezvous import RendezvousService
        from zmesh.io_trio.state import NodeIdentity
        from zmesh.sansio.signaling.rendezvous import decode_message, encode_message
        from zmesh.sansio.wire import ProtocolError

    service = RendezvousService(NodeIdentity.generate(), capacity=16, clock=lambda: 0.0)

    def one_input(data: bytes) -> None:
        try:
            message = decode_message(data)
        except ProtocolError:
            pass
        else:
            assert decode_message(encode_message(message)) == message
        decode_message(service.handle(data))

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
