"""Fuzzing the cell link's RFC 6455 frame decoder (atheris).

- ``FrameDecoder`` fed arbitrary bytes in fuzzer-chosen chunks, masked or not, raises only
  ``ProtocolError``; every message it returns is within ``max_message`` bytes and every control
  payload within 125.
- Whatever it decodes from a frame stream that ``encode_frame`` built comes back exactly.

Run: ``python fuzz/websocket_frames.py -runs=100000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh.sansio.websocket_frames import (
            OP_BINARY,
            BinaryMessage,
            CloseFrame,
            FrameDecoder,
            PingFrame,
            PongFrame,
            encode_frame,
        )
        from zmesh.sansio.wire import ProtocolError

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        masked = fdp.ConsumeBool()
        step = fdp.ConsumeIntInRange(1, 512)
        max_message = fdp.ConsumeIntInRange(1, 4096)
        rest = fdp.ConsumeBytes(fdp.remaining_bytes())
        decoder = FrameDecoder(
            expect_masked=masked, max_message=max_message, max_buffer=max_message + 14 + 512
        )
        try:
            for i in range(0, len(rest), step):
                decoder.receive_data(rest[i : i + step])
                while (event := decoder.next_event()) is not None:
                    if isinstance(event, BinaryMessage):
                        assert len(event.data) <= max_message
                    elif isinstance(event, (PingFrame, PongFrame)):
                        assert len(event.payload) <= 125
                    else:
                        assert isinstance(event, CloseFrame)
        except ProtocolError:
            pass
        # Round trip: the same bytes as messages, framed by us.
        chunks = [rest[i : i + 700] for i in range(0, len(rest), 700)]
        wire = b"".join(
            encode_frame(OP_BINARY, c, os.urandom(4) if masked else None) for c in chunks
        )
        decoder = FrameDecoder(expect_masked=masked, max_message=700, max_buffer=700 + 14 + 512)
        got = []
        for i in range(0, len(wire), step):
            decoder.receive_data(wire[i : i + step])
            while (event := decoder.next_event()) is not None:
                assert isinstance(event, BinaryMessage)
                got.append(event.data)
        assert got == chunks

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
