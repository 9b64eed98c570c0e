"""SDP offer/answer for a data-channel-only WebRTC session (RFC 8866, RFC 8829 §5, RFC 8841).

The generated text is shaped like Chrome's: one BUNDLEd ``m=application ... UDP/DTLS/SCTP
webrtc-datachannel`` section, ``a=sctp-port:5000``, ``a=max-message-size:262144``, 4-character
ufrag, 24-character password (libwebrtc ``ICE_UFRAG_LENGTH``/``ICE_PWD_LENGTH``), a SHA-256
fingerprint (RFC 8122 §5) and ``a=setup`` (RFC 8842). The parser reads what Chrome, Firefox and
aiortc write; it accepts session-level ICE/DTLS attributes (RFC 8839 §5.4) and raises
:class:`SdpError` with a message naming the problem. Offers carrying audio or video are refused:
a zmesh node only ever negotiates data channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from zmesh.sansio.webrtc.candidate import Candidate
from zmesh.sansio.wire import MalformedInput, OversizedInput, RandomSource

__all__ = [
    "SdpError",
    "SessionDescription",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "CHROME_MAX_MESSAGE_SIZE",
    "random_ice_credentials",
]

CHROME_MAX_MESSAGE_SIZE: Final = 262_144  # Chrome's a=max-message-size
DEFAULT_MAX_MESSAGE_SIZE: Final = 65_536  # RFC 8841 §6: assumed when the attribute is absent
SCTP_PORT: Final = 5000  # RFC 8841 §5, what every browser uses
MAX_SDP_LENGTH: Final = 64 * 1024
MAX_CANDIDATES: Final = 64
UFRAG_LENGTH: Final = 4  # libwebrtc p2p_constants.cc
PWD_LENGTH: Final = 24
_ICE_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ICE_CHAR_RE: Final = re.compile(r"^[A-Za-z0-9+/]+$")  # RFC 8839 §5.4 ice-char
_HEX_FP_RE: Final = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})+$")
_SETUP_VALUES: Final = frozenset({"actpass", "active", "passive", "holdconn"})
_DATA_PROTO: Final = "UDP/DTLS/SCTP"
_DATA_FMT: Final = "webrtc-datachannel"

SdpType = Literal["offer", "answer"]


class SdpError(MalformedInput):
    """The SDP text is not a data-channel session we can use; the message says why."""


def random_ice_credentials(random: RandomSource) -> tuple[str, str]:
    """A Chrome-length ufrag and password drawn from ice-chars (RFC 8839 §5.4)."""
    raw = random(UFRAG_LENGTH + PWD_LENGTH)
    chars = "".join(_ICE_CHARS[b & 63] for b in raw)
    return chars[:UFRAG_LENGTH], chars[UFRAG_LENGTH:]


@dataclass(frozen=True)
class SessionDescription:
    type: SdpType
    ice_ufrag: str
    ice_pwd: str
    fingerprints: tuple[tuple[str, str], ...]  # (hash function, upper-case colon hex)
    setup: str  # actpass | active | passive
    mid: str = "0"
    sctp_port: int = SCTP_PORT
    max_message_size: int = CHROME_MAX_MESSAGE_SIZE
    candidates: tuple[Candidate, ...] = ()
    end_of_candidates: bool = False
    ice_options: tuple[str, ...] = ("trickle",)
    ice_lite: bool = False
    session_id: int = 0
    session_version: int = 2
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def with_candidates(
        self, candidates: tuple[Candidate, ...], *, end: bool
    ) -> SessionDescription:
        return replace(self, candidates=candidates, end_of_candidates=end)

    def to_sdp(self) -> str:
        """The SDP text, CRLF line endings, attribute order as in Chrome's local description."""
        default = self.candidates[0] if self.candidates else None
        port = default.port if default else 9  # RFC 8840 §4.1.1: 9 ("discard") before gathering
        c_addr = default.host if default else "0.0.0.0"
        c_family = "IP6" if ":" in c_addr else "IP4"
        lines = [
            "v=0",
            f"o=- {self.session_id} {self.session_version} IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            f"a=group:BUNDLE {self.mid}",
            "a=extmap-allow-mixed",
            "a=msid-semantic: WMS",
        ]
        if self.ice_lite:
            lines.append("a=ice-lite")
        lines += [
            f"m=application {port} {_DATA_PROTO} {_DATA_FMT}",
            f"c=IN {c_family} {c_addr}",
        ]
        lines += [f"a=candidate:{c.to_sdp()}" for c in self.candidates]
        if self.end_of_candidates:
            lines.append("a=end-of-candidates")
        lines += [f"a=ice-ufrag:{self.ice_ufrag}", f"a=ice-pwd:{self.ice_pwd}"]
        if self.ice_options:
            lines.append(f"a=ice-options:{' '.join(self.ice_options)}")
        lines += [f"a=fingerprint:{alg} {value}" for alg, value in self.fingerprints]
        lines += [
            f"a=setup:{self.setup}",
            f"a=mid:{self.mid}",
            f"a=sctp-port:{self.sctp_port}",
            f"a=max-message-size:{self.max_message_size}",
        ]
        return "\r\n".join(lines) + "\r\n"

    @classmethod
    def parse(cls, text: str, type: SdpType) -> SessionDescription:
        return _parse(text, type)


