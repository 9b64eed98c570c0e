"""DTLS over memory BIOs: handshake, fingerprints, MTU, Chrome-shaped ClientHello, framing."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from zmesh.sansio.webrtc.clienthello import ja4, parse_dtls_client_hello
from zmesh.sansio.webrtc.dtls import (
    DataReceived,
    DtlsCertificate,
    DtlsClosed,
    DtlsRecord,
    DtlsState,
    DtlsTransport,
    HandshakeCompleted,
    HandshakeFailed,
    split_records,
)
from zmesh.sansio.wire import ProtocolError

CERT_A = DtlsCertificate.generate(random=lambda n: b"\x01" * n)
CERT_B = DtlsCertificate.generate(random=lambda n: b"\x02" * n)

# Chrome 131-138 DTLS 1.2 ClientHello content (research notes §8, from covert-dtls captures).
CHROME_CIPHERS = (0xC02B, 0xC02F, 0xCCA9, 0xCCA8, 0xC009, 0xC013, 0xC00A, 0xC014, 0x009C,
                  0x002F, 0x0035)
CHROME_GROUPS = (0x001D, 0x0017, 0x0018)
CHROME_SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201)
CHROME_SRTP = (0x0001, 0x0008, 0x0007)
CHROME_EXTENSIONS = {0x0017, 0xFF01, 0x000A, 0x000B, 0x000D, 0x000E}
CHROME_JA4 = "dd2i110600_c45550529adf_279517677189"


def pair(fp_for_client: str | None = None) -> tuple[DtlsTransport, DtlsTransport]:
    expected = fp_for_client or CERT_B.fingerprint()
    client = DtlsTransport(CERT_A, is_client=True, remote_fingerprints=(("sha-256", expected),))
    server = DtlsTransport(CERT_B, is_client=False,
                           remote_fingerprints=(("sha-256", CERT_A.fingerprint()),))
    return client, server


def shuttle(a: DtlsTransport, b: DtlsTransport, rounds: int = 10) -> list[int]:
    sizes = []
    for _ in range(rounds):
        for data in a.datagrams_to_send(0.0):
            sizes.append(len(data))
            b.receive_datagram(data, 0.0)
        for data in b.datagrams_to_send(0.0):
            sizes.append(len(data))
            a.receive_datagram(data, 0.0)
    return sizes


def events(t: DtlsTransport) -> list[object]:
    out = []
    while (event := t.next_event()) is not None:
        out.append(event)
    return out


def test_handshake_and_data_both_ways() -> None:
    client, server = pair()
    client.start(0.0)
    sizes = shuttle(client, server)
    assert client.state is server.state is DtlsState.CONNECTED
    assert all(size <= 1200 for size in sizes)
    done = [e for e in events(client) if isinstance(e, HandshakeCompleted)]
    assert done and done[0].peer_fingerprint == CERT_B.fingerprint()
    assert done[0].cipher == "ECDHE-ECDSA-AES128-GCM-SHA256"
    events(server)
    client.send(b"x" * 1100)
    server.send(b"pong")
    shuttle(client, server, 1)
    assert events(server) == [DataReceived(b"x" * 1100)]
    assert events(client) == [DataReceived(b"pong")]
    client.close(0.0)
    shuttle(client, server, 1)
    assert any(isinstance(e, DtlsClosed) for e in events(server))


def test_server_flight_is_one_unfragmented_datagram() -> None:
    client, server = pair()
    client.start(0.0)
    server.receive_datagram(client.datagrams_to_send(0.0)[0], 0.0)
    flight = server.datagrams_to_send(0.0)
    assert len(flight) == 1
    handshake_types = [r.fragment[0] for r in split_records(flight[0])]
    assert handshake_types == [2, 11, 12, 13, 14]  # one record per message, none fragmented


def test_wrong_fingerprint_fails() -> None:
    client, server = pair(fp_for_client=":".join(["00"] * 32))
    client.start(0.0)
    shuttle(client, server)
    assert client.state is DtlsState.FAILED
    assert any(isinstance(e, HandshakeFailed) and "fingerprint" in e.reason
               for e in events(client))


def test_fingerprint_learned_after_handshake_holds_data() -> None:
    client = DtlsTransport(CERT_A, is_client=True,
                           remote_fingerprints=(("sha-256", CERT_B.fingerprint()),))
    server = DtlsTransport(CERT_B, is_client=False, remote_fingerprints=None)
    client.start(0.0)
    shuttle(client, server)
    assert client.state is DtlsState.CONNECTED
    client.send(b"early")
    shuttle(client, server, 1)
    assert server.state is DtlsState.HANDSHAKING and events(server) == []
    server.set_remote_fingerprints((("sha-256", CERT_A.fingerprint()),), 0.0)
    got = events(server)
    assert isinstance(got[0], HandshakeCompleted) and got[1] == DataReceived(b"early")


def test_client_hello_matches_chrome() -> None:
    client, _ = pair()
    client.start(0.0)
    first = client.datagrams_to_send(0.0)
    hello = parse_dtls_client_hello(first)
    assert hello.version == 0xFEFD
    assert hello.ciphers == CHROME_CIPHERS
    assert hello.groups == CHROME_GROUPS
    assert hello.signature_algorithms == CHROME_SIGALGS
    assert hello.srtp_profiles == CHROME_SRTP
    assert set(hello.extension_types) == CHROME_EXTENSIONS
    assert hello.session_id == b"" and hello.cookie == b""
    assert ja4(hello) == CHROME_JA4


def test_certificate_is_chrome_shaped() -> None:
    cert = CERT_A.cert
    assert cert.version.name == "v3"
    assert cert.subject.rfc4514_string() == "CN=WebRTC" == cert.issuer.rfc4514_string()
    assert len(cert.extensions) == 0
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 31
    assert cert.serial_number < 2**63
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert 270 <= len(CERT_A.der()) <= 290  # Chrome's is 280 B


def test_interop_with_plain_pyopenssl_peer() -> None:
    """A default OpenSSL DTLS server (aiortc's setup) completes a handshake with us."""
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(CERT_B.cert)
    ctx.use_privatekey(CERT_B.key)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: True)
    ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    peer = SSL.Connection(ctx, None)
    peer.set_accept_state()
    ours = DtlsTransport(CERT_A, is_client=True,
                         remote_fingerprints=(("sha-256", CERT_B.fingerprint()),))
    ours.start(0.0)
    for _ in range(6):
        for data in ours.datagrams_to_send(0.0):
            peer.bio_write(data)
        with contextlib.suppress(SSL.WantReadError):
            peer.do_handshake()
        with contextlib.suppress(SSL.WantReadError):
            ours.receive_datagram(peer.bio_read(65536), 0.0)
    assert ours.state is DtlsState.CONNECTED
    ours.send(b"hi")
    for data in ours.datagrams_to_send(0.0):
        peer.bio_write(data)
    assert peer.recv(100) == b"hi"


