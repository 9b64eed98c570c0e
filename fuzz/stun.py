"""Fuzz the STUN parser and the ICE agent's handling of STUN datagrams (atheris).

Random bytes must raise only ``ProtocolError`` from ``parse_stun``; an ICE agent fed the same
bytes must either ignore them or raise ``ProtocolError``, and must stay usable (it still answers
a valid connectivity check afterwards). Inputs that parse are re-encoded through aioice and
parsed again (round trip).

Run: ``python fuzz/stun.py -runs=100000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import contextlib
import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from aioice import stun as aioice_stun

        from zmesh.sansio.webrtc import stun
        from zmesh.sansio.webrtc.ice import IceAgent
        from zmesh.sansio.wire import ProtocolError

    counter = iter(range(1 << 62))

    def rnd(n: int) -> bytes:
        return next(counter).to_bytes(8, "big")[:n].rjust(n, b"\x01")

    agent = IceAgent(controlling=False, random=rnd)
    agent.add_host_address(("127.0.0.1", 5000))
    check = stun.binding_request(b"c" * 12, username=f"{agent.local_ufrag}:peer",
                                 key=agent.local_pwd.encode(), priority=1, controlling=True,
                                 tie_breaker=1)

    def one_input(data: bytes) -> None:
        # Half the inputs get a valid header so the attribute walker is reached often.
        if data and data[0] & 1:
            body = data[1:]
            body += bytes(-len(body) % 4)
            data = (b"\x00\x01" + len(body).to_bytes(2, "big") + b"\x21\x12\xa4\x42"
                    + b"t" * 12 + body)
        try:
            message = stun.parse_stun(data)
        except ProtocolError:
            pass
        else:
            again = aioice_stun.parse_message(bytes(message))
            assert again.transaction_id == message.transaction_id
        with contextlib.suppress(ProtocolError):
            agent.receive_stun(data, ("127.0.0.1", 6000), 0.0)
        agent.datagrams_to_send(0.0)
        agent.receive_stun(check, ("127.0.0.1", 6001), 0.0)
        replies = agent.datagrams_to_send(0.0)
        assert replies and stun.parse_stun(replies[0][0]).error_code is None

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
