"""DTLS 1.2 (RFC 6347) for WebRTC (RFC 8827 §6.5, RFC 5763 fingerprints) over pyOpenSSL memory BIOs.

Roles come from ``a=setup`` (RFC 8842): the *active* side is the DTLS client. The peer's
certificate is accepted during the handshake and then compared against every ``a=fingerprint``
of a hash we know (RFC 8122 §5: at least one, and all of them, must match); application data and
:class:`HandshakeCompleted` are held back until that check passes, because in offer/answer the
ClientHello can arrive before the answer that carries the fingerprint.

The ClientHello is made to carry the same fields as Chromium's DTLS 1.2 ClientHello (research
notes §8 and §10): 11 cipher suites in Chrome's order, groups x25519/P-256/P-384, Chrome's nine
signature algorithms, use_srtp with Chrome's three profiles, extended master secret, no
session ticket and no encrypt-then-MAC. Groups and signature algorithms can only be set through
pyOpenSSL's private cffi handles, which live with the per-record fast path in
:mod:`._openssl`; what remains different (OpenSSL's fixed extension order, the ServerHello
shape) is listed in ``docs/stealth.md``.

Time: this module reads no clock. OpenSSL runs its DTLS retransmission timer on the system
clock; :func:`._openssl.retransmit_deadline` (the one documented leak) turns its remaining time
into a deadline on the caller's clock for :meth:`DtlsTransport.get_timer`, and
:meth:`DtlsTransport.handle_timer` lets OpenSSL decide by its own clock. Certificate validity
is calendar time, which the sans-IO ``now`` is not: :meth:`DtlsCertificate.generate` takes it
as ``not_before`` (the trio driver passes the wall-clock time).

Handshake records leave in datagrams of at most ``mtu`` bytes (Chrome: 1200), packed at record
boundaries; OpenSSL is told the MTU and not to query it (``OP_NO_QUERY_MTU``), otherwise it
fragments the flight as if the MTU were 256 bytes.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import hmac
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from zmesh.sansio.webrtc import _openssl
from zmesh.sansio.wire import (
    DEFAULT_RANDOM,
    LocalProtocolError,
    MalformedInput,
    RandomSource,
    Reader,
    TruncatedInput,
)

__all__ = [
    "DtlsCertificate",
    "DtlsTransport",
    "DtlsState",
    "DtlsEvent",
    "HandshakeCompleted",
    "HandshakeFailed",
    "DataReceived",
    "DtlsClosed",
    "DtlsRecord",
    "split_records",
    "looks_like_dtls",
    "CHROME_CIPHERS",
    "DTLS_MTU",
    "FIXED_NOT_BEFORE",
    "chrome_not_before",
]

DTLS_MTU: Final = 1200  # Chrome's DTLS datagram ceiling (research notes §8: 1200-B fragments)
RECORD_HEADER: Final = 13  # type, version, epoch, sequence(48), length (RFC 6347 §4.1)
MAX_RECORD: Final = 16384 + 2048  # RFC 6347 §4.1: plaintext 2^14 plus expansion
MAX_PENDING_PLAINTEXT: Final = 256  # records held while the fingerprint is unknown
MAX_EVENTS: Final = 4096
#: Datagrams waiting for the caller: more than one full 5 MiB SCTP window of 1200-byte packets.
MAX_OUT: Final = 16384

CHROME_CIPHERS: Final = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:"
    b"ECDHE-RSA-AES256-SHA:AES128-GCM-SHA256:AES128-SHA:AES256-SHA:@SECLEVEL=0"
)  # @SECLEVEL=0 keeps rsa_pkcs1_sha1 (0x0201) in the signature algorithms, as Chrome sends it
CHROME_SRTP: Final = b"SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_256_GCM:SRTP_AEAD_AES_128_GCM"
CHROME_GROUPS: Final = b"X25519:P-256:P-384"
CHROME_SIGALGS: Final = (
    b"ECDSA+SHA256:rsa_pss_rsae_sha256:RSA+SHA256:ECDSA+SHA384:rsa_pss_rsae_sha384:"
    b"RSA+SHA384:rsa_pss_rsae_sha512:RSA+SHA512:RSA+SHA1"
)
_OP_NO_ENCRYPT_THEN_MAC: Final = 0x80000  # SSL_OP_NO_ENCRYPT_THEN_MAC, not exported by pyOpenSSL
_DTLS1_2_VERSION: Final = 0xFEFD  # DTLS1_2_VERSION, not exported by pyOpenSSL
_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha-1": hashes.SHA1,
    "sha-224": hashes.SHA224,
    "sha-256": hashes.SHA256,
    "sha-384": hashes.SHA384,
    "sha-512": hashes.SHA512,
}
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


#: Validity start of certificates generated without one (tests, simulator): no clock is read.
FIXED_NOT_BEFORE: Final = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def chrome_not_before(wall_clock: datetime.datetime) -> datetime.datetime:
    """Chrome's validity start for a certificate made at ``wall_clock``: one day earlier, so
    a peer whose clock is a little behind still sees a valid certificate."""
    return wall_clock - datetime.timedelta(days=1)


def looks_like_dtls(data: bytes | bytearray | memoryview) -> bool:
    """RFC 7983 §7: DTLS records start with a content type byte in 20..63."""
    return len(data) > 0 and 20 <= data[0] <= 63


@dataclass(frozen=True)
class DtlsRecord:
    content_type: int
    version: int
    epoch: int
    sequence: int
    fragment: bytes

    def encode(self) -> bytes:
        return (bytes([self.content_type]) + self.version.to_bytes(2, "big")
                + self.epoch.to_bytes(2, "big") + self.sequence.to_bytes(6, "big")
                + len(self.fragment).to_bytes(2, "big") + self.fragment)


def split_records(data: bytes | bytearray | memoryview) -> list[DtlsRecord]:
    """Parse a datagram into DTLS records (RFC 6347 §4.1); raise on any framing error."""
    reader = Reader(data)
    records = []
    while not reader.at_end():
        content_type = reader.u8()
        if not 20 <= content_type <= 63:
            raise MalformedInput(f"DTLS content type {content_type} outside 20..63")
        version = reader.u16()
        if version >> 8 != 0xFE:
            raise MalformedInput(f"DTLS record version {version:#06x}")
        epoch = reader.u16()
        sequence = reader.uint(6)
        length = reader.u16()
        if length > MAX_RECORD:
            raise MalformedInput(f"DTLS record of {length} bytes")
        records.append(DtlsRecord(content_type, version, epoch, sequence, reader.bytes_(length)))
    if not records:
        raise TruncatedInput("empty datagram")
    return records


def _record_spans(data: bytes) -> list[tuple[int, int]]:
    """Offsets of whole records in OpenSSL's output buffer (our own output: trusted framing)."""
    spans = []
    pos = 0
    while pos + RECORD_HEADER <= len(data):
        end = pos + RECORD_HEADER + int.from_bytes(data[pos + 11 : pos + 13], "big")
        spans.append((pos, min(end, len(data))))
        pos = end
    if pos < len(data):
        spans.append((pos, len(data)))
    return spans


