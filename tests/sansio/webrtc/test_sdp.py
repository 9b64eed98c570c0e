"""SDP offer/answer and candidate lines: Chrome shape, parsing others, clear errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.webrtc.candidate import Candidate, candidate_priority
from zmesh.sansio.webrtc.sdp import (
    DEFAULT_MAX_MESSAGE_SIZE,
    SdpError,
    SessionDescription,
    random_ice_credentials,
)
from zmesh.sansio.wire import ProtocolError

FP = ":".join(["AB"] * 32)

# A data-channel offer as Chrome 13x prints it (candidate lines shortened to one).
CHROME_OFFER = (
    "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n"
    "m=application 54321 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\n"
    "a=candidate:1467250027 1 udp 2122260223 127.0.0.1 54321 typ host generation 0 "
    "network-id 1 network-cost 10\r\n"
    "a=candidate:3a2f 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active generation 0\r\n"
    "a=ice-ufrag:Gp4n\r\na=ice-pwd:KzJ5ZHQ1dlGkA3Ci+Jb4ZSo1\r\na=ice-options:trickle\r\n"
    f"a=fingerprint:sha-256 {FP}\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n"
    "a=max-message-size:262144\r\n"
)

FIREFOX_OFFER = (
    "v=0\r\no=mozilla...THIS_IS_SDPARTA-99.0 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    f"a=fingerprint:sha-256 {FP}\r\na=group:BUNDLE 0\r\na=ice-options:trickle\r\n"
    "a=msid-semantic:WMS *\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\na=sendrecv\r\na=ice-pwd:0123456789abcdef0123456789abcdef\r\n"
    "a=ice-ufrag:01234567\r\na=mid:0\r\na=setup:actpass\r\na=sctp-port:5000\r\n"
    "a=max-message-size:1073741823\r\n"
)


def test_parse_chrome_offer() -> None:
    offer = SessionDescription.parse(CHROME_OFFER, "offer")
    assert offer.ice_ufrag == "Gp4n"
    assert offer.fingerprints == (("sha-256", FP),)
    assert offer.setup == "actpass"
    assert offer.max_message_size == 262144
    assert offer.candidates[0].address == ("127.0.0.1", 54321)
    assert offer.candidates[1].transport == "tcp"


def test_parse_firefox_offer_with_session_level_fingerprint() -> None:
    offer = SessionDescription.parse(FIREFOX_OFFER, "offer")
    assert offer.ice_ufrag == "01234567"
    assert offer.fingerprints[0][0] == "sha-256"
    assert offer.max_message_size == 1073741823
    assert offer.session_id == 1


def test_generated_sdp_is_chrome_shaped_and_round_trips() -> None:
    ufrag, pwd = random_ice_credentials(lambda n: bytes(range(n)))
    assert (len(ufrag), len(pwd)) == (4, 24)
    cand = Candidate("123", 1, "udp", candidate_priority("host"), "127.0.0.1", 4000, "host",
                     extensions=(("generation", "0"),))
    desc = SessionDescription("offer", ufrag, pwd, (("sha-256", FP),), "actpass",
                              candidates=(cand,), session_id=5)
    text = desc.to_sdp()
    assert "m=application 4000 UDP/DTLS/SCTP webrtc-datachannel\r\n" in text
    assert "a=sctp-port:5000\r\n" in text and "a=max-message-size:262144\r\n" in text
    assert "a=group:BUNDLE 0\r\n" in text
    assert SessionDescription.parse(text, "offer") == desc


def test_missing_max_message_size_defaults_to_64k() -> None:
    text = CHROME_OFFER.replace("a=max-message-size:262144\r\n", "")
    assert SessionDescription.parse(text, "offer").max_message_size == DEFAULT_MAX_MESSAGE_SIZE


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("a=ice-ufrag:Gp4n\r\n", "", "missing a=ice-ufrag"),
        ("a=ice-pwd:KzJ5ZHQ1dlGkA3Ci+Jb4ZSo1", "a=ice-pwd:short", "a=ice-pwd"),
        (f"a=fingerprint:sha-256 {FP}\r\n", "", "missing a=fingerprint"),
        (f"sha-256 {FP}", "sha-256 nothex", "malformed a=fingerprint"),
        ("a=setup:actpass", "a=setup:sideways", "a=setup"),
        ("m=application 54321", "m=audio 54321", "unsupported media"),
        ("UDP/DTLS/SCTP webrtc-datachannel", "RTP/AVP 0", "UDP/DTLS/SCTP"),
        ("m=application 54321", "m=application 0", "rejected"),
        ("v=0", "v=1", "v=0"),
        ("typ host generation 0 network-id", "typ bogus generation 0 network-id", "type"),
    ],
)
def test_clear_errors(old: str, new: str, message: str) -> None:
    with pytest.raises(SdpError, match=message) if "type" not in message else \
            pytest.raises(ProtocolError, match=message):
        SessionDescription.parse(CHROME_OFFER.replace(old, new), "offer")


def test_answer_may_not_be_actpass() -> None:
    with pytest.raises(SdpError, match="actpass"):
        SessionDescription.parse(CHROME_OFFER, "answer")


def test_candidate_parse_variants() -> None:
    aiortc = Candidate.from_sdp("6815297761 1 udp 2130706431 192.168.1.5 5000 typ host")
    assert aiortc.priority == 2130706431
    srflx = Candidate.from_sdp(
        "candidate:842163049 1 udp 1677729535 203.0.113.9 61000 typ srflx raddr 10.0.0.2 "
        "rport 5000 generation 0 ufrag Gp4n network-cost 999")
    assert (srflx.related_address, srflx.related_port) == ("10.0.0.2", 5000)
    assert ("ufrag", "Gp4n") in srflx.extensions
    assert Candidate.from_sdp(srflx.to_sdp()) == srflx
    mdns = Candidate.from_sdp("1 1 udp 2122260223 8c1d2b9e-1111-2222-3333-444455556666.local "
                              "5000 typ host")
    assert mdns.host.endswith(".local")


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_random_sdp_raises_only_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        SessionDescription.parse(text, "offer")


@settings(max_examples=200)
@given(st.lists(st.sampled_from(CHROME_OFFER.split("\r\n")), max_size=25))
def test_shuffled_chrome_lines_raise_only_protocol_error(lines: list[str]) -> None:
    with contextlib.suppress(ProtocolError):
        SessionDescription.parse("\r\n".join(["v=0", *lines]), "offer")


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_random_candidates_raise_only_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        Candidate.from_sdp(text)


@settings(max_examples=100)
@given(foundation=st.text("0123456789abcdef", min_size=1, max_size=32),
       priority=st.integers(1, 2**32 - 1), port=st.integers(0, 65535),
       host=st.ip_addresses().map(str), kind=st.sampled_from(["host", "srflx", "prflx"]))
def test_candidate_round_trip(foundation: str, priority: int, port: int, host: str,
                              kind: str) -> None:
    cand = Candidate(foundation, 1, "udp", priority, host, port, kind)
    assert Candidate.from_sdp(cand.to_sdp()) == cand


ICE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@settings(max_examples=100)
@given(ufrag=st.text(ICE, min_size=4, max_size=32), pwd=st.text(ICE, min_size=22, max_size=64),
       setup=st.sampled_from(["actpass", "active", "passive"]),
       size=st.integers(1, 2**32), session=st.integers(0, 2**62),
       fp=st.binary(min_size=32, max_size=32),
       cands=st.lists(st.tuples(st.ip_addresses().map(str), st.integers(1, 65535)), max_size=4),
       end=st.booleans())
def test_description_round_trip(ufrag: str, pwd: str, setup: str, size: int, session: int,
                                fp: bytes, cands: list[tuple[str, int]], end: bool) -> None:
    candidates = tuple(Candidate(str(i + 1), 1, "udp", candidate_priority("host"), host, port,
                                 "host") for i, (host, port) in enumerate(cands))
    kind = "offer" if setup == "actpass" else "answer"
    desc = SessionDescription(kind, ufrag, pwd, (("sha-256", ":".join(f"{b:02X}" for b in fp)),),
                              setup, max_message_size=size, candidates=candidates,
                              end_of_candidates=end, session_id=session)
    assert SessionDescription.parse(desc.to_sdp(), kind) == desc
