"""The one place zmesh reaches into pyOpenSSL's private cffi handles, and where OpenSSL's wall
clock meets the sans-IO clock (DTLS 1.2, RFC 6347 §4.2.4 retransmission timers).

Why private handles (pyOpenSSL 26 has no public way to do either):

1. Chrome's ClientHello carries a supported-groups list and a signature-algorithms list
   (``docs/stealth.md``); ``SSL_CTX_set1_curves_list`` / ``SSL_CTX_set1_sigalgs_list`` are
   only reachable through ``OpenSSL._util.lib`` and ``Context._context``.
2. The per-record path. pyOpenSSL's ``Connection.send``/``recv``/``bio_read`` allocate an
   18 KiB buffer and check the error queue twice per call, and ``bio_read`` on an empty BIO
   raises ``WantReadError``; per 1200-byte record that cost about a fifth of a transfer's CPU.
   :class:`RecordIO` calls ``SSL_write``/``BIO_read``/``BIO_write``/``SSL_read`` on the
   connection's own ``SSL*`` and memory BIOs (``Connection._ssl``, ``_into_ssl``,
   ``_from_ssl``) with one reused buffer, and asks ``BIO_get_mem_data`` whether anything is
   pending instead of provoking an exception.

``tests/sansio/webrtc/test_openssl_private.py`` checks every name used here and fails loudly
(not with a silent slow path) if a pyOpenSSL upgrade moves one. :data:`AVAILABLE` is False
only when ``OpenSSL._util`` cannot be imported at all; the DTLS module then uses pyOpenSSL's
public calls for records and cannot shape the ClientHello's groups and signature algorithms.

Wall clock: OpenSSL keeps its DTLS retransmission timer on the system clock and pyOpenSSL
exposes no ``DTLS_set_timer_cb`` and no way to force a retransmission, so
:func:`retransmit_deadline` is the one place wall-clock time leaks into ``zmesh/sansio``: it
asks OpenSSL how long its timer has *left* (``DTLSv1_get_timeout``, measured on OpenSSL's
clock) and turns that into a deadline on the caller's clock (``now + remaining``).
``DtlsTransport.handle_timer(now)`` then lets OpenSSL decide by its own clock whether the
flight is due. Under real time both clocks advance together, so retransmissions happen on
time in the driver's time base; under a virtual clock they happen late (when OpenSSL's clock
agrees) or not at all. Only the DTLS handshake is affected; once connected OpenSSL runs no
timer and everything above it (SCTP, ICE) is deterministic.
"""

from __future__ import annotations

from typing import Any, Final

from OpenSSL import SSL

__all__ = ["AVAILABLE", "RecordIO", "set_groups_and_sigalgs", "retransmit_deadline"]

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
except ImportError:  # pragma: no cover - a pyOpenSSL without its private module
    _ffi = _lib = None

AVAILABLE: Final = _lib is not None

BUFFER_SIZE: Final = 1 << 16  # larger than any DTLS record (2^14 + 2048 + header)
_SSL_ERROR_WANT_READ: Final = 2  # openssl/ssl.h


def set_groups_and_sigalgs(context: SSL.Context, groups: bytes, sigalgs: bytes) -> bool:
    """Set the ClientHello's supported groups and signature algorithms (OpenSSL list syntax).
    False if OpenSSL refused either list or the private handles are missing."""
    if _lib is None:
        return False
    handle = context._context
    return bool(_lib.SSL_CTX_set1_curves_list(handle, groups) == 1
                and _lib.SSL_CTX_set1_sigalgs_list(handle, sigalgs) == 1)


def retransmit_deadline(connection: SSL.Connection, now: float) -> float | None:
    """OpenSSL's DTLS retransmission timer as a deadline on the caller's clock (see the module
    docstring: the remaining time is measured on OpenSSL's wall clock)."""
    remaining = connection.DTLSv1_get_timeout()
    return None if remaining is None else now + float(remaining)


class RecordIO:
    """Record-layer calls straight on one connection's ``SSL*`` and memory BIOs."""

    __slots__ = ("_buffer", "_from_ssl", "_into_ssl", "_ssl")

    def __init__(self, connection: SSL.Connection) -> None:
        if _lib is None:
            raise RuntimeError("pyOpenSSL's private cffi module is not available")
        self._ssl: Any = connection._ssl
        self._into_ssl: Any = connection._into_ssl
        self._from_ssl: Any = connection._from_ssl
        self._buffer: Any = _ffi.new("char[]", BUFFER_SIZE)  # reused for every record

    def encrypt(self, packets: list[bytes], out: list[bytes]) -> int:
        """One ``SSL_write`` per packet, each record appended to ``out``; returns how many
        packets were written (fewer than ``len(packets)`` means ``SSL_write`` failed on the
        next one: let pyOpenSSL report why)."""
        ssl, bio, buffer = self._ssl, self._from_ssl, self._buffer
        write, read, view = _lib.SSL_write, _lib.BIO_read, _ffi.buffer
        for index, packet in enumerate(packets):
            if write(ssl, packet, len(packet)) <= 0:
                return index
            size = read(bio, buffer, BUFFER_SIZE)
            if size > 0:
                out.append(view(buffer, size)[:])
        return len(packets)

    def feed(self, datagram: bytes) -> None:
        """Hand a received datagram to OpenSSL (a memory BIO: cannot block or fail short)."""
        _lib.BIO_write(self._into_ssl, datagram, len(datagram))

    def decrypt_datagram(self, datagram: bytes, out: list[bytes]) -> bool:
        """:meth:`feed` then :meth:`decrypt` in one call (the per-datagram receive path)."""
        _lib.BIO_write(self._into_ssl, datagram, len(datagram))
        return self.decrypt(out)

    def decrypt(self, out: list[bytes]) -> bool:
        """Read every whole application record OpenSSL can decrypt now into ``out``. False
        when something other than application data stopped it (an alert, close_notify, an
        error): the caller lets pyOpenSSL classify that."""
        ssl, buffer, into = self._ssl, self._buffer, self._into_ssl
        read, view, pending = _lib.SSL_read, _ffi.buffer, _lib.BIO_get_mem_data
        while True:
            size = read(ssl, buffer, BUFFER_SIZE)
            if size > 0:
                out.append(view(buffer, size)[:])
                # Asking the BIO is cheaper than the SSL_read that would fail with WANT_READ.
                if not pending(into, _ffi.NULL) and not _lib.SSL_pending(ssl):
                    return True
                continue
            return bool(_lib.SSL_get_error(ssl, size) == _SSL_ERROR_WANT_READ)

    def input_pending(self) -> bool:
        """Undecrypted bytes in the input BIO or decrypted bytes OpenSSL still holds."""
        return bool(_lib.BIO_get_mem_data(self._into_ssl, _ffi.NULL) or _lib.SSL_pending(self._ssl))

    def output_pending(self) -> bool:
        """Bytes OpenSSL wrote that nobody has read yet (records, alerts, a flight)."""
        return bool(_lib.BIO_get_mem_data(self._from_ssl, _ffi.NULL))