def fingerprint_of(cert: x509.Certificate, algorithm: str = "sha-256") -> str:
    digest = cert.fingerprint(_HASHES[algorithm]())
    return ":".join(f"{b:02X}" for b in digest)


@dataclass(frozen=True)
class DtlsCertificate:
    """An ECDSA P-256 self-signed certificate shaped like Chrome's (research notes §8):
    v3, ``CN=WebRTC`` as subject and issuer, a 63-bit serial, valid from a day before ``now`` for
    31 days, no extensions."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(cls, not_before: datetime.datetime | None = None, *,
                 random: RandomSource = DEFAULT_RANDOM) -> DtlsCertificate:
        """Key and serial come from ``random``; validity starts at ``not_before`` and lasts
        31 days. X.509 validity is calendar time, which the sans-IO clock is not, so it is a
        parameter: a driver passes the wall-clock time a day ago, as Chrome does
        (:func:`chrome_not_before`). Without it the certificate starts at
        :data:`FIXED_NOT_BEFORE`, which suits tests and the simulator but would be an odd,
        expired validity on a real wire. The ECDSA signature uses OpenSSL's randomness."""
        scalar = int.from_bytes(random(40), "big") % (_P256_ORDER - 1) + 1
        key = ec.derive_private_key(scalar, ec.SECP256R1())
        start = FIXED_NOT_BEFORE if not_before is None else not_before
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "WebRTC")])
        serial = (int.from_bytes(random(8), "big") >> 1) or 1
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=31))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def fingerprint(self, algorithm: str = "sha-256") -> str:
        return fingerprint_of(self.cert, algorithm)

    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


