"""SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), sans-IO.

Message codecs for both directions, and :class:`Socks5ServerConnection`, the server side of one
client connection up to the CONNECT reply. After a successful reply the driver splices bytes
directly; the codec is done.

Parsers take the bytes buffered so far and return ``(message, bytes_used)`` or ``None`` when
more bytes are needed; a defect raises :class:`Socks5Error` (a ``MalformedInput``) whose
``reply`` is the REP code RFC 1928 §6 prescribes for it (0x07 unsupported command, 0x08
unsupported address type, 0x01 otherwise). Only CONNECT is served; BIND and UDP ASSOCIATE get
0x07. zmesh's own choices where RFC 1928 names no code: a hostname that is not a valid DNS name
gets 0x04 (host unreachable: no resolver could find it) and CONNECT to port 0 gets 0x05
(nothing can listen there). Hostnames are passed on unresolved (the exit resolves them), which
is what ``curl --socks5-hostname`` and ``socks5h://`` clients expect.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from zmesh.sansio.streams import AddressType, ResetReason, validate_hostname
from zmesh.sansio.wire import LocalProtocolError, MalformedInput, OversizedInput, Reader

__all__ = [
    "SOCKS_VERSION",
    "AUTH_VERSION",
    "Method",
    "Command",
    "Reply",
    "Socks5Error",
    "Greeting",
    "MethodSelection",
    "UserPassRequest",
    "UserPassReply",
    "Request",
    "ReplyMessage",
    "parse_greeting",
    "parse_method_selection",
    "parse_userpass_request",
    "parse_userpass_reply",
    "parse_request",
    "parse_reply",
    "reply_for_reset",
    "reset_for_reply",
    "ServerState",
    "ConnectRequested",
    "HandshakeFailed",
    "Socks5Event",
    "Socks5ServerConnection",
]

SOCKS_VERSION: Final = 0x05
AUTH_VERSION: Final = 0x01  # RFC 1929 §2 sub-negotiation version
#: Bytes a client may send after its request before our reply (optimistic data); the driver
#: forwards them once the stream is open.
MAX_EARLY_DATA: Final = 65_536


class Method(enum.IntEnum):
    NO_AUTH = 0x00
    GSSAPI = 0x01
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class Command(enum.IntEnum):
    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03


class Reply(enum.IntEnum):
    """RFC 1928 §6 REP values."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


def reply_for_reset(reason: ResetReason) -> Reply:
    """The SOCKS reply for a stream that the exit (or the circuit) refused or reset."""
    return Reply(reason.socks_reply)


def reset_for_reply(reply: Reply) -> ResetReason:
    return ResetReason.from_socks_reply(int(reply))


class Socks5Error(MalformedInput):
    """A malformed or unsupported SOCKS message; ``reply`` is the REP code to answer with."""

    def __init__(self, message: str, reply: Reply = Reply.GENERAL_FAILURE) -> None:
        super().__init__(message)
        self.reply = reply


# ------------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Greeting:
    """Client → server: VER | NMETHODS | METHODS (RFC 1928 §3)."""

    methods: tuple[int, ...]

    def encode(self) -> bytes:
        if not 1 <= len(self.methods) <= 255:
            raise LocalProtocolError("1 to 255 methods")
        return bytes((SOCKS_VERSION, len(self.methods), *self.methods))


@dataclass(frozen=True, slots=True)
class MethodSelection:
    """Server → client: VER | METHOD."""

    method: int

    def encode(self) -> bytes:
        return bytes((SOCKS_VERSION, self.method))


@dataclass(frozen=True, slots=True)
class UserPassRequest:
    """Client → server: VER(1) | ULEN | UNAME | PLEN | PASSWD (RFC 1929 §2)."""

    username: bytes
    password: bytes

    def encode(self) -> bytes:
        if not 1 <= len(self.username) <= 255 or len(self.password) > 255:
            raise LocalProtocolError("username 1..255 bytes, password 0..255 bytes")
        return (
            bytes((AUTH_VERSION, len(self.username)))
            + self.username
            + bytes((len(self.password),))
            + self.password
        )


