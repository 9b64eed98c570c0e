"""A sans-IO ICE agent (RFC 8445) with trickle (RFC 8838) and consent freshness (RFC 7675).

One agent serves one BUNDLEd component over one UDP socket (the driver's). It

- gathers host candidates from the addresses the driver reports and server-reflexive ones by
  asking STUN servers (RFC 8445 §5.1.1.2), dropping redundant ones (§5.1.3);
- forms a checklist (§6.1.2), unfreezes one pair per foundation (§6.1.2.6), sends one check per
  ``Ta`` (pacing, §14.2), answers checks and schedules triggered checks (§7.3.1.4), learns
  peer-reflexive candidates (§7.3.1.3), resolves role conflicts with the tie-breaker
  (§7.3.1.1, 487);
- nominates regularly (§8.1.1): the controlling agent repeats a check with USE-CANDIDATE on the
  best valid pair once no better pair can still succeed or ``nomination_delay`` has passed;
- after selection keeps sending consent checks every 5 s ±20 % and declares the pair dead after
  30 s without an authenticated response (RFC 7675 §5.1);
- restarts (§9) with fresh credentials while the old pair keeps carrying data.

STUN framing comes from :mod:`zmesh.sansio.webrtc.stun` (aioice's codec); binding requests
carry Chrome's attribute order. Simplifications: one component, UDP only (TCP candidates are
parsed and ignored), no relayed candidates, no local peer-reflexive candidates (the socket is
the only base), no aggressive nomination.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from dataclasses import dataclass

from zmesh.sansio.webrtc import stun
from zmesh.sansio.webrtc.candidate import Candidate, candidate_foundation, candidate_priority
from zmesh.sansio.webrtc.sdp import random_ice_credentials
from zmesh.sansio.wire import (
    DEFAULT_RANDOM,
    LocalProtocolError,
    OversizedInput,
    ProtocolError,
    RandomSource,
)

__all__ = [
    "IceConfig",
    "IceAgent",
    "IceState",
    "PairState",
    "CandidatePair",
    "LocalCandidateGathered",
    "GatheringCompleted",
    "IceStateChanged",
    "PairSelected",
    "ConsentExpired",
    "RoleChanged",
    "IceEvent",
    "StunServer",
]

Address = tuple[str, int]


@dataclass(frozen=True)
class IceConfig:
    check_interval: float = 0.05  # Ta (RFC 8445 §14.2: 50 ms default for one data stream)
    check_rto: float = 0.25  # first retransmission of a check; doubles
    check_rto_max: float = 1.6
    check_max_tries: int = 7  # Rc (RFC 8489 §6.2.1)
    gather_rto: float = 0.5
    gather_max_tries: int = 5
    nomination_delay: float = 0.2  # how long to wait for a better pair before nominating
    consent_interval: float = 5.0  # RFC 7675 §5.1
    consent_timeout: float = 30.0
    checking_timeout: float = 30.0  # no selected pair by then: failed
    max_remote_candidates: int = 64
    max_pairs: int = 128
    max_triggered: int = 64
    max_transactions: int = 256
    max_events: int = 512
    chrome_attributes: bool = True  # GOOG-NETWORK-INFO in checks, like libwebrtc


class IceState(enum.Enum):
    NEW = "new"
    CHECKING = "checking"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


class PairState(enum.Enum):
    FROZEN = "frozen"
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(eq=False)
class CandidatePair:
    local: Candidate
    remote: Candidate
    priority: int
    state: PairState = PairState.FROZEN
    nominated: bool = False
    nominate_on_success: bool = False  # controlled side: USE-CANDIDATE seen before success
    last_response: float | None = None

    @property
    def foundation(self) -> tuple[str, str]:
        return (self.local.foundation, self.remote.foundation)


@dataclass(frozen=True)
class LocalCandidateGathered:
    candidate: Candidate


@dataclass(frozen=True)
class GatheringCompleted:
    pass


@dataclass(frozen=True)
class IceStateChanged:
    state: IceState


@dataclass(frozen=True)
class PairSelected:
    local: Candidate
    remote: Candidate


@dataclass(frozen=True)
class ConsentExpired:
    remote: Address


@dataclass(frozen=True)
class RoleChanged:
    controlling: bool


IceEvent = (LocalCandidateGathered | GatheringCompleted | IceStateChanged | PairSelected
            | ConsentExpired | RoleChanged)


class _Kind(enum.Enum):
    CHECK = "check"
    GATHER = "gather"
    CONSENT = "consent"


@dataclass(eq=False)
class _Transaction:
    kind: _Kind
    transaction_id: bytes
    request: bytes
    destination: Address
    deadline: float
    rto: float
    tries: int
    pair: CandidatePair | None = None
    use_candidate: bool = False
    generation: int = 0


def pair_priority(controlling_prio: int, controlled_prio: int) -> int:
    """RFC 8445 §6.1.2.3: ``2^32*MIN(G,D) + 2*MAX(G,D) + (G>D?1:0)``."""
    g, d = controlling_prio, controlled_prio
    return (min(g, d) << 32) + 2 * max(g, d) + (1 if g > d else 0)


class IceAgent:
    def __init__(
        self,
        *,
        controlling: bool,
        random: RandomSource = DEFAULT_RANDOM,
        config: IceConfig | None = None,
    ) -> None:
        self.config = config or IceConfig()
        self.controlling = controlling
        self._random = random
        self.tie_breaker = int.from_bytes(random(8), "big")
        self.local_ufrag, self.local_pwd = random_ice_credentials(random)
        self.remote_ufrag: str | None = None
        self.remote_pwd: str | None = None
        self.state = IceState.NEW
        self.local_candidates: list[Candidate] = []
        self.remote_candidates: list[Candidate] = []
        self.pairs: list[CandidatePair] = []
        self.selected: CandidatePair | None = None
        self._previous_selected: CandidatePair | None = None
        self.remote_end_of_candidates = False
        self._generation = 0
        self._triggered: deque[CandidatePair] = deque()
        self._transactions: dict[bytes, _Transaction] = {}
        # Outputs are drained after every input; the bound only matters if a caller stops
        # draining (UDP semantics: the oldest datagram is dropped).
        self._out: deque[tuple[bytes, Address]] = deque(maxlen=self.config.max_transactions * 4)
        self._events: deque[IceEvent] = deque()
        self._next_check: float | None = None
        self._first_valid_at: float | None = None
        self._checking_deadline: float | None = None
        self._consent_next: float | None = None
        self._gathering_pending = 0
        self._gathering_done = False
        self._gathering_reported = False
        self._early_checks: deque[tuple[Address, int, bool]] = deque()
        self.stun_dropped = 0

    # -- gathering ----------------------------------------------------------------------------

    def add_host_address(self, address: Address) -> Candidate:
        """Report one address the driver's socket receives on; it becomes a host candidate."""
        host = _normalise(address[0])
        candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host), component=1, transport="udp",
            priority=candidate_priority("host"), host=host, port=address[1], type="host",
            extensions=(("generation", "0"), ("network-id", "1"), ("network-cost", "10")),
        )
        if candidate not in self.local_candidates:
            self.local_candidates.append(candidate)
            self._emit(LocalCandidateGathered(candidate))
            for remote in self.remote_candidates:
                self._add_pair(candidate, remote)
        return candidate

    def gather_srflx(self, server: Address, now: float) -> None:
        """Ask a STUN server for our server-reflexive address (RFC 8489 §6, no credentials)."""
        if not self.local_candidates:
            raise LocalProtocolError("add a host address before gathering srflx candidates")
        tid = self._random(12)
        request = stun.encode_stun(stun.StunMethod.BINDING, stun.StunClass.REQUEST, tid, [])
        self._start_transaction(_Transaction(
            _Kind.GATHER, tid, request, server, now + self.config.gather_rto,
            self.config.gather_rto, 1), now)
        self._gathering_pending += 1

    def finish_gathering(self) -> None:
        """No more servers will be asked; GatheringCompleted follows the pending answers."""
        self._gathering_done = True
        self._maybe_gathering_complete()

    @property
    def gathering_complete(self) -> bool:
        return self._gathering_reported

    def _maybe_gathering_complete(self) -> None:
        if self._gathering_done and self._gathering_pending == 0 and not self._gathering_reported:
            self._gathering_reported = True
            self._emit(GatheringCompleted())

    # -- remote side --------------------------------------------------------------------------

    def set_remote_credentials(self, ufrag: str, pwd: str, now: float) -> None:
        if (ufrag, pwd) == (self.remote_ufrag, self.remote_pwd):
            return
        self.remote_ufrag, self.remote_pwd = ufrag, pwd
        self._begin_checking(now)
        # Checks that arrived before we knew the peer's password become triggered checks now.
        while self._early_checks:
            source, priority, use_candidate = self._early_checks.popleft()
            self._learn_and_trigger(source, priority, use_candidate, now)

    def add_remote_candidate(self, candidate: Candidate | None, now: float) -> None:
        """Trickle a remote candidate in; ``None`` means end-of-candidates (RFC 8838 §13)."""
        if candidate is None:
            self.remote_end_of_candidates = True
            self._check_failed(now)
            return
        if candidate.transport != "udp" or candidate.component != 1:
            return
        try:
            ipaddress.ip_address(candidate.host)
        except ValueError:
            return  # unresolved mDNS name: the driver resolves those before calling us
        host = _normalise(candidate.host)
        if host != candidate.host:
            candidate = _replace_host(candidate, host)
        for known in self.remote_candidates:
            if known.address == candidate.address:
                return
        if len(self.remote_candidates) >= self.config.max_remote_candidates:
            raise OversizedInput("too many remote candidates")
        self.remote_candidates.append(candidate)
        for local in self.local_candidates:
            self._add_pair(local, candidate)
        self._schedule_check(now)

    def _add_pair(self, local: Candidate, remote: Candidate) -> CandidatePair | None:
        if local.type != "host":
            return None  # §6.1.2.4: srflx pairs are redundant with their base's
        if (":" in local.host) != (":" in remote.host):
            return None
        for pair in self.pairs:
            if pair.local == local and pair.remote.address == remote.address:
                return pair
        if len(self.pairs) >= self.config.max_pairs:
            return None
        ours, theirs = local.priority, remote.priority
        prio = pair_priority(ours, theirs) if self.controlling else pair_priority(theirs, ours)
        pair = CandidatePair(local, remote, prio)
        # §6.1.2.6: one pair per foundation starts Waiting; the rest wait for a success.
        if not any(p.foundation == pair.foundation and p.state is not PairState.FAILED
                   for p in self.pairs):
            pair.state = PairState.WAITING
        self.pairs.append(pair)
        self.pairs.sort(key=lambda p: p.priority, reverse=True)
        return pair

    def _begin_checking(self, now: float) -> None:
        if self.state in (IceState.NEW,):
            self._set_state(IceState.CHECKING)
            self._checking_deadline = now + self.config.checking_timeout
        self._schedule_check(now)

    # -- data path ----------------------------------------------------------------------------

    def data_destination(self) -> Address | None:
        """Where application datagrams go: the selected pair, else the best valid pair."""
        if self.selected is not None:
            return self.selected.remote.address
        if self._previous_selected is not None:
            return self._previous_selected.remote.address  # during a restart
        for pair in self.pairs:
            if pair.state is PairState.SUCCEEDED:
                return pair.remote.address
        return None

    def is_known_remote(self, address: Address) -> bool:
        return any(c.address == address for c in self.remote_candidates)

    # -- restart / close ----------------------------------------------------------------------

    def restart(self, now: float) -> None:
        """ICE restart (§9): new credentials, new checklist; the old pair carries data meanwhile."""
        self._generation += 1
        self.local_ufrag, self.local_pwd = random_ice_credentials(self._random)
        self.remote_ufrag = self.remote_pwd = None
        self.remote_candidates.clear()
        self.pairs.clear()
        self._triggered.clear()
        self._early_checks.clear()
        self.remote_end_of_candidates = False
        self._first_valid_at = None
        if self.selected is not None:
            # Data keeps flowing on the old pair until the new checklist nominates one.
            self._previous_selected = self.selected
            self.selected = None
            self._consent_next = None
        for tid in [t for t, tr in self._transactions.items() if tr.kind is _Kind.CHECK]:
            del self._transactions[tid]
        if self.state is not IceState.CONNECTED:
            self.state = IceState.NEW
        self._checking_deadline = now + self.config.checking_timeout

    def close(self) -> None:
        self._transactions.clear()
        self._triggered.clear()
        self._next_check = self._consent_next = self._checking_deadline = None
        self._set_state(IceState.CLOSED)

    # -- inputs -------------------------------------------------------------------------------

    def receive_stun(self, data: bytes, source: Address, now: float) -> None:
        """Handle one STUN datagram; raises :class:`ProtocolError` on malformed input."""
        if self.state is IceState.CLOSED:
            return
        source = (_normalise(source[0]), source[1])
        message = stun.parse_stun(data)
        if message.message_method != stun.StunMethod.BINDING:
            self.stun_dropped += 1
            return
        if message.message_class == stun.StunClass.REQUEST:
            self._handle_request(message, source, now)
        elif message.message_class in (stun.StunClass.RESPONSE, stun.StunClass.ERROR):
            self._handle_response(message, source, now)
        # Binding indications are keepalives (RFC 8445 §11): nothing to do.

    def _handle_request(self, message: stun.StunMessage, source: Address, now: float) -> None:
        tid = message.transaction_id
        key = self.local_pwd.encode()
        username = message.attributes.get("USERNAME")
        if username is None or "MESSAGE-INTEGRITY" not in message.attributes:
            if username is None and "MESSAGE-INTEGRITY" not in message.attributes:
                # A plain Binding request: we also act as a STUN server (RFC 8489 §6.3.1).
                self._out.append((stun.binding_success(tid, source, key=None), source))
                return
            self._out.append((stun.binding_error(tid, 400, "Bad Request", key=None), source))
            return
        local_part, _, _ = username.partition(":")
        if local_part != self.local_ufrag or not message.check_message_integrity(key):
            self._out.append((stun.binding_error(tid, 401, "Unauthorized", key=None), source))
            return
        priority = message.attributes.get("PRIORITY")
        if not isinstance(priority, int):
            self._out.append((stun.binding_error(tid, 400, "Bad Request", key=key), source))
            return
        # §7.3.1.1 role conflict
        theirs_controlling = message.attributes.get("ICE-CONTROLLING")
        theirs_controlled = message.attributes.get("ICE-CONTROLLED")
        if self.controlling and theirs_controlling is not None:
            if self.tie_breaker >= theirs_controlling:
                self._out.append((stun.binding_error(tid, 487, "Role Conflict", key=key), source))
                return
            self._switch_role(False)
        elif not self.controlling and theirs_controlled is not None:
            if self.tie_breaker >= theirs_controlled:
                self._switch_role(True)
            else:
                self._out.append((stun.binding_error(tid, 487, "Role Conflict", key=key), source))
                return
        self._out.append((stun.binding_success(tid, source, key=key), source))
        use_candidate = "USE-CANDIDATE" in message.attributes and not self.controlling
        if self.remote_pwd is None:
            if len(self._early_checks) < self.config.max_triggered:
                self._early_checks.append((source, priority, use_candidate))
            return
        self._learn_and_trigger(source, priority, use_candidate, now)

    def _learn_and_trigger(self, source: Address, priority: int, use_candidate: bool,
                           now: float) -> None:
        remote = next((c for c in self.remote_candidates if c.address == source), None)
        if remote is None:
            # §7.3.1.3: a peer-reflexive remote candidate.
            remote = Candidate(foundation=candidate_foundation("prflx", "udp", source[0]),
                               component=1, transport="udp", priority=priority, host=source[0],
                               port=source[1], type="prflx")
            if len(self.remote_candidates) >= self.config.max_remote_candidates:
                return
            self.remote_candidates.append(remote)
            for local in self.local_candidates:
                self._add_pair(local, remote)
        for pair in self.pairs:
            if pair.remote.address != source:
                continue
            if use_candidate:
                if pair.state is PairState.SUCCEEDED:
                    pair.nominated = True
                    self._select(pair, now)
                else:
                    pair.nominate_on_success = True
            if (pair.state not in (PairState.SUCCEEDED, PairState.IN_PROGRESS)
                    and pair not in self._triggered):
                pair.state = PairState.WAITING
                if len(self._triggered) < self.config.max_triggered:
                    self._triggered.append(pair)
        self._begin_checking(now)

    def _handle_response(self, message: stun.StunMessage, source: Address, now: float) -> None:
        tr = self._transactions.get(message.transaction_id)
        if tr is None:
            self.stun_dropped += 1
            return
        if tr.kind is _Kind.GATHER:
            del self._transactions[message.transaction_id]
            self._gathering_pending -= 1
            mapped = message.attributes.get("XOR-MAPPED-ADDRESS")
            if message.message_class == stun.StunClass.RESPONSE and mapped is not None:
                self._add_srflx((_normalise(mapped[0]), mapped[1]), tr.destination)
            self._maybe_gathering_complete()
            return
        if self.remote_pwd is None or not message.check_message_integrity(self.remote_pwd.encode()):
            self.stun_dropped += 1  # §7.2.5.1: unauthenticated responses are ignored
            return
        del self._transactions[message.transaction_id]
        pair = tr.pair
        if pair is None or tr.generation != self._generation:
            return
        if message.message_class == stun.StunClass.ERROR:
            if message.error_code == 487:
                # §7.2.5.1: switch role as the request said the opposite, then retry
                self._switch_role(not tr_controlling(tr.request))
                pair.state = PairState.WAITING
                self._triggered.append(pair)
                self._schedule_check(now)
            else:
                pair.state = PairState.FAILED
                self._check_failed(now)
            return
        if source != tr.destination:
            pair.state = PairState.FAILED  # §7.2.5.2.1: non-symmetric
            self._check_failed(now)
            return
        pair.last_response = now
        if tr.kind is _Kind.CONSENT:
            return
        pair.state = PairState.SUCCEEDED
        if self._first_valid_at is None:
            self._first_valid_at = now
        for other in self.pairs:  # §7.2.5.3.3: unfreeze the same foundation
            if other.state is PairState.FROZEN and other.foundation == pair.foundation:
                other.state = PairState.WAITING
        if tr.use_candidate or pair.nominate_on_success:
            pair.nominated = True
            self._select(pair, now)
        self._schedule_check(now)

    def _add_srflx(self, mapped: Address, server: Address) -> None:
        base = self.local_candidates[0]
        if any(c.address == mapped for c in self.local_candidates):
            return  # §5.1.3: redundant with a candidate we already have (no NAT in between)
        candidate = Candidate(
            foundation=candidate_foundation("srflx", "udp", base.host), component=1,
            transport="udp", priority=candidate_priority("srflx"), host=mapped[0],
            port=mapped[1], type="srflx", related_address=base.host, related_port=base.port,
            extensions=(("generation", "0"), ("network-id", "1"), ("network-cost", "10")),
        )
        self.local_candidates.append(candidate)
        self._emit(LocalCandidateGathered(candidate))

    def _switch_role(self, controlling: bool) -> None:
        if controlling == self.controlling:
            return
        self.controlling = controlling
        for pair in self.pairs:
            local, remote = pair.local.priority, pair.remote.priority
            pair.priority = (pair_priority(local, remote) if controlling
                             else pair_priority(remote, local))
        self.pairs.sort(key=lambda p: p.priority, reverse=True)
        self._emit(RoleChanged(controlling))

    def _select(self, pair: CandidatePair, now: float) -> None:
        if self.selected is pair:
            return
        self.selected = pair
        self._previous_selected = None
        self._checking_deadline = None
        self._emit(PairSelected(pair.local, pair.remote))
        self._set_state(IceState.CONNECTED)
        self._consent_next = now + self._consent_delay()

    # -- outputs & time -----------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = list(self._out)
        self._out.clear()
        return out

    def next_event(self) -> IceEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [t.deadline for t in self._transactions.values()]
        for value in (self._next_check, self._consent_next, self._checking_deadline):
            if value is not None:
                deadlines.append(value)
        if self._nomination_due_at() is not None:
            deadlines.append(self._nomination_due_at() or 0.0)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if self.state is IceState.CLOSED:
            return
        for tr in [t for t in self._transactions.values() if t.deadline <= now]:
            self._retransmit_or_fail(tr, now)
        if self._next_check is not None and self._next_check <= now:
            self._next_check = None
            self._send_next_check(now)
        nominate_at = self._nomination_due_at()
        if nominate_at is not None and nominate_at <= now:
            self._nominate(now)
        if self._consent_next is not None and self._consent_next <= now:
            self._send_consent(now)
        if (self._checking_deadline is not None and self._checking_deadline <= now
                and self.selected is None):
            self._checking_deadline = None
            self._set_state(IceState.FAILED)

    def _retransmit_or_fail(self, tr: _Transaction, now: float) -> None:
        max_tries = (self.config.gather_max_tries if tr.kind is _Kind.GATHER
                     else self.config.check_max_tries)
        if tr.tries >= max_tries:
            del self._transactions[tr.transaction_id]
            if tr.kind is _Kind.GATHER:
                self._gathering_pending -= 1
                self._maybe_gathering_complete()
            elif tr.kind is _Kind.CHECK and tr.pair is not None:
                tr.pair.state = PairState.FAILED
                self._check_failed(now)
            return
        tr.tries += 1
        tr.rto = min(tr.rto * 2, self.config.check_rto_max) if tr.kind is not _Kind.GATHER \
            else tr.rto * 2
        tr.deadline = now + tr.rto
        self._out.append((tr.request, tr.destination))

    def _schedule_check(self, now: float) -> None:
        if self.remote_pwd is None or self.state in (IceState.FAILED, IceState.CLOSED):
            return
        if self._next_check is None and (self._triggered or any(
                p.state in (PairState.WAITING, PairState.FROZEN) for p in self.pairs)):
            self._next_check = now  # pacing is enforced after each check is sent

    def _send_next_check(self, now: float) -> None:
        pair: CandidatePair | None = None
        while self._triggered and pair is None:
            candidate = self._triggered.popleft()
            if candidate.state is PairState.WAITING:
                pair = candidate
        if pair is None:
            pair = next((p for p in self.pairs if p.state is PairState.WAITING), None)
        if pair is None:
            pair = next((p for p in self.pairs if p.state is PairState.FROZEN), None)
        if pair is None:
            return
        self._send_check(pair, now, use_candidate=False)
        self._next_check = now + self.config.check_interval
        if not (self._triggered or any(p.state in (PairState.WAITING, PairState.FROZEN)
                                       for p in self.pairs)):
            self._next_check = None

    def _send_check(self, pair: CandidatePair, now: float, *, use_candidate: bool,
                    kind: _Kind = _Kind.CHECK) -> None:
        if self.remote_ufrag is None or self.remote_pwd is None:
            return
        if len(self._transactions) >= self.config.max_transactions:
            return
        tid = self._random(12)
        request = stun.binding_request(
            tid, username=f"{self.remote_ufrag}:{self.local_ufrag}",
            key=self.remote_pwd.encode(),
            # §7.1.1: the priority a peer-reflexive candidate of ours would get
            priority=candidate_priority("prflx"), controlling=self.controlling,
            tie_breaker=self.tie_breaker, use_candidate=use_candidate,
            network_info=self.config.chrome_attributes)
        if kind is _Kind.CHECK and pair.state is not PairState.SUCCEEDED:
            pair.state = PairState.IN_PROGRESS
        self._start_transaction(_Transaction(
            kind, tid, request, pair.remote.address, now + self.config.check_rto,
            self.config.check_rto, 1, pair=pair, use_candidate=use_candidate,
            generation=self._generation), now)

    def _start_transaction(self, tr: _Transaction, now: float) -> None:
        self._transactions[tr.transaction_id] = tr
        self._out.append((tr.request, tr.destination))

    def _nomination_due_at(self) -> float | None:
        if not self.controlling or self.selected is not None or self._first_valid_at is None:
            return None
        if any(t.use_candidate for t in self._transactions.values()):
            return None
        best_valid = next((p for p in self.pairs if p.state is PairState.SUCCEEDED), None)
        if best_valid is None:
            return None
        better_pending = any(
            p.priority > best_valid.priority
            and p.state in (PairState.WAITING, PairState.IN_PROGRESS, PairState.FROZEN)
            for p in self.pairs)
        if not better_pending:
            return self._first_valid_at
        return self._first_valid_at + self.config.nomination_delay

    def _nominate(self, now: float) -> None:
        best = next((p for p in self.pairs if p.state is PairState.SUCCEEDED), None)
        if best is not None:
            self._send_check(best, now, use_candidate=True)

    def _send_consent(self, now: float) -> None:
        pair = self.selected
        if pair is None:
            self._consent_next = None
            return
        last = pair.last_response if pair.last_response is not None else now
        if now - last >= self.config.consent_timeout:
            self._consent_next = None
            self._emit(ConsentExpired(pair.remote.address))
            self._set_state(IceState.FAILED)
            return
        self._send_check(pair, now, use_candidate=self.controlling, kind=_Kind.CONSENT)
        self._consent_next = now + self._consent_delay()

    def _consent_delay(self) -> float:
        # RFC 7675 §5.1: uniformly random in [0.8, 1.2] x interval.
        fraction = int.from_bytes(self._random(2), "big") / 65535
        return self.config.consent_interval * (0.8 + 0.4 * fraction)

    def _check_failed(self, now: float) -> None:
        if self.selected is not None or self.state is not IceState.CHECKING:
            return
        if not self.remote_end_of_candidates or not self.pairs:
            return
        if all(p.state is PairState.FAILED for p in self.pairs):
            self._set_state(IceState.FAILED)

    def _set_state(self, state: IceState) -> None:
        if state is not self.state:
            self.state = state
            self._emit(IceStateChanged(state))

    def _emit(self, event: IceEvent) -> None:
        if len(self._events) < self.config.max_events:
            self._events.append(event)