class DtlsState(enum.Enum):
    NEW = "new"
    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(frozen=True)
class HandshakeCompleted:
    cipher: str
    srtp_profile: bytes
    peer_fingerprint: str


@dataclass(frozen=True)
class HandshakeFailed:
    reason: str


@dataclass(frozen=True)
class DataReceived:
    data: bytes


@dataclass(frozen=True)
class DtlsClosed:
    reason: str


DtlsEvent = HandshakeCompleted | HandshakeFailed | DataReceived | DtlsClosed


def chrome_like_context(certificate: DtlsCertificate) -> SSL.Context:
    """An OpenSSL DTLS 1.2 context whose ClientHello fields match Chromium's (module docstring)."""
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.set_min_proto_version(_DTLS1_2_VERSION)
    ctx.set_max_proto_version(_DTLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET | _OP_NO_ENCRYPT_THEN_MAC | SSL.OP_NO_QUERY_MTU
                    | SSL.OP_NO_RENEGOTIATION)
    ctx.set_cipher_list(CHROME_CIPHERS)
    ctx.set_tlsext_use_srtp(CHROME_SRTP)
    if _openssl.AVAILABLE and not _openssl.set_groups_and_sigalgs(ctx, CHROME_GROUPS,
                                                                   CHROME_SIGALGS):
        raise LocalProtocolError("OpenSSL refused Chrome's groups or signature algorithms")
    # Any certificate passes the handshake; the SDP fingerprint is what authenticates it.
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_args: True)
    ctx.use_certificate(certificate.cert)
    ctx.use_privatekey(certificate.key)
    return ctx


