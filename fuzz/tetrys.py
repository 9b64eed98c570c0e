"""atheris harness for the Tetrys (RFC 9407) packet parser and decoder.

Targets, chosen by the first input byte:
  0  parse_packet on arbitrary bytes; whatever parses must re-encode to a packet that parses
     back equal (the parser is not required to be canonical: reserved bits and padding are
     ignored on receipt)
  1  a decoder fed a fuzzer-chosen sequence of datagrams, starting from a real session's
     packets with fuzzer bytes XORed in, so the elimination and window code is reached
     through well-formed headers
Anything other than a ProtocolError escaping is a bug; so is a decoder holding more source
symbols or coded rows than its window bound.

Run: ``python fuzz/tetrys.py -runs=100000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import contextlib
import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh.sansio.tetrys import (
            RateConfig,
            TetrysConfig,
            TetrysDecoder,
            TetrysEncoder,
            encode_packet,
            parse_packet,
        )
        from zmesh.sansio.wire import ProtocolError

    window = 16
    config = TetrysConfig(
        symbol_size=16, max_window=window, in_order=False, rate=RateConfig(fixed_ratio=0.5)
    )
    encoder = TetrysEncoder(config, random=lambda n: bytes((7 * i + 1) & 0xFF for i in range(n)))
    for i in range(24):
        encoder.send_source(bytes([i]) * 16, 0.0)
    seeds = encoder.datagrams_to_send(0.0)

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        if fdp.ConsumeIntInRange(0, 1) == 0:
            try:
                packet = parse_packet(fdp.ConsumeBytes(fdp.remaining_bytes()))
            except ProtocolError:
                return
            assert parse_packet(encode_packet(packet)) == packet
            return
        decoder = TetrysDecoder(config)
        for _ in range(fdp.ConsumeIntInRange(1, 40)):
            raw = bytearray(seeds[fdp.ConsumeIntInRange(0, len(seeds) - 1)])
            for _ in range(fdp.ConsumeIntInRange(0, 3)):
                raw[fdp.ConsumeIntInRange(0, len(raw) - 1)] ^= fdp.ConsumeIntInRange(0, 255)
            if fdp.ConsumeBool():
                raw = raw[: fdp.ConsumeIntInRange(0, len(raw))]
            with contextlib.suppress(ProtocolError):
                decoder.receive_datagram(bytes(raw), 0.0)
            while decoder.next_event() is not None:
                pass
            assert len(decoder._known) <= window and len(decoder._rows) <= window
        decoder.datagrams_to_send(1.0)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