@dataclass(frozen=True, slots=True)
class UserPassReply:
    """Server → client: VER(1) | STATUS (0 = success)."""

    status: int

    def encode(self) -> bytes:
        return bytes((AUTH_VERSION, self.status))


@dataclass(frozen=True, slots=True)
class Request:
    """Client → server: VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT (RFC 1928 §4)."""

    command: Command
    host: str  # a hostname, or the canonical text of an IP literal
    port: int

    @property
    def address_type(self) -> AddressType:
        return _address_type(self.host)

    def encode(self) -> bytes:
        return bytes((SOCKS_VERSION, self.command, 0x00)) + _encode_address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class ReplyMessage:
    """Server → client: VER | REP | RSV | ATYP | BND.ADDR | BND.PORT (RFC 1928 §6)."""

    reply: Reply
    host: str = "0.0.0.0"
    port: int = 0

    def encode(self) -> bytes:
        return bytes((SOCKS_VERSION, self.reply, 0x00)) + _encode_address(self.host, self.port)


def _address_type(host: str) -> AddressType:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return AddressType.DOMAIN
    return AddressType.IPV4 if addr.version == 4 else AddressType.IPV6


def _encode_address(host: str, port: int) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"port {port}")
    atype = _address_type(host)
    if atype is AddressType.DOMAIN:
        name = host.encode("ascii", "replace")
        if not 1 <= len(name) <= 255:
            raise LocalProtocolError("hostname of 1..255 bytes")
        body = bytes((atype, len(name))) + name
    else:
        body = bytes((atype,)) + ipaddress.ip_address(host).packed
    return body + port.to_bytes(2, "big")


def _need(buf: bytes | bytearray, n: int) -> bool:
    return len(buf) >= n


def parse_greeting(buf: bytes | bytearray) -> tuple[Greeting, int] | None:
    if not _need(buf, 2):
        return None
    if buf[0] != SOCKS_VERSION:
        raise Socks5Error(f"greeting version {buf[0]}")
    n = buf[1]
    if n == 0:
        raise Socks5Error("greeting offers no methods")
    if not _need(buf, 2 + n):
        return None
    return Greeting(tuple(buf[2 : 2 + n])), 2 + n


def parse_method_selection(buf: bytes | bytearray) -> tuple[MethodSelection, int] | None:
    if not _need(buf, 2):
        return None
    if buf[0] != SOCKS_VERSION:
        raise Socks5Error(f"method selection version {buf[0]}")
    return MethodSelection(buf[1]), 2


def parse_userpass_request(buf: bytes | bytearray) -> tuple[UserPassRequest, int] | None:
    if not _need(buf, 2):
        return None
    if buf[0] != AUTH_VERSION:
        raise Socks5Error(f"auth version {buf[0]}")
    ulen = buf[1]
    if ulen == 0:
        raise Socks5Error("empty username")
    if not _need(buf, 3 + ulen):
        return None
    plen = buf[2 + ulen]
    end = 3 + ulen + plen
    if not _need(buf, end):
        return None
    return UserPassRequest(bytes(buf[2 : 2 + ulen]), bytes(buf[3 + ulen : end])), end


def parse_userpass_reply(buf: bytes | bytearray) -> tuple[UserPassReply, int] | None:
    if not _need(buf, 2):
        return None
    if buf[0] != AUTH_VERSION:
        raise Socks5Error(f"auth reply version {buf[0]}")
    return UserPassReply(buf[1]), 2