def tr_controlling(request: bytes) -> bool:
    """Whether a request we built said ICE-CONTROLLING (read back from its bytes)."""
    try:
        return "ICE-CONTROLLING" in stun.parse_stun(request).attributes
    except ProtocolError:
        return False


class StunServer:
    """A stateless STUN binding server (RFC 8489 §6.3.1) for peers gathering srflx candidates.

    Only plain Binding requests (no USERNAME, no MESSAGE-INTEGRITY) are answered; anything else
    is left for the ICE agent that owns the port.
    """

    def __init__(self) -> None:
        self.answered = 0

    def handle(self, data: bytes, source: Address) -> bytes | None:
        try:
            message = stun.parse_stun(data)
        except ProtocolError:
            return None
        if (message.message_method != stun.StunMethod.BINDING
                or message.message_class != stun.StunClass.REQUEST
                or "USERNAME" in message.attributes
                or "MESSAGE-INTEGRITY" in message.attributes):
            return None
        self.answered += 1
        return stun.binding_success(message.transaction_id, source, key=None)


def _normalise(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _replace_host(candidate: Candidate, host: str) -> Candidate:
    return Candidate(candidate.foundation, candidate.component, candidate.transport,
                     candidate.priority, host, candidate.port, candidate.type,
                     candidate.related_address, candidate.related_port, candidate.extensions)