def test_retransmission_timer_is_exposed() -> None:
    client, _ = pair()
    client.start(100.0)
    client.datagrams_to_send(100.0)
    timer = client.get_timer()
    assert timer is not None and 100.5 <= timer <= 101.5  # OpenSSL's first timeout: 1 s
    client.handle_timer(99.0)  # early: nothing happens
    assert client.datagrams_to_send(99.0) == []


def test_garbage_does_not_break_a_connection() -> None:
    client, server = pair()
    client.start(0.0)
    shuttle(client, server)
    server.receive_datagram(b"\x17\xfe\xfd" + b"\x00" * 40, 0.0)
    client.send(b"still fine")
    shuttle(client, server, 1)
    assert DataReceived(b"still fine") in events(server)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_record_split_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        split_records(data)


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(20, 63), st.integers(0, 3), st.integers(0, 2**48 - 1),
                          st.binary(max_size=100)), min_size=1, max_size=5))
def test_record_round_trip(records: list[tuple[int, int, int, bytes]]) -> None:
    built = [DtlsRecord(t, 0xFEFD, e, s, f) for t, e, s, f in records]
    assert split_records(b"".join(r.encode() for r in built)) == built


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_client_hello_parser_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_dtls_client_hello([b"\x16\xfe\xff" + bytes(8) + len(data).to_bytes(2, "big") + data])


def test_untouched_transport_has_no_timer() -> None:
    t = DtlsTransport(CERT_A, is_client=False)
    assert t.get_timer() is None
    with pytest.raises(ProtocolError):
        t.send(b"x")


def test_lost_flight_is_retransmitted_on_openssl_clock() -> None:
    """OpenSSL's timer runs on wall-clock time: wait it out for real (about 1 s)."""
    import time

    client, server = pair()
    client.start(0.0)
    server.receive_datagram(client.datagrams_to_send(0.0)[0], 0.0)
    assert server.datagrams_to_send(0.0)  # the server flight: lost
    deadline = client.get_timer()
    assert deadline is not None
    time.sleep(deadline + 0.05)
    client.handle_timer(deadline + 0.05)
    resent = client.datagrams_to_send(deadline + 0.05)
    assert resent and parse_dtls_client_hello(resent).ciphers == CHROME_CIPHERS
    for data in resent:
        server.receive_datagram(data, 1.0)
    shuttle(client, server)
    assert client.state is server.state is DtlsState.CONNECTED
