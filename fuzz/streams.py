"""Fuzzing the STREAM payload codec and the StreamMux state machine (atheris).

Two targets in one harness, picked by the first input byte:

- codec: ``parse_message`` on arbitrary bytes raises only ``ProtocolError``, and whatever parses
  re-encodes to exactly the same bytes (one canonical encoding per message);
- mux: a client/exit pair is set up with one open stream, then fed a sequence of payloads
  cut from the input; each payload either applies or raises a ``ProtocolError`` and leaves the
  mux exactly as it was, and the send/receive windows stay within their bounds.

Run: ``python fuzz/streams.py -runs=100000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import copy
import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh.sansio.streams import (
            Role,
            StreamMux,
            encode_message,
            parse_message,
        )
        from zmesh.sansio.wire import ProtocolError

    def fresh_pair() -> tuple[StreamMux, StreamMux]:
        client = StreamMux(Role.CLIENT, stream_window=2048, circuit_window=4096, max_streams=4)
        exit_ = StreamMux(Role.EXIT, stream_window=2048, circuit_window=4096, max_streams=4)
        sid = client.open_stream("example.org", 443)
        for m in client.messages_to_send():
            exit_.receive_message(m)
        while exit_.next_event() is not None:
            pass
        exit_.accept(sid)
        for m in exit_.messages_to_send():
            client.receive_message(m)
        client.next_event()
        client.send(sid, b"hello")
        for m in client.messages_to_send():
            exit_.receive_message(m)
        return client, exit_

    def codec(data: bytes) -> None:
        try:
            msg = parse_message(data)
        except ProtocolError:
            return
        if encode_message(msg) != data:
            raise AssertionError(f"non-canonical parse of {data.hex()}")

    def mux(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        client, exit_ = fresh_pair()
        while fdp.remaining_bytes():
            target = client if fdp.ConsumeBool() else exit_
            payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
            before = copy.deepcopy(target.__dict__)
            try:
                target.receive_message(payload)
            except ProtocolError:
                if target.__dict__ != before:
                    raise AssertionError("a rejected payload changed the mux") from None
            while target.next_event() is not None:
                pass
            target.messages_to_send()
            if not 0 <= target.circuit_outstanding <= target.circuit_window:
                raise AssertionError("circuit window out of bounds")
            for sid in target.stream_ids:
                if not 0 <= target.outstanding(sid) <= target.stream_window:
                    raise AssertionError("stream window out of bounds")

    def one_input(data: bytes) -> None:
        if not data:
            return
        (codec if data[0] & 1 else mux)(data[1:])

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