class DtlsTransport:
    """One DTLS 1.2 association, sans-IO: datagrams in, datagrams and events out."""

    def __init__(
        self,
        certificate: DtlsCertificate,
        *,
        is_client: bool,
        remote_fingerprints: tuple[tuple[str, str], ...] | None = None,
        mtu: int = DTLS_MTU,
    ) -> None:
        self.is_client = is_client
        self.certificate = certificate
        self.mtu = mtu
        self.state = DtlsState.NEW
        self._remote_fingerprints = remote_fingerprints
        self._conn = SSL.Connection(chrome_like_context(certificate), None)
        self._conn.set_ciphertext_mtu(mtu)
        if is_client:
            self._conn.set_connect_state()
        else:
            self._conn.set_accept_state()
        self._out: deque[bytes] = deque(maxlen=MAX_OUT)  # datagrams: oldest dropped
        self._events: deque[DtlsEvent] = deque()
        self._records = _openssl.RecordIO(self._conn) if _openssl.AVAILABLE else None
        self._timer: float | None = None
        self._handshake_done = False  # OpenSSL finished; fingerprint may still be pending
        self._held: deque[bytes] = deque()  # plaintext received before the fingerprint check
        self.peer_fingerprint: str | None = None
        self.records_dropped = 0
        #: The first datagram we sent and the first we received (fingerprint tests read them).
        self.first_sent: bytes | None = None
        self.first_received: bytes | None = None

    # -- commands --------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin the handshake; the client emits its ClientHello now."""
        if self.state is not DtlsState.NEW:
            return
        self.state = DtlsState.HANDSHAKING
        self._step_handshake(now)

    def set_remote_fingerprints(
        self, fingerprints: tuple[tuple[str, str], ...], now: float
    ) -> None:
        self._remote_fingerprints = fingerprints
        if self._handshake_done and self.state is DtlsState.HANDSHAKING:
            self._verify_peer()

    def send(self, data: bytes) -> None:
        """Encrypt one application record (one SCTP packet, RFC 8261 §5)."""
        if self.state is not DtlsState.CONNECTED:
            raise LocalProtocolError(f"DTLS send in state {self.state.value}")
        if self._records is not None:
            records: list[bytes] = []
            if self._records.encrypt([data], records):
                self._out.extend(records)
                return
        try:
            self._conn.send(data)
        except SSL.Error as exc:
            self._fail(f"send: {exc}")
            return
        out = self._conn.bio_read(MAX_RECORD + RECORD_HEADER)
        if out:
            self._out.append(out)  # one record: one datagram (RFC 8261 §5)

    def encrypt_records(self, packets: list[bytes]) -> list[bytes]:
        """Encrypt one application record per packet (RFC 8261 §5) and return the datagrams
        at once, each one record, bypassing the output queue. The per-packet send path: one
        ``SSL_write`` and one ``BIO_read`` per record into one reused buffer."""
        if self.state is not DtlsState.CONNECTED:
            raise LocalProtocolError(f"DTLS send in state {self.state.value}")
        if self._records is None or self._out:
            for packet in packets:
                self.send(packet)
            return self.datagrams_to_send(0.0)
        records: list[bytes] = []
        written = self._records.encrypt(packets, records)
        if written < len(packets):
            # A failed write (the peer closed, an internal error): the slow path reports it;
            # what was encrypted so far keeps its order.
            self._out.extend(records)
            for packet in packets[written:]:
                if self.state is DtlsState.CONNECTED:
                    self.send(packet)
            return self.datagrams_to_send(0.0)
        return records

    def close(self, now: float) -> None:
        """Send close_notify (RFC 5246 §7.2.1) and stop."""
        if self.state in (DtlsState.CLOSED, DtlsState.FAILED):
            return
        if self.state is DtlsState.CONNECTED:
            with contextlib.suppress(SSL.Error):
                self._conn.shutdown()
            self._flush()
        self.state = DtlsState.CLOSED
        self._timer = None
        self._events.append(DtlsClosed("local close"))

    # -- inputs ----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        if self.state in (DtlsState.CLOSED, DtlsState.FAILED):
            return
        if self.first_received is None:
            self.first_received = bytes(data)
        if self.state is DtlsState.NEW:
            # The server learns of the handshake from the ClientHello itself.
            self.state = DtlsState.HANDSHAKING
        if self._records is not None and self._handshake_done:
            self._records.feed(data)
        else:
            try:
                self._conn.bio_write(data)
            except SSL.Error:
                self.records_dropped += 1
                return
        if not self._handshake_done:
            self._step_handshake(now)
            if not self._handshake_done:
                return
        self._read_application(now)

    def receive_application_data(self, data: bytes, now: float) -> list[bytes] | None:
        """Per-packet fast path once connected: decrypt every record of ``data`` and return
        the plaintexts directly (no events), in one pass through OpenSSL. Returns ``None``
        without consuming ``data`` when the fast path does not apply (handshake not finished,
        no cffi handles, retransmission timer running); the caller then uses
        :meth:`receive_datagram`. Anything other than application data (an alert,
        close_notify) is handed to the slow path after the records before it, and its
        results come out as events as usual."""
        records = self._records
        if self.state is not DtlsState.CONNECTED or self._timer is not None or records is None:
            return None
        plaintexts: list[bytes] = []
        if not records.decrypt_datagram(data, plaintexts):
            self._read_slow()
            self._flush()
            self._update_timer(now)
        # Anything OpenSSL wrote in answer stays in its BIO until has_output() finds it.
        return plaintexts

    def handle_timer(self, now: float) -> None:
        if self._timer is None or now < self._timer:
            return
        if self.state is DtlsState.HANDSHAKING or (self.state is DtlsState.CONNECTED
                                                   and self._conn.DTLSv1_get_timeout()):
            try:
                self._conn.DTLSv1_handle_timeout()
            except SSL.Error as exc:
                self._fail(f"retransmission: {exc}")
                return
            self._flush()
        self._update_timer(now)

    # -- outputs ---------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        self._flush()
        out = list(self._out)
        self._out.clear()
        if out and self.first_sent is None:
            self.first_sent = out[0]
        return out

    def get_timer(self) -> float | None:
        return self._timer

    def next_event(self) -> DtlsEvent | None:
        return self._events.popleft() if self._events else None

    def has_events(self) -> bool:
        return bool(self._events)

    @property
    def srtp_profile(self) -> bytes:
        return bytes(self._conn.get_selected_srtp_profile() or b"")

    def cipher_name(self) -> str:
        return str(self._conn.get_cipher_name() or "")

    # -- internals -------------------------------------------------------------------------

    def _step_handshake(self, now: float) -> None:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            self._flush()
            self._update_timer(now)
            return
        except SSL.Error as exc:
            self._flush()  # an alert may be waiting to go out
            self._fail(f"handshake: {_ssl_reason(exc)}")
            return
        self._flush()
        self._handshake_done = True
        self._update_timer(now)  # the last flight may still need retransmitting
        if self._remote_fingerprints is not None:
            self._verify_peer()

    def _verify_peer(self) -> None:
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        if cert is None:
            self._fail("peer sent no certificate")
            return
        known = [(alg, value) for alg, value in self._remote_fingerprints or () if alg in _HASHES]
        if not known:
            self._fail("no a=fingerprint with a hash function we support")
            return
        for alg, value in known:
            if not hmac.compare_digest(fingerprint_of(cert, alg).encode(), value.upper().encode()):
                self._fail("peer certificate does not match a=fingerprint")
                return
        self.peer_fingerprint = fingerprint_of(cert)
        self.state = DtlsState.CONNECTED
        self._events.append(HandshakeCompleted(self.cipher_name(), self.srtp_profile,
                                               self.peer_fingerprint))
        while self._held:
            self._events.append(DataReceived(self._held.popleft()))

    def _read_application(self, now: float) -> None:
        records = self._records
        if records is None:
            self._read_slow()
        else:
            plaintexts: list[bytes] = []
            clean = records.decrypt(plaintexts)
            for plaintext in plaintexts:
                self._accept_plaintext(plaintext)
            if not clean:
                self._read_slow()  # close_notify, an alert or an error: pyOpenSSL names it
        self._flush()
        if self._timer is not None or not self._handshake_done:
            self._update_timer(now)

    def _read_slow(self) -> None:
        """Records through pyOpenSSL's public calls, which turn OpenSSL's errors into
        exceptions (the cffi path only tells application data from everything else)."""
        while self.state not in (DtlsState.CLOSED, DtlsState.FAILED):
            try:
                data = self._conn.recv(MAX_RECORD)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.state = DtlsState.CLOSED
                self._timer = None
                self._events.append(DtlsClosed("peer sent close_notify"))
                break
            except SSL.Error as exc:
                self._flush()
                self._fail(f"record: {_ssl_reason(exc)}")
                break
            if not data:
                break
            self._accept_plaintext(data)

    def _accept_plaintext(self, data: bytes) -> None:
        if self.state is DtlsState.CONNECTED:
            if len(self._events) >= MAX_EVENTS:
                self.records_dropped += 1  # the caller stopped draining; SCTP will resend
                return
            self._events.append(DataReceived(data))
        elif len(self._held) < MAX_PENDING_PLAINTEXT:
            self._held.append(data)
        else:
            self.records_dropped += 1

    def has_output(self) -> bool:
        """Datagrams queued here or bytes OpenSSL wrote and nobody has read yet."""
        return bool(self._out) or (self._records is not None and self._records.output_pending())

    def _output_pending(self) -> bool:
        return self._records is None or self._records.output_pending()

    def _flush(self) -> None:
        """Move OpenSSL's output into datagrams of at most ``mtu`` bytes, cut at records."""
        if not self._output_pending():
            return  # the common case; bio_read() would raise WantReadError, which is slow
        try:
            pending = self._conn.bio_read(1 << 20)
        except SSL.WantReadError:
            return
        if not pending:
            return
        if len(pending) <= self.mtu:
            self._out.append(pending)
            return
        datagram = bytearray()
        for start, end in _record_spans(pending):
            if datagram and len(datagram) + (end - start) > self.mtu:
                self._out.append(bytes(datagram))
                datagram = bytearray()
            datagram += pending[start:end]
        if datagram:
            self._out.append(bytes(datagram))

    def _update_timer(self, now: float) -> None:
        self._timer = _openssl.retransmit_deadline(self._conn, now)

    def _fail(self, reason: str) -> None:
        if self.state in (DtlsState.FAILED, DtlsState.CLOSED):
            return
        was_connected = self.state is DtlsState.CONNECTED
        self.state = DtlsState.FAILED
        self._timer = None
        self._events.append(DtlsClosed(reason) if was_connected else HandshakeFailed(reason))


def _ssl_reason(exc: Any) -> str:
    try:
        return "; ".join(str(part[2]) for part in exc.args[0])
    except (IndexError, TypeError, KeyError):
        return str(exc)

