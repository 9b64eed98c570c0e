"""Fuzz the peer-record parser and the rendezvous store (atheris).

``PeerRecord.decode`` must raise only ``ProtocolError``; whatever it accepts must re-encode to
the same bytes, and ``verify`` / ``RecordStore.publish`` must raise only ``ProtocolError``.

Run: ``python fuzz/peer_record.py -runs=20000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import contextlib
import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh.sansio.signaling.peer_record import PeerRecord
        from zmesh.sansio.signaling.rendezvous import RecordStore
        from zmesh.sansio.wire import ProtocolError

    store = RecordStore(capacity=16)

    def one_input(data: bytes) -> None:
        try:
            record = PeerRecord.decode(data)
        except ProtocolError:
            pass
        else:
            assert record.encode() == data
            with contextlib.suppress(ProtocolError):
                record.verify(now=0)
        with contextlib.suppress(ProtocolError):
            store.publish(data, now=0)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
