"""ICE agent in virtual time: two agents wired through an in-process network."""

from __future__ import annotations

import contextlib
import itertools
import random as pyrandom
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.webrtc import stun
from zmesh.sansio.webrtc.candidate import Candidate, candidate_priority
from zmesh.sansio.webrtc.ice import (
    ConsentExpired,
    IceAgent,
    IceState,
    LocalCandidateGathered,
    PairSelected,
    StunServer,
)
from zmesh.sansio.wire import ProtocolError

A = ("10.0.0.1", 1000)
B = ("10.0.0.2", 2000)


def rng(seed: int) -> Callable[[int], bytes]:
    r = pyrandom.Random(seed)
    return lambda n: bytes(r.getrandbits(8) for _ in range(n))


class Net:
    """Delivers datagrams between agents by address; ``drop`` filters (src, dst)."""

    def __init__(self, agents: dict[tuple[str, int], IceAgent]) -> None:
        self.agents = agents
        self.now = 0.0
        self.drop: Callable[[tuple[str, int], tuple[str, int]], bool] = lambda s, d: False
        self.sent: list[tuple[float, tuple[str, int], bytes]] = []

    def run(self, until: float) -> None:
        while self.now <= until:
            moved = True
            while moved:
                moved = False
                for src, agent in self.agents.items():
                    for data, dst in agent.datagrams_to_send(self.now):
                        moved = True
                        self.sent.append((self.now, src, data))
                        if dst in self.agents and not self.drop(src, dst):
                            self.agents[dst].receive_stun(data, src, self.now)
            timers = [t for a in self.agents.values() if (t := a.get_timer()) is not None]
            if not timers:
                return
            self.now = max(self.now, min(timers))
            for agent in self.agents.values():
                agent.handle_timer(self.now)


def events(agent: IceAgent) -> list[object]:
    out = []
    while (event := agent.next_event()) is not None:
        out.append(event)
    return out


def make_pair(seed: int = 1, *, both_controlling: bool = False,
              signal_candidates: bool = True) -> tuple[IceAgent, IceAgent, Net]:
    a = IceAgent(controlling=True, random=rng(seed))
    b = IceAgent(controlling=both_controlling, random=rng(seed + 100))
    ca, cb = a.add_host_address(A), b.add_host_address(B)
    a.set_remote_credentials(b.local_ufrag, b.local_pwd, 0.0)
    b.set_remote_credentials(a.local_ufrag, a.local_pwd, 0.0)
    a.add_remote_candidate(cb, 0.0)
    if signal_candidates:
        b.add_remote_candidate(ca, 0.0)
    return a, b, Net({A: a, B: b})


def test_connects_and_both_select_the_same_pair() -> None:
    a, b, net = make_pair()
    net.run(1.0)
    assert a.state is b.state is IceState.CONNECTED
    sel_a = [e for e in events(a) if isinstance(e, PairSelected)]
    sel_b = [e for e in events(b) if isinstance(e, PairSelected)]
    assert sel_a[0].remote.address == B and sel_b[0].remote.address == A
    assert a.data_destination() == B and b.data_destination() == A


def test_checks_use_chrome_attribute_order() -> None:
    a, b, net = make_pair()
    net.run(0.5)
    request = next(d for _, src, d in net.sent if src == A and d[:2] == b"\x00\x01")
    message = stun.parse_stun(request)
    assert message.attributes["USERNAME"] == f"{b.local_ufrag}:{a.local_ufrag}"
    assert list(message.attributes)[:2] == ["USERNAME", "ICE-CONTROLLING"]  # C057 is unknown


def test_peer_reflexive_remote_learned_from_checks() -> None:
    a, b, net = make_pair(signal_candidates=False)
    net.run(2.0)
    assert a.state is b.state is IceState.CONNECTED
    assert any(c.type == "prflx" and c.address == A for c in b.remote_candidates)


def test_role_conflict_is_resolved() -> None:
    a, b, net = make_pair(both_controlling=True)
    net.run(3.0)
    assert a.controlling != b.controlling
    assert a.state is b.state is IceState.CONNECTED


def test_pacing_between_checks() -> None:
    a = IceAgent(controlling=True, random=rng(3))
    a.add_host_address(A)
    a.set_remote_credentials("abcd", "p" * 22, 0.0)
    for port in range(5000, 5010):
        a.add_remote_candidate(Candidate(str(port), 1, "udp", candidate_priority("host"),
                                         "10.0.0.9", port, "host"), 0.0)
    net = Net({A: a})
    net.run(0.6)
    first_sends: dict[bytes, float] = {}
    for when, _, data in net.sent:
        first_sends.setdefault(data[8:20], when)
    times = sorted(first_sends.values())
    assert len(times) == 10
    assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(times))


