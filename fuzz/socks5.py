"""Fuzzing the SOCKS5 codec (RFC 1928/1929) and the server state machine (atheris).

- Every message parser on arbitrary bytes returns a message, ``None`` (needs more bytes) or
  raises ``ProtocolError``; a parsed message re-encodes to the bytes it used.
- ``Socks5ServerConnection`` fed the input in fuzzer-chosen chunks, with and without
  username/password auth, raises only ``ProtocolError``; after one, ``fail()`` must answer with
  bytes and close; it never emits more than one ConnectRequested.

Run: ``python fuzz/socks5.py -runs=100000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh.sansio.exit import socks5
        from zmesh.sansio.wire import ProtocolError

    parsers = [
        socks5.parse_greeting,
        socks5.parse_method_selection,
        socks5.parse_userpass_request,
        socks5.parse_userpass_reply,
        socks5.parse_request,
        socks5.parse_reply,
    ]

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        use_auth = fdp.ConsumeBool()
        rest = fdp.ConsumeBytes(fdp.remaining_bytes())
        for parse in parsers:
            try:
                parsed = parse(rest)
            except ProtocolError:
                continue
            if parsed is not None:
                msg, used = parsed
                if msg.encode() != rest[:used]:
                    raise AssertionError(f"{parse.__name__}: non-canonical {rest[:used].hex()}")
        conn = socks5.Socks5ServerConnection({"user": "pass"} if use_auth else None)
        requests = 0
        pos = 0
        while pos < len(rest):
            step = 1 + rest[pos] % 17
            try:
                conn.receive_data(rest[pos : pos + step])
            except ProtocolError as exc:
                reply = exc.reply if isinstance(exc, socks5.Socks5Error) else socks5.Reply(1)
                conn.fail(reply)
                if conn.state is not socks5.ServerState.CLOSED:
                    raise AssertionError("fail() did not close") from None
            pos += step
            while (event := conn.next_event()) is not None:
                requests += isinstance(event, socks5.ConnectRequested)
            conn.data_to_send()
        if requests > 1:
            raise AssertionError("more than one CONNECT accepted on one connection")

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
