"""A node's persistent state directory: identity key, link certificate, record sequence.

Layout (directory mode 0700, every file 0600, written atomically via a temp file + rename)::

    identity.key     Ed25519 private key, PKCS#8 PEM     the long-term identity (node id = SHA-256
                                                           of its raw public key)
    link.key         ECDSA P-256 private key, PKCS#8 PEM the WebSocket link's TLS key
    link.crt         self-signed X.509 certificate       pinned by the signed peer record
    sphinx.keys      per-epoch X25519 Sphinx keys        written by the node runtime
    record.seq       last peer-record sequence number    so a restarted node's records stay newer

Nothing here is logged; only the node id and the certificate digest are ever printed.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import pathlib
import ssl
import stat
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from zmesh.sansio.signaling.peer_record import node_id_of

__all__ = ["NodeIdentity", "StateDir", "UnsafeStateDir", "write_private", "cert_sha256"]

#: The link certificate's lifetime; the pin is the digest, so expiry only matters to TLS
#: libraries that check it (ours do not), but a bounded value keeps the certificate ordinary.
CERT_LIFETIME = datetime.timedelta(days=3650)


class UnsafeStateDir(Exception):
    """The state directory or a key file is readable by other users."""


def write_private(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` so that only the owner can ever read it (no window with wider modes)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def cert_sha256(cert_der: bytes) -> bytes:
    return hashlib.sha256(cert_der).digest()


@dataclass(frozen=True)
class NodeIdentity:
    """Everything secret a node holds in memory for its links and records."""

    identity: Ed25519PrivateKey
    link_cert_pem: bytes
    link_key_pem: bytes
    link_cert_der: bytes

    @property
    def identity_public(self) -> bytes:
        return self.identity.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.identity_public)

    @property
    def cert_sha256(self) -> bytes:
        return cert_sha256(self.link_cert_der)

    def server_ssl_context(self) -> ssl.SSLContext:
        """TLS server context presenting the self-signed link certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        # load_cert_chain only reads files; a private temp dir keeps the key at 0600.
        with tempfile.TemporaryDirectory() as tmp:
            cert = pathlib.Path(tmp, "c.pem")
            key = pathlib.Path(tmp, "k.pem")
            write_private(cert, self.link_cert_pem)
            write_private(key, self.link_key_pem)
            ctx.load_cert_chain(cert, key)
        return ctx

    @classmethod
    def generate(cls) -> NodeIdentity:
        identity = Ed25519PrivateKey.generate()
        key_pem, cert_pem = _make_link_certificate()
        return cls.from_pems(identity, key_pem, cert_pem)

    @classmethod
    def from_pems(
        cls, identity: Ed25519PrivateKey, key_pem: bytes, cert_pem: bytes
    ) -> NodeIdentity:
        cert = x509.load_pem_x509_certificate(cert_pem)
        return cls(identity, cert_pem, key_pem, cert.public_bytes(serialization.Encoding.DER))


def client_ssl_context() -> ssl.SSLContext:
    """TLS client context for links: no CA check, because the certificate is pinned by digest
    (peer record) and bound into the identity handshake instead."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _make_link_certificate() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zmesh-link")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + CERT_LIFETIME)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


class StateDir:
    """Loads or creates a node's state under ``path`` with owner-only permissions."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path).expanduser()

    def _ensure_dir(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            # Tighten rather than refuse: the directory is ours, created by an earlier run or
            # by mkdir -p with a default umask.
            os.chmod(self.path, 0o700)

    def _read_private(self, name: str) -> bytes | None:
        p = self.path / name
        if not p.exists():
            return None
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            raise UnsafeStateDir(f"{p} has mode {mode:o}; expected 600 (chmod 600 {p})")
        return p.read_bytes()

    def load_or_create(self) -> NodeIdentity:
        self._ensure_dir()
        ident_pem = self._read_private("identity.key")
        if ident_pem is None:
            identity = Ed25519PrivateKey.generate()
            ident_pem = identity.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private(self.path / "identity.key", ident_pem)
        loaded = serialization.load_pem_private_key(ident_pem, password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise UnsafeStateDir("identity.key is not an Ed25519 key")
        key_pem = self._read_private("link.key")
        cert_pem = self._read_private("link.crt")
        if key_pem is None or cert_pem is None:
            key_pem, cert_pem = _make_link_certificate()
            write_private(self.path / "link.key", key_pem)
            write_private(self.path / "link.crt", cert_pem)
        return NodeIdentity.from_pems(loaded, key_pem, cert_pem)

    def next_seq(self, now: float) -> int:
        """A record sequence number above every earlier one, even across clock steps back."""
        self._ensure_dir()
        raw = self._read_private("record.seq")
        last = int(raw.decode()) if raw and raw.strip().isdigit() else 0
        seq = max(last + 1, int(now * 1000))
        write_private(self.path / "record.seq", str(seq).encode())
        return seq

    def read_secret(self, name: str) -> bytes | None:
        self._ensure_dir()
        return self._read_private(name)

    def write_secret(self, name: str, data: bytes) -> None:
        self._ensure_dir()
        write_private(self.path / name, data)
