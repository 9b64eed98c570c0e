"""Fuzz the DCEP parser and the data-channel endpoint's handling of DCEP messages (atheris).

``parse_dcep`` must raise only ``ProtocolError`` and round-trip what it accepts; the same bytes
delivered as a PPID 50 message on a fresh stream must never make the endpoint raise.

Run: ``python fuzz/dcep.py -runs=20000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import os
import random
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh.sansio.webrtc import dcep
        from zmesh.sansio.webrtc.datachannel import DataChannelEndpoint
        from zmesh.sansio.webrtc.sctp import SctpAssociation
        from zmesh.sansio.wire import ProtocolError

    def one_input(data: bytes) -> None:
        try:
            message = dcep.parse_dcep(data)
        except ProtocolError:
            pass
        else:
            assert dcep.parse_dcep(message.encode()) == message
        rng = random.Random(1)
        a = SctpAssociation(is_client=True, random=rng.randbytes)
        b = DataChannelEndpoint(
            SctpAssociation(is_client=False, random=rng.randbytes), is_dtls_client=False
        )
        a.connect(0.0)
        for _ in range(4):
            for packet in a.data_to_send(0.0):
                b.receive_data(packet, 0.0)
            for packet in b.data_to_send(0.0):
                a.receive_data(packet, 0.0)
        if data:
            a.send(2, dcep.PPID_DCEP, data, now=0.0)
            a.send(2, dcep.PPID_STRING, data, now=0.0)
        for packet in a.data_to_send(0.0):
            b.receive_data(packet, 0.0)
        while b.next_event() is not None:
            pass
        b.data_to_send(0.0)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
