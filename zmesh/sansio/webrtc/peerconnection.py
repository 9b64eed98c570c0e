"""A sans-IO WebRTC data-channel peer connection: SDP + ICE + DTLS + SCTP/DCEP glued together.

Follows the JSEP offer/answer flow (RFC 8829 §5) for a data-only session: the offerer is ICE
controlling (RFC 8445 §6.1.1) and says ``a=setup:actpass``; the answerer answers ``active``
(what Chrome and aiortc do, RFC 8842 §5.2) and so sends the DTLS ClientHello. Demultiplexing of
the one UDP flow follows RFC 7983 §7 (first byte 0..3 STUN, 20..63 DTLS, anything else is
dropped and counted). SCTP packets ride one per DTLS record (RFC 8261 §5); once DTLS is up both
sides send INIT, as browsers do, and the association settles any collision (RFC 9260 §5.2.1).

Acknowledgements (RFC 9260 §6.2): ``receive_datagram`` only moves input up the stack; SCTP
packets, SACKs included, are built by ``datagrams_to_send``. A driver that feeds a whole batch
of datagrams (everything one socket wake-up read) and then asks for output sends one SACK per
batch: the SACK is delayed past the RFC's every-second-packet SHOULD but never past the batch,
which is at most a bounded number of datagrams and never waits for a timer; gaps and
duplicates still make SCTP acknowledge at the end of the batch at once. On loopback a SACK
costs a ``sendto`` that wakes the peer process, so per-batch SACKs are what make the transfer
CPU-bound rather than syscall-bound (``docs/transport-webrtc.md``, Performance).

The SCTP/DCEP layer is created by a factory so that this module can be tested on its own and so
that the data-channel endpoint stays the other room's business; by default it is
:class:`zmesh.sansio.webrtc.datachannel.DataChannelEndpoint` over
:class:`zmesh.sansio.webrtc.sctp.SctpAssociation`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from zmesh.sansio.webrtc import dtls as _dtls
from zmesh.sansio.webrtc import ice as _ice
from zmesh.sansio.webrtc import stun
from zmesh.sansio.webrtc.candidate import Candidate
from zmesh.sansio.webrtc.datachannel import DataChannelEndpoint
from zmesh.sansio.webrtc.sctp import SctpAssociation
from zmesh.sansio.webrtc.sdp import (
    CHROME_MAX_MESSAGE_SIZE,
    SdpError,
    SessionDescription,
)
from zmesh.sansio.wire import DEFAULT_RANDOM, LocalProtocolError, ProtocolError, RandomSource

__all__ = [
    "PeerConnection",
    "ConnectionState",
    "ConnectionStateChanged",
    "LocalCandidate",
    "SctpEndpoint",
    "SctpFactory",
]

Address = tuple[str, int]
MAX_EVENTS: Final = 8192
#: Events taken from SCTP ahead of the application (see _pull_sctp_events); far below
#: MAX_EVENTS, so a message is never dropped for want of room here.
SCTP_EVENTS_AHEAD: Final = 64
DTLS_HANDSHAKE_TIMEOUT: Final = 30.0

class ConnectionState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"  # ICE checking or DTLS/SCTP handshaking
    CONNECTED = "connected"  # SCTP association established: channels can open
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class ConnectionStateChanged:
    state: ConnectionState
    reason: str = ""


@dataclass(frozen=True)
class LocalCandidate:
    """A local candidate to trickle to the peer; ``None`` is end-of-candidates."""

    candidate: Candidate | None
    mid: str = "0"


class SctpEndpoint(Protocol):
    """What the peer connection needs from the data-channel layer (see datachannel.py)."""

    def receive_data(self, data: bytes, now: float) -> None: ...
    def data_to_send(self, now: float) -> list[bytes]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> Any: ...


SctpFactory = Callable[[bool, RandomSource, float], SctpEndpoint]
"""``factory(is_dtls_client, random, now)`` builds and connects the SCTP endpoint."""


def default_sctp_factory(is_dtls_client: bool, random: RandomSource, now: float) -> SctpEndpoint:
    association = SctpAssociation(is_client=is_dtls_client, random=random)
    endpoint = DataChannelEndpoint(association, is_dtls_client=is_dtls_client)
    association.connect(now)  # browsers always send INIT; the association handles collisions
    return endpoint


class PeerConnection:
    """One WebRTC peer connection carrying data channels only."""

    def __init__(
        self,
        *,
        random: RandomSource = DEFAULT_RANDOM,
        certificate: _dtls.DtlsCertificate | None = None,
        ice_config: _ice.IceConfig | None = None,
        sctp_factory: SctpFactory = default_sctp_factory,
        max_message_size: int = CHROME_MAX_MESSAGE_SIZE,
    ) -> None:
        self._random = random
        self.certificate = certificate or _dtls.DtlsCertificate.generate(random=random)
        self._ice_config = ice_config
        self._sctp_factory = sctp_factory
        self.local_max_message_size = max_message_size
        self.ice: _ice.IceAgent | None = None
        self.dtls: _dtls.DtlsTransport | None = None
        self.sctp: SctpEndpoint | None = None
        self.state = ConnectionState.NEW
        self.local_description: SessionDescription | None = None
        self.remote_description: SessionDescription | None = None
        self.is_offerer: bool | None = None
        self._host_addresses: list[Address] = []
        self._events: deque[Any] = deque()
        self._out: deque[tuple[bytes, Address]] = deque(maxlen=_dtls.MAX_OUT)  # oldest dropped
        self._last_dtls_source: Address | None = None
        self._dtls_deadline: float | None = None
        self._session_id = int.from_bytes(random(8), "big") >> 2
        self.dropped: dict[str, int] = {}

    # -- local addresses and gathering --------------------------------------------------------

    def add_host_address(self, address: Address) -> None:
        """Tell the connection an address its UDP socket receives on (before the offer/answer)."""
        self._host_addresses.append(address)
        if self.ice is not None:
            self.ice.add_host_address(address)

    def gather_srflx(self, server: Address, now: float) -> None:
        self._require_ice().gather_srflx(server, now)

    def finish_gathering(self) -> None:
        self._require_ice().finish_gathering()
        self._pump(0.0)

    @property
    def gathering_complete(self) -> bool:
        return self.ice is not None and self.ice.gathering_complete

    # -- offer / answer -----------------------------------------------------------------------

    def create_offer(self, now: float) -> SessionDescription:
        if self.is_offerer is False or self.ice is not None:
            raise LocalProtocolError("create_offer on a connection that already negotiated")
        self.is_offerer = True
        self._make_ice(controlling=True)
        self.local_description = self._describe("offer", "actpass")
        self._pump(now)
        return self.current_local_description()

    def set_remote_description(self, description: SessionDescription, now: float) -> None:
        if description.type == "offer":
            if self.is_offerer:
                raise LocalProtocolError("we made the offer; expected an answer")
            self.is_offerer = False
            if self.ice is None:
                self._make_ice(controlling=description.ice_lite)  # lite peers never control
        elif not self.is_offerer:
            raise LocalProtocolError("an answer needs our offer first")
        if description.max_message_size == 0:
            raise SdpError("max-message-size 0 is not usable")
        previous = self.remote_description
        ice = self._require_ice()
        if (description.type == "offer" and previous is not None
                and (previous.ice_ufrag, previous.ice_pwd)
                != (description.ice_ufrag, description.ice_pwd)):
            ice.restart(now)  # RFC 8445 §9: new remote credentials mean an ICE restart
        self.remote_description = description
        ice.set_remote_credentials(description.ice_ufrag, description.ice_pwd, now)
        for candidate in description.candidates:
            ice.add_remote_candidate(candidate, now)
        if description.end_of_candidates:
            ice.add_remote_candidate(None, now)
        if description.type == "answer":
            # RFC 8842 §5.3: they chose; we are the other role.
            self._make_dtls(is_client=description.setup == "passive")
        if self.state is ConnectionState.NEW:
            self._set_state(ConnectionState.CONNECTING)
        self._pump(now)

    def create_answer(self, now: float) -> SessionDescription:
        remote = self.remote_description
        if remote is None or remote.type != "offer":
            raise LocalProtocolError("create_answer needs a remote offer")
        # Chrome answers actpass with active: the answerer sends the ClientHello.
        setup = "passive" if remote.setup == "active" else "active"
        self.local_description = self._describe("answer", setup)
        self._make_dtls(is_client=setup == "active")
        self._pump(now)
        return self.current_local_description()

    def current_local_description(self) -> SessionDescription:
        """The local description with every candidate gathered so far (non-trickle use)."""
        if self.local_description is None or self.ice is None:
            raise LocalProtocolError("no local description yet")
        return self.local_description.with_candidates(
            tuple(self.ice.local_candidates), end=self.ice.gathering_complete)

    def add_remote_candidate(self, candidate: Candidate | None, now: float) -> None:
        self._require_ice().add_remote_candidate(candidate, now)
        self._pump(now)

    def restart_ice(self, now: float) -> SessionDescription:
        """ICE restart (RFC 8445 §9): returns a new offer with fresh credentials."""
        ice = self._require_ice()
        if not self.is_offerer:
            raise LocalProtocolError("only the offerer restarts ICE here")
        ice.restart(now)
        self.local_description = self._describe("offer", "actpass")
        return self.current_local_description()

    # -- data channels ------------------------------------------------------------------------

    @property
    def remote_max_message_size(self) -> int:
        return self.remote_description.max_message_size if self.remote_description else 65536

    def channels(self) -> Any:
        """The data-channel endpoint (``DataChannelEndpoint``); use its ``create_channel`` etc."""
        if self.sctp is None or self.state is not ConnectionState.CONNECTED:
            raise LocalProtocolError("data channels need a connected peer connection")
        return self.sctp

    def create_channel(self, label: str, *, now: float, **options: Any) -> Any:
        channel = self.channels().create_channel(label, now=now, **options)
        self._pump(now)
        return channel

    def send(self, channel_id: int, data: bytes | str, now: float) -> None:
        size = len(data.encode()) if isinstance(data, str) else len(data)
        if size > min(self.remote_max_message_size, self.local_max_message_size):
            raise LocalProtocolError(f"message of {size} bytes exceeds max-message-size")
        self.channels().send(channel_id, data, now)
        # No pump here: datagrams_to_send() bundles everything queued since the last call.

    def close_channel(self, channel_id: int, now: float) -> None:
        self.channels().close_channel(channel_id, now)
        self._pump(now)

    def close(self, now: float) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        abort = getattr(self.sctp, "abort", None)
        if abort is not None and self.dtls is not None \
                and self.dtls.state is _dtls.DtlsState.CONNECTED:
            # An SCTP ABORT ahead of DTLS close_notify, as browsers send when a peer connection
            # closes: the peer's channels close at once instead of timing out.
            abort("peer connection closed", now)
        self._pump(now)
        if self.dtls is not None:
            self.dtls.close(now)
            self._drain_dtls(now)
        if self.ice is not None:
            self.ice.close()
        self._set_state(ConnectionState.CLOSED, "local close")

    # -- sans-IO surface ----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        if self.state is ConnectionState.CLOSED or not data:
            return
        first = data[0]
        if first < 4 and stun.looks_like_stun(data):
            if self.ice is None:
                self._drop("stun-before-offer")
                return
            try:
                self.ice.receive_stun(data, source, now)
            except ProtocolError:
                self._drop("malformed-stun")
        elif 20 <= first <= 63:  # DTLS (RFC 7983 §7, as _dtls.looks_like_dtls)
            if self.dtls is None or self.ice is None:
                self._drop("dtls-before-answer")
                return
            if source != self._last_dtls_source:
                if not self.ice.is_known_remote(source):
                    self._drop("dtls-from-unknown-address")
                    return
                self._last_dtls_source = source
            sctp = self.sctp
            if sctp is not None:
                plaintexts = self.dtls.receive_application_data(data, now)
                if plaintexts is not None:
                    # Steady state: records straight into SCTP, then its events (no ICE or
                    # DTLS bookkeeping per packet; the slow path below does the same work).
                    for plaintext in plaintexts:
                        try:
                            sctp.receive_data(plaintext, now)
                        except ProtocolError:
                            self._drop("malformed-sctp")
                    if self.dtls.has_events():  # output waits for datagrams_to_send
                        self._drain_dtls(now)
                    self._pull_sctp_events()
                    return
            if self._dtls_deadline is None:
                self._dtls_deadline = now + DTLS_HANDSHAKE_TIMEOUT
            self.dtls.receive_datagram(data, now)
        else:
            self._drop("not-stun-or-dtls")
        # Input only: SCTP's answers (SACKs, data a SACK released) are built by the next
        # datagrams_to_send(), so a batch of datagrams fed in before it costs one SACK.
        self._absorb(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        self._pump(now)
        out = list(self._out)
        self._out.clear()
        return out

    def ready_datagrams(self) -> list[tuple[bytes, Address]]:
        """What is already queued, without asking the layers for more (cheap, per datagram)."""
        if not self._out:
            return []
        out = list(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        deadlines = [t for t in (
            self.ice.get_timer() if self.ice else None,
            self.dtls.get_timer() if self.dtls else None,
            self.sctp.get_timer() if self.sctp else None,
            self._dtls_deadline,
        ) if t is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if self.ice is not None:
            self.ice.handle_timer(now)
        if self.dtls is not None:
            self.dtls.handle_timer(now)
        if self.sctp is not None:
            self.sctp.handle_timer(now)
        if self._dtls_deadline is not None and now >= self._dtls_deadline:
            self._dtls_deadline = None
            if self.dtls is not None and self.dtls.state is not _dtls.DtlsState.CONNECTED:
                self._set_state(ConnectionState.FAILED, "DTLS handshake timed out")
        self._pump(now)

    def next_event(self) -> Any:
        if not self._events:
            self._absorb(None)
        self._pull_sctp_events()
        return self._events.popleft() if self._events else None

    def _pull_sctp_events(self) -> None:
        # Only up to SCTP_EVENTS_AHEAD events wait here: a message the application has not
        # taken beyond that stays in the association, where it counts against the receive
        # window we advertise. That window, not a queue here, holds a fast sender back.
        sctp = self.sctp
        while sctp is not None and len(self._events) < SCTP_EVENTS_AHEAD:
            sctp_event = sctp.next_event()
            if sctp_event is None:
                return
            self._on_sctp_event(sctp_event)

    # -- internals ----------------------------------------------------------------------------

    def _require_ice(self) -> _ice.IceAgent:
        if self.ice is None:
            raise LocalProtocolError("create or receive an offer first")
        return self.ice

    def _make_ice(self, *, controlling: bool) -> None:
        self.ice = _ice.IceAgent(controlling=controlling, random=self._random,
                                 config=self._ice_config)
        for address in self._host_addresses:
            self.ice.add_host_address(address)

    def _make_dtls(self, *, is_client: bool) -> None:
        remote = self.remote_description
        fingerprints = remote.fingerprints if remote else None
        if self.dtls is None:
            self.dtls = _dtls.DtlsTransport(self.certificate, is_client=is_client,
                                            remote_fingerprints=fingerprints)
        elif fingerprints is not None:
            self.dtls.set_remote_fingerprints(fingerprints, 0.0)

    def _describe(self, sdp_type: str, setup: str) -> SessionDescription:
        ice = self._require_ice()
        previous = self.local_description
        version = previous.session_version + 1 if previous else 2
        return SessionDescription(
            type="offer" if sdp_type == "offer" else "answer",
            ice_ufrag=ice.local_ufrag,
            ice_pwd=ice.local_pwd,
            fingerprints=(("sha-256", self.certificate.fingerprint()),),
            setup=setup,
            max_message_size=self.local_max_message_size,
            session_id=self._session_id,
            session_version=version,
        )

    def _pump(self, now: float) -> None:
        """Move bytes and events up and down the stack.

        One ordered pass suffices in the steady state (ICE, then DTLS input into SCTP, then
        SCTP output into DTLS records, then events): no later stage feeds an earlier one. A
        second pass runs only when a layer was just created (DTLS started, SCTP set up).
        """
        for _ in range(4):
            layers = (self.dtls, self.sctp)
            ice = self.ice
            if ice is not None:
                self._out.extend(ice.datagrams_to_send(now))
                while (ice_event := ice.next_event()) is not None:
                    self._on_ice_event(ice_event, now)
            dtls = self.dtls
            if dtls is not None:
                self._drain_dtls(now)
            sctp = self.sctp
            if sctp is not None and dtls is not None:
                if dtls.state is _dtls.DtlsState.CONNECTED:
                    packets = sctp.data_to_send(now)
                    if packets:
                        records = dtls.encrypt_records(packets)
                        destination = self._data_destination()
                        if destination is None:
                            for _record in records:
                                self._drop("dtls-no-route")
                        else:
                            self._out.extend([(record, destination) for record in records])
                        self._drain_dtls(now)
                self._pull_sctp_events()
            if layers == (self.dtls, self.sctp) and (dtls is None or not dtls.has_events()):
                return

    def _absorb(self, now: float | None) -> None:
        """Move input-side results up the stack (ICE, DTLS records into SCTP, events) without
        asking SCTP for output: a burst of datagrams then costs one ``data_to_send``."""
        ice = self.ice
        if now is not None:
            if ice is not None:
                self._out.extend(ice.datagrams_to_send(now))
                while (ice_event := ice.next_event()) is not None:
                    self._on_ice_event(ice_event, now)
            if self.dtls is not None:
                self._drain_dtls(now)
        self._pull_sctp_events()

    def _drain_dtls(self, now: float) -> bool:
        dtls = self.dtls
        if dtls is None or not (dtls.has_output() or dtls.has_events()):
            return False
        progressed = False
        destination = self._data_destination()
        for datagram in dtls.datagrams_to_send(now):
            progressed = True
            if destination is None:
                self._drop("dtls-no-route")
            else:
                self._out.append((datagram, destination))
        while (event := dtls.next_event()) is not None:
            progressed = True
            if isinstance(event, _dtls.HandshakeCompleted):
                self._dtls_deadline = None
                self.sctp = self._sctp_factory(dtls.is_client, self._random, now)
            elif isinstance(event, _dtls.DataReceived):
                if self.sctp is not None:
                    try:
                        self.sctp.receive_data(event.data, now)
                    except ProtocolError:
                        self._drop("malformed-sctp")
            elif isinstance(event, _dtls.HandshakeFailed):
                self._set_state(ConnectionState.FAILED, f"DTLS: {event.reason}")
            elif isinstance(event, _dtls.DtlsClosed) and self.state is not ConnectionState.CLOSED:
                self._set_state(ConnectionState.CLOSED, f"DTLS: {event.reason}")
        return progressed

    def _data_destination(self) -> Address | None:
        if self.ice is None:
            return None
        return self.ice.data_destination() or self._last_dtls_source

    def _on_ice_event(self, event: _ice.IceEvent, now: float) -> None:
        if isinstance(event, _ice.LocalCandidateGathered):
            self._emit(LocalCandidate(event.candidate))
        elif isinstance(event, _ice.GatheringCompleted):
            self._emit(LocalCandidate(None))
        elif isinstance(event, _ice.PairSelected):
            if self.dtls is not None and self.dtls.state is _dtls.DtlsState.NEW:
                if self.dtls.is_client:
                    self.dtls.start(now)
                self._dtls_deadline = now + DTLS_HANDSHAKE_TIMEOUT
        elif isinstance(event, _ice.IceStateChanged) and event.state is _ice.IceState.FAILED:
            self._set_state(ConnectionState.FAILED, "ICE failed")
        elif isinstance(event, _ice.ConsentExpired):
            self._set_state(ConnectionState.FAILED, "ICE consent expired")
        self._emit(event)

    def _on_sctp_event(self, event: Any) -> None:
        name = type(event).__name__
        if name == "AssociationEstablished":
            self._set_state(ConnectionState.CONNECTED)
        elif name == "AssociationClosed" and self.state is not ConnectionState.CLOSED:
            self._set_state(ConnectionState.CLOSED, "SCTP association closed")
        self._emit(event)

    def _set_state(self, state: ConnectionState, reason: str = "") -> None:
        if state is self.state or self.state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            return
        self.state = state
        self._emit(ConnectionStateChanged(state, reason))

    def _emit(self, event: Any) -> None:
        if len(self._events) < MAX_EVENTS:
            self._events.append(event)
        else:
            self._drop("event-queue-full")

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