def _parse(text: str, sdp_type: SdpType) -> SessionDescription:
    if len(text) > MAX_SDP_LENGTH:
        raise OversizedInput(f"SDP of {len(text)} characters exceeds {MAX_SDP_LENGTH}")
    if sdp_type not in ("offer", "answer"):
        raise SdpError(f"SDP type must be offer or answer, not {sdp_type!r}")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    session: dict[str, list[str]] = {}
    media: list[tuple[str, dict[str, list[str]]]] = []
    session_id = 0
    session_version = 0
    current = session
    for number, line in enumerate(lines, 1):
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"line {number} is not <type>=<value>: {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            attrs: dict[str, list[str]] = {}
            media.append((value, attrs))
            current = attrs
        elif kind == "a":
            name, _, attr_value = value.partition(":")
            current.setdefault(name, []).append(attr_value)
        elif kind == "o" and current is session:
            fields = value.split()
            if len(fields) != 6:
                raise SdpError("o= line needs 6 fields")
            session_id = _int_field(fields[1], "session id", 2**64 - 1)
            session_version = _int_field(fields[2], "session version", 2**64 - 1)
    if not media:
        raise SdpError("SDP has no m= section")
    data_sections = []
    for m_line, attrs in media:
        fields = m_line.split()
        if len(fields) < 4:
            raise SdpError(f"m= line needs 4 fields: {m_line[:60]!r}")
        if fields[0] != "application":
            raise SdpError(f"unsupported media {fields[0]!r}: only data channels are negotiated")
        if fields[2] != _DATA_PROTO or fields[3] != _DATA_FMT:
            raise SdpError(f"m=application must be {_DATA_PROTO} {_DATA_FMT}, got {m_line[:60]!r}")
        if fields[1] == "0":
            raise SdpError("the data m= section is rejected (port 0)")
        data_sections.append(attrs)
    if len(data_sections) != 1:
        raise SdpError("exactly one m=application section is supported")
    attrs = data_sections[0]

    def get(name: str, required: bool = True) -> str | None:
        values = attrs.get(name) or session.get(name)
        if not values:
            if required:
                raise SdpError(f"missing a={name}")
            return None
        return values[0]

    ufrag = get("ice-ufrag") or ""
    pwd = get("ice-pwd") or ""
    # RFC 8839 §5.4: ufrag 4..256 and pwd 22..256 ice-chars.
    if not 4 <= len(ufrag) <= 256 or not _ICE_CHAR_RE.match(ufrag):
        raise SdpError("a=ice-ufrag must be 4..256 ice-chars")
    if not 22 <= len(pwd) <= 256 or not _ICE_CHAR_RE.match(pwd):
        raise SdpError("a=ice-pwd must be 22..256 ice-chars")
    fingerprints = []
    for fp in (attrs.get("fingerprint") or session.get("fingerprint") or []):
        alg, _, hex_value = fp.strip().partition(" ")
        hex_value = hex_value.strip()
        if not alg or not _HEX_FP_RE.match(hex_value):
            raise SdpError(f"malformed a=fingerprint: {fp[:60]!r}")
        fingerprints.append((alg.lower(), hex_value.upper()))
    if not fingerprints:
        raise SdpError("missing a=fingerprint")
    setup = get("setup") or ""
    if setup not in _SETUP_VALUES:
        raise SdpError(f"a=setup must be one of {sorted(_SETUP_VALUES)}, got {setup!r}")
    if sdp_type == "answer" and setup == "actpass":
        raise SdpError("an answer must not say a=setup:actpass (RFC 8842 §5.2)")
    mid = get("mid", required=False) or "0"
    sctp_port = _int_field(get("sctp-port", required=False) or str(SCTP_PORT), "sctp-port", 65535)
    max_size_text = get("max-message-size", required=False)
    max_message_size = (
        _int_field(max_size_text, "max-message-size", 2**64 - 1)
        if max_size_text is not None else DEFAULT_MAX_MESSAGE_SIZE
    )
    raw_candidates = attrs.get("candidate", [])
    if len(raw_candidates) > MAX_CANDIDATES:
        raise OversizedInput(f"more than {MAX_CANDIDATES} candidates")
    candidates = tuple(Candidate.from_sdp(c) for c in raw_candidates)
    options_text = get("ice-options", required=False)
    ice_options = tuple(options_text.split()) if options_text else ()
    return SessionDescription(
        type=sdp_type,
        ice_ufrag=ufrag,
        ice_pwd=pwd,
        fingerprints=tuple(fingerprints),
        setup=setup,
        mid=mid,
        sctp_port=sctp_port,
        max_message_size=max_message_size,
        candidates=candidates,
        end_of_candidates="end-of-candidates" in attrs or "end-of-candidates" in session,
        ice_options=ice_options,
        ice_lite="ice-lite" in session,
        session_id=session_id,
        session_version=session_version,
    )


def _int_field(text: str, what: str, high: int) -> int:
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise SdpError(f"{what} is not a number: {text[:30]!r}")
    value = int(text)
    if value > high:
        raise SdpError(f"{what} {value} out of range")
    return value