def test_failure_after_end_of_candidates() -> None:
    a, _b, net = make_pair()
    a.add_remote_candidate(None, 0.0)
    net.drop = lambda s, d: True
    net.run(30.0)
    assert a.state is IceState.FAILED


def test_consent_expires_without_responses() -> None:
    a, _b, net = make_pair()
    net.run(1.0)
    assert a.state is IceState.CONNECTED
    events(a)
    net.drop = lambda s, d: True
    net.run(40.0)
    assert any(isinstance(e, ConsentExpired) for e in events(a))
    assert a.state is IceState.FAILED


def test_consent_keeps_a_healthy_pair_alive() -> None:
    a, b, net = make_pair()
    net.run(120.0)
    assert a.state is b.state is IceState.CONNECTED
    consent = [t for t, src, d in net.sent if src == A and d[:2] == b"\x00\x01" and t > 10]
    gaps = [y - x for x, y in itertools.pairwise(consent)]
    assert gaps and all(3.9 <= g <= 6.1 for g in gaps)  # 5 s +-20 %


def test_restart_reconnects_with_new_credentials() -> None:
    a, b, net = make_pair()
    net.run(1.0)
    old = a.local_ufrag
    a.restart(net.now)
    b.restart(net.now)
    assert a.local_ufrag != old
    a.set_remote_credentials(b.local_ufrag, b.local_pwd, net.now)
    b.set_remote_credentials(a.local_ufrag, a.local_pwd, net.now)
    a.add_remote_candidate(b.local_candidates[0], net.now)
    b.add_remote_candidate(a.local_candidates[0], net.now)
    events(a)
    net.run(net.now + 2.0)
    assert a.state is IceState.CONNECTED and a.selected is not None
    assert a.data_destination() == B


def test_wrong_password_gets_401_and_no_state_change() -> None:
    a = IceAgent(controlling=False, random=rng(9))
    a.add_host_address(A)
    request = stun.binding_request(b"t" * 12, username=f"{a.local_ufrag}:zzzz", key=b"wrong",
                                   priority=1, controlling=True, tie_breaker=1)
    a.receive_stun(request, B, 0.0)
    [(reply, dst)] = a.datagrams_to_send(0.0)
    assert dst == B and stun.parse_stun(reply).error_code == 401
    assert a.remote_candidates == []


def test_srflx_gathering_through_a_nat() -> None:
    a = IceAgent(controlling=True, random=rng(4))
    a.add_host_address(A)
    server = StunServer()
    a.gather_srflx(("198.51.100.1", 3478), 0.0)
    a.finish_gathering()
    [(request, dst)] = a.datagrams_to_send(0.0)
    # The server sees the NAT's public mapping, not our host address.
    reply = server.handle(request, ("203.0.113.50", 62000))
    assert reply is not None
    a.receive_stun(reply, dst, 0.01)
    gathered = [e.candidate for e in events(a) if isinstance(e, LocalCandidateGathered)]
    srflx = [c for c in gathered if c.type == "srflx"]
    assert srflx and srflx[0].address == ("203.0.113.50", 62000)
    assert (srflx[0].related_address, srflx[0].related_port) == A
    assert a.gathering_complete


def test_redundant_srflx_is_dropped_and_timeout_completes_gathering() -> None:
    a = IceAgent(controlling=True, random=rng(5))
    a.add_host_address(A)
    a.gather_srflx(("198.51.100.1", 3478), 0.0)
    a.gather_srflx(("198.51.100.2", 3478), 0.0)
    a.finish_gathering()
    out = a.datagrams_to_send(0.0)
    reply = StunServer().handle(out[0][0], A)  # no NAT: mapped == host
    assert reply is not None
    a.receive_stun(reply, out[0][1], 0.0)
    net = Net({A: a})
    net.run(60.0)  # the second server never answers
    assert a.gathering_complete
    assert [c.type for c in a.local_candidates] == ["host"]


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_random_datagrams_raise_only_protocol_error(data: bytes) -> None:
    a = IceAgent(controlling=True, random=rng(6))
    a.add_host_address(A)
    with contextlib.suppress(ProtocolError):
        a.receive_stun(data, B, 0.0)
    assert a.state is IceState.NEW