def _parse_addressed(buf: bytes | bytearray, what: str) -> tuple[int, str, int, int] | None:
    """VER | X | RSV | ATYP | ADDR | PORT → (X, host, port, used), shared by request/reply."""
    if not _need(buf, 4):
        return None
    if buf[0] != SOCKS_VERSION:
        raise Socks5Error(f"{what} version {buf[0]}")
    if buf[2] != 0x00:
        raise Socks5Error(f"{what} reserved byte {buf[2]:#x}")
    try:
        atype = AddressType(buf[3])
    except ValueError:
        raise Socks5Error(
            f"{what} address type {buf[3]}", Reply.ADDRESS_TYPE_NOT_SUPPORTED
        ) from None
    if atype is AddressType.DOMAIN:
        if not _need(buf, 5):
            return None
        addr_len = 1 + buf[4]
    else:
        addr_len = 4 if atype is AddressType.IPV4 else 16
    end = 4 + addr_len + 2
    if not _need(buf, end):
        return None
    r = Reader(bytes(buf[4:end]))
    if atype is AddressType.IPV4:
        host = str(ipaddress.IPv4Address(r.bytes_(4)))
    elif atype is AddressType.IPV6:
        host = str(ipaddress.IPv6Address(r.bytes_(16)))
    else:
        raw = r.bytes_(r.u8())
        try:
            host = raw.decode("ascii")
            validate_hostname(host)
        except (UnicodeDecodeError, MalformedInput):
            # A name no resolver could look up: the answer RFC 1928 has for that is 0x04.
            raise Socks5Error(
                f"{what} hostname is not a DNS name", Reply.HOST_UNREACHABLE
            ) from None
    return buf[1], host, r.u16(), end


def parse_request(buf: bytes | bytearray) -> tuple[Request, int] | None:
    if _need(buf, 2) and buf[0] == SOCKS_VERSION and buf[1] not in tuple(Command):
        raise Socks5Error(f"command {buf[1]}", Reply.COMMAND_NOT_SUPPORTED)
    parsed = _parse_addressed(buf, "request")
    if parsed is None:
        return None
    cmd, host, port, used = parsed
    if port == 0 and cmd == Command.CONNECT:
        raise Socks5Error("CONNECT to port 0", Reply.CONNECTION_REFUSED)
    return Request(Command(cmd), host, port), used


def parse_reply(buf: bytes | bytearray) -> tuple[ReplyMessage, int] | None:
    parsed = _parse_addressed(buf, "reply")
    if parsed is None:
        return None
    rep, host, port, used = parsed
    try:
        reply = Reply(rep)
    except ValueError:
        raise Socks5Error(f"reply code {rep}") from None
    return ReplyMessage(reply, host, port), used


# ------------------------------------------------------------------------ server machine


class ServerState(enum.Enum):
    GREETING = "greeting"  # waiting for the method list
    AUTH = "auth"  # username/password selected, waiting for the credentials
    REQUEST = "request"  # waiting for the CONNECT request
    CONNECTING = "connecting"  # request handed to the application, waiting for send_reply
    ESTABLISHED = "established"  # success reply queued: the driver splices from here on
    CLOSED = "closed"  # a failure reply (or none) queued: flush, then close


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    host: str
    port: int
    address_type: AddressType
    username: str | None  # who authenticated, when username/password was used


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """No acceptable method, or bad credentials: flush ``data_to_send`` and close."""

    reason: str


Socks5Event = ConnectRequested | HandshakeFailed

#: Largest handshake message: RFC 1929 request, 1 + 1 + 255 + 1 + 255 bytes.
_MAX_HANDSHAKE: Final = 513
_HANDSHAKING: Final = frozenset({ServerState.GREETING, ServerState.AUTH, ServerState.REQUEST})


