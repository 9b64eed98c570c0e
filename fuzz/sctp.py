"""Fuzz the SCTP chunk parser and a live association (atheris).

``parse_chunks`` must raise only ``ProtocolError``, and what it accepts must re-parse from its
own encoding to the same chunks. The same bytes are then handed, with a valid CRC32c and the
right verification tag, to an established association (whose peer is wired back to back),
which must raise nothing but ``ProtocolError`` and keep answering: after the fuzz packet its
peer can still get a message through.

Run: ``python fuzz/sctp.py -runs=20000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh.sansio.webrtc.sctp import SctpAssociation
        from zmesh.sansio.webrtc.sctp.chunks import parse_chunks
        from zmesh.sansio.webrtc.sctp.packet import with_checksum
        from zmesh.sansio.webrtc.sctp.streams_reset import decode_reconfig
        from zmesh.sansio.wire import ProtocolError

    def fresh_pair() -> tuple[SctpAssociation, SctpAssociation]:
        rng = random.Random(5)
        a = SctpAssociation(is_client=True, random=rng.randbytes)
        b = SctpAssociation(is_client=False, random=rng.randbytes)
        a.connect(0.0)
        for _ in range(4):
            for packet in a.data_to_send(0.0):
                b.receive_data(packet, 0.0)
            for packet in b.data_to_send(0.0):
                a.receive_data(packet, 0.0)
        assert a.is_established and b.is_established
        while a.next_event() or b.next_event():
            pass
        return a, b

    def one_input(data: bytes) -> None:
        try:
            chunks = parse_chunks(b"\x00" * 12 + data)
        except ProtocolError:
            chunks = None
        if chunks is not None:
            again = parse_chunks(b"\x00" * 12 + b"".join(c.encode() for c in chunks))
            assert again == chunks, (again, chunks)
            for chunk in chunks:
                params = getattr(chunk, "params", None)
                if params is not None:
                    with contextlib.suppress(ProtocolError):
                        decode_reconfig(params)
        a, b = fresh_pair()
        header = b"\x13\x88\x13\x88" + b._local_tag.to_bytes(4, "big") + b"\x00" * 4
        with contextlib.suppress(ProtocolError):
            b.receive_data(with_checksum(header + data), 0.0)
        while b.next_event() is not None:
            pass
        now = 0.0
        b.data_to_send(now)
        if b.is_established and a.is_established:
            a.send(0, 51, b"still alive", now=now)
            for _ in range(3):
                for packet in a.data_to_send(now):
                    with contextlib.suppress(ProtocolError):
                        b.receive_data(packet, now)
                for packet in b.data_to_send(now):
                    with contextlib.suppress(ProtocolError):
                        a.receive_data(packet, now)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
