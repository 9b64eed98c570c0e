"""pyOpenSSL private handles (zmesh/sansio/webrtc/_openssl.py): fail loudly if an upgrade moves
them, and check the fast record path against pyOpenSSL's public calls."""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from zmesh.sansio.webrtc import _openssl
from zmesh.sansio.webrtc.dtls import (
    DtlsCertificate,
    DtlsState,
    DtlsTransport,
    chrome_like_context,
)

CERT_A = DtlsCertificate.generate(random=lambda n: b"\x03" * n)
CERT_B = DtlsCertificate.generate(random=lambda n: b"\x04" * n)


def test_private_pyopenssl_names_are_still_there() -> None:
    # If this fails, pyOpenSSL changed: update _openssl.py (the only user) before anything else.
    assert _openssl.AVAILABLE, "OpenSSL._util (ffi, lib) is gone"
    from OpenSSL._util import ffi, lib

    for name in ("SSL_write", "SSL_read", "SSL_get_error", "SSL_pending", "BIO_read",
                 "BIO_write", "BIO_get_mem_data", "SSL_CTX_set1_curves_list",
                 "SSL_CTX_set1_sigalgs_list"):
        assert hasattr(lib, name), f"OpenSSL._util.lib.{name} is gone"
    assert ffi.NULL is not None
    context = chrome_like_context(CERT_A)
    assert hasattr(context, "_context"), "SSL.Context._context is gone"
    connection = SSL.Connection(context, None)
    for attribute in ("_ssl", "_into_ssl", "_from_ssl"):
        assert getattr(connection, attribute, None) is not None, f"Connection.{attribute} is gone"
    assert _openssl.set_groups_and_sigalgs(context, b"X25519:P-256", b"ECDSA+SHA256")
    assert not _openssl.set_groups_and_sigalgs(context, b"no-such-group", b"ECDSA+SHA256")


def _connected() -> tuple[DtlsTransport, DtlsTransport]:
    client = DtlsTransport(CERT_A, is_client=True,
                           remote_fingerprints=(("sha-256", CERT_B.fingerprint()),))
    server = DtlsTransport(CERT_B, is_client=False,
                           remote_fingerprints=(("sha-256", CERT_A.fingerprint()),))
    client.start(0.0)
    for _ in range(10):
        for data in client.datagrams_to_send(0.0):
            server.receive_datagram(data, 0.0)
        for data in server.datagrams_to_send(0.0):
            client.receive_datagram(data, 0.0)
    assert client.state is server.state is DtlsState.CONNECTED
    while client.next_event() is not None:
        pass
    while server.next_event() is not None:
        pass
    return client, server


def test_fast_record_path_round_trips_and_matches_public_calls() -> None:
    client, server = _connected()
    packets = [bytes([i]) * (100 + i) for i in range(20)]
    records = client.encrypt_records(packets)
    assert len(records) == len(packets)  # one record, one datagram (RFC 8261 §5)
    assert all(len(r) == len(p) + 13 + 8 + 16 for r, p in zip(records, packets, strict=True))
    got: list[bytes] = []
    for record in records:
        plaintexts = server.receive_application_data(record, 1.0)
        assert plaintexts is not None
        got += plaintexts
    assert got == packets
    # The slow path (events) reads the same records the same way.
    client.send(b"public path")
    for datagram in client.datagrams_to_send(0.0):
        server.receive_datagram(datagram, 0.0)
    event = server.next_event()
    assert event is not None and getattr(event, "data", None) == b"public path"


def test_fast_path_hands_close_notify_to_the_slow_path() -> None:
    client, server = _connected()
    client.close(0.0)
    for datagram in client.datagrams_to_send(0.0):
        assert server.receive_application_data(datagram, 0.0) == []
    assert server.state is DtlsState.CLOSED
    assert type(server.next_event()).__name__ == "DtlsClosed"


def test_fast_path_declines_before_the_handshake() -> None:
    client = DtlsTransport(CERT_A, is_client=True)
    assert client.receive_application_data(b"\x17\xfe\xfd" + bytes(20), 0.0) is None


def test_retransmission_deadline_is_on_the_callers_clock() -> None:
    client = DtlsTransport(CERT_A, is_client=True)
    client.start(5000.0)  # a virtual clock far from the wall clock
    assert len(client.datagrams_to_send(5000.0)) == 1  # the ClientHello
    timer = client.get_timer()
    # OpenSSL's first DTLS 1.2 retransmission timeout is 1 s (RFC 6347 §4.2.4.1).
    assert timer is not None and 5000.5 <= timer <= 5001.0
    client.handle_timer(timer - 0.5)  # not due on our clock: OpenSSL is not even asked
    assert client.datagrams_to_send(timer - 0.5) == []
    assert client.get_timer() == timer


def test_certificate_validity_is_a_parameter() -> None:
    start = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=datetime.UTC)
    cert = DtlsCertificate.generate(start, random=lambda n: b"\x05" * n)
    assert cert.cert.not_valid_before_utc == start
    assert cert.cert.not_valid_after_utc == start + datetime.timedelta(days=31)
    again = DtlsCertificate.generate(start, random=lambda n: b"\x05" * n)
    assert again.cert.serial_number == cert.cert.serial_number
    assert again.key.private_numbers() == cert.key.private_numbers()
    default = DtlsCertificate.generate(random=lambda n: b"\x05" * n)
    from zmesh.sansio.webrtc.dtls import FIXED_NOT_BEFORE, chrome_not_before

    assert default.cert.not_valid_before_utc == FIXED_NOT_BEFORE  # no clock read
    assert chrome_not_before(start) == start - datetime.timedelta(days=1)


_SHARED = _connected()


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=1500), st.sampled_from([20, 21, 22, 23, 25, 63]))
def test_fast_path_drops_forged_records_and_keeps_working(body: bytes, content_type: int) -> None:
    """Hostile datagrams on the fast path: no exception, no plaintext, and the association
    still decrypts genuine records afterwards (RFC 6347 §4.1.2.7: invalid records are
    discarded silently)."""
    client, server = _SHARED
    forged = bytes([content_type]) + b"\xfe\xfd\x00\x01" + body[:6].ljust(6, b"\x00") \
        + len(body).to_bytes(2, "big") + body
    result = server.receive_application_data(forged, 2.0)
    assert result in ([], None)
    if result is None:
        server.receive_datagram(forged, 2.0)
    assert server.state is DtlsState.CONNECTED
    while server.next_event() is not None:
        pass
    (record,) = client.encrypt_records([b"still fine"])
    assert server.receive_application_data(record, 2.0) == [b"still fine"]
