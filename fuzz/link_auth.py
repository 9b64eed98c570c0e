"""Fuzz the WebSocket link's identity handshake (atheris).

``decode`` and ``LinkAuthenticator.receive`` (in both roles, in every state reachable with
two inputs) must raise only ``ProtocolError``.

Run: ``python fuzz/link_auth.py -runs=20000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import contextlib
import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from zmesh.sansio.signaling.link_auth import LinkAuthenticator, Role, decode
        from zmesh.sansio.wire import ProtocolError

    key = Ed25519PrivateKey.from_private_bytes(bytes(32))

    def one_input(data: bytes) -> None:
        half = len(data) // 2
        with contextlib.suppress(ProtocolError):
            decode(data)
        for role in (Role.CLIENT, Role.SERVER):
            auth = LinkAuthenticator(role, key, b"\x01" * 32, random=lambda n: b"\x02" * n)
            auth.start()
            for part in (data[:half], data[half:]):
                try:
                    auth.receive(part)
                except ProtocolError:
                    break

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
