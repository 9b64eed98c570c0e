"""Fuzz DTLS record framing, the ClientHello reader and a live DTLS server (atheris).

``split_records`` and ``parse_dtls_client_hello`` must raise only ``ProtocolError``; what
``split_records`` accepts must re-encode to the same bytes. A ``DtlsTransport`` in the server
role is fed the input as a datagram and must never raise (OpenSSL's errors become a failed
handshake event), whatever the bytes.

Run: ``python fuzz/dtls_records.py -runs=20000`` (libFuzzer flags pass through).
"""

from __future__ import annotations

import contextlib
import os
import sys


def main() -> None:
    import atheris

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with atheris.instrument_imports():
        from zmesh.sansio.webrtc.clienthello import ja4, parse_dtls_client_hello
        from zmesh.sansio.webrtc.dtls import DtlsCertificate, DtlsTransport, split_records
        from zmesh.sansio.wire import ProtocolError

    certificate = DtlsCertificate.generate()

    def one_input(data: bytes) -> None:
        try:
            records = split_records(data)
        except ProtocolError:
            pass
        else:
            assert b"".join(r.encode() for r in records) == data
        with contextlib.suppress(ProtocolError):
            ja4(parse_dtls_client_hello([data]))
        server = DtlsTransport(certificate, is_client=False)
        server.receive_datagram(data, 0.0)
        server.datagrams_to_send(0.0)
        while server.next_event() is not None:
            pass

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