class Socks5ServerConnection:
    """The server side of one SOCKS5 client connection, up to the CONNECT reply.

    ``credentials`` (username → password) switches on RFC 1929 authentication and makes it
    mandatory; without it only "no authentication" is offered. Feed bytes with
    ``receive_data``; read ``next_event``; answer a :class:`ConnectRequested` with
    ``send_reply``; after a :class:`Socks5Error` call ``fail(err.reply)`` and close.
    """

    def __init__(self, credentials: Mapping[str, str] | None = None) -> None:
        self.state = ServerState.GREETING
        self._credentials = (
            None
            if credentials is None
            else [(u.encode(), p.encode()) for u, p in credentials.items()]
        )
        self._buf = bytearray()
        self._out = bytearray()
        self._events: deque[Socks5Event] = deque()
        self._username: str | None = None

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Socks5Event | None:
        return self._events.popleft() if self._events else None

    def early_data(self) -> bytes:
        """Bytes the client sent after its request (to forward once the stream is open)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the client.

        Raises :class:`Socks5Error` or ``OversizedInput`` on a defect. Messages are atomic:
        complete messages before the defective one (in the same chunk) have taken effect, the
        defective one has not, so ``fail`` answers at the stage where the defect occurred.
        """
        if self.state is ServerState.CLOSED:
            return
        limit = (
            MAX_EARLY_DATA
            if self.state in (ServerState.CONNECTING, ServerState.ESTABLISHED)
            else _MAX_HANDSHAKE + MAX_EARLY_DATA
        )
        if len(self._buf) + len(data) > limit:
            raise OversizedInput("too much data before the SOCKS reply")
        self._buf += data
        while self._step():
            pass
        if self.state in _HANDSHAKING and len(self._buf) > _MAX_HANDSHAKE:
            raise OversizedInput("SOCKS handshake message too long")

    def _step(self) -> bool:
        """Parse and apply one handshake message; False when more bytes are needed."""
        buf = self._buf
        if self.state is ServerState.GREETING:
            greeting = parse_greeting(buf)
            if greeting is None:
                return False
            msg, used = greeting
            del buf[:used]
            wanted = Method.NO_AUTH if self._credentials is None else Method.USERNAME_PASSWORD
            if wanted in msg.methods:
                self._out += MethodSelection(wanted).encode()
                self.state = ServerState.REQUEST if wanted is Method.NO_AUTH else ServerState.AUTH
            else:
                self._out += MethodSelection(Method.NO_ACCEPTABLE).encode()
                self._events.append(HandshakeFailed("no acceptable authentication method"))
                self.state = ServerState.CLOSED
            return True
        if self.state is ServerState.AUTH:
            auth = parse_userpass_request(buf)
            if auth is None:
                return False
            creds, used = auth
            del buf[:used]
            if self._check_credentials(creds):
                self._out += UserPassReply(0x00).encode()
                self._username = creds.username.decode("utf-8", "replace")
                self.state = ServerState.REQUEST
            else:
                self._out += UserPassReply(0x01).encode()
                self._events.append(HandshakeFailed("bad username or password"))
                self.state = ServerState.CLOSED
            return True
        if self.state is ServerState.REQUEST:
            request = parse_request(buf)
            if request is None:
                return False
            req, used = request
            if req.command is not Command.CONNECT:
                raise Socks5Error(f"{req.command.name} unsupported", Reply.COMMAND_NOT_SUPPORTED)
            del buf[:used]
            self._events.append(
                ConnectRequested(req.host, req.port, req.address_type, self._username)
            )
            self.state = ServerState.CONNECTING
            return True
        return False

    def send_reply(self, reply: Reply, bind_host: str = "0.0.0.0", bind_port: int = 0) -> None:
        """Answer the CONNECT. zmesh binds nothing locally, so BND defaults to 0.0.0.0:0
        (what a SOCKS client gets also hides the exit's own address)."""
        if self.state is not ServerState.CONNECTING:
            raise LocalProtocolError(f"send_reply in state {self.state.value}")
        self._out += ReplyMessage(reply, bind_host, bind_port).encode()
        self.state = ServerState.ESTABLISHED if reply is Reply.SUCCEEDED else ServerState.CLOSED

    def fail(self, reply: Reply = Reply.GENERAL_FAILURE) -> None:
        """Queue the failure answer that fits the current stage, then the connection is over.

        Greeting stage: "no acceptable methods"; auth stage: auth failure; request stage (or
        a request waiting for its answer): a reply with ``reply``.
        """
        if self.state is ServerState.GREETING:
            self._out += MethodSelection(Method.NO_ACCEPTABLE).encode()
        elif self.state is ServerState.AUTH:
            self._out += UserPassReply(0x01).encode()
        elif self.state in (ServerState.REQUEST, ServerState.CONNECTING):
            failure = reply if reply is not Reply.SUCCEEDED else Reply.GENERAL_FAILURE
            self._out += ReplyMessage(failure).encode()
        self.state = ServerState.CLOSED

    def _check_credentials(self, creds: UserPassRequest) -> bool:
        assert self._credentials is not None
        ok = False
        for user, password in self._credentials:
            # Compare every entry in full so timing does not say which usernames exist.
            user_ok = hmac.compare_digest(user, creds.username)
            pass_ok = hmac.compare_digest(password, creds.password)
            ok |= user_ok and pass_ok
        return ok
