"""Exit policy: which resolved addresses and ports a direct exit may connect to.

The exit checks every address **after DNS resolution** (a name is never trusted: ``localhost``,
``10.0.0.1.nip.io`` or a rebinding domain all end up here as addresses). Evaluation order,
first decision wins:

1. Addresses that are never reachable destinations are refused: unspecified, multicast and
   reserved ranges (IANA IPv4/IPv6 Special-Purpose Address Registries, RFC 6890 and updates).
2. Loopback is refused unless ``allow_loopback``; private, shared (CGNAT), unique-local and
   link-local ranges unless ``allow_private``. These come before the operator's rules on
   purpose: a broad ``accept *:443`` must not open the exit host's own services.
3. The operator's rules, first match wins (Tor's ``ExitPolicy`` syntax, simplified).
4. The default tail: ``reject *:25`` (SMTP spam), then ``accept *:*``.

IPv6 forms that carry an IPv4 address are judged by that address too: v4-mapped
(``::ffff:0:0/96``) is treated exactly as IPv4; NAT64 (``64:ff9b::/96``) and 6to4
(``2002::/16``) are refused when the embedded IPv4 address would be. ``docs/exit-policy.md``
shows the tables and the rule syntax.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from zmesh.sansio.streams import ResetReason
from zmesh.sansio.wire import LocalProtocolError

__all__ = [
    "IPAddress",
    "IPNetwork",
    "AddressClass",
    "Action",
    "PortRange",
    "Rule",
    "Verdict",
    "ExitPolicy",
    "PolicySyntaxError",
    "classify",
    "normalize",
    "DEFAULT_TAIL",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicySyntaxError(LocalProtocolError):
    """A policy rule in the configuration does not parse."""


class AddressClass(enum.Enum):
    GLOBAL = "global"
    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    MULTICAST = "multicast"
    RESERVED = "reserved"


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Ordered: the first table holding an address decides its class. Sources: IANA IPv4 and IPv6
# Special-Purpose Address Registries (RFC 6890, 6598, 7526, 8190, 9602, 9637) and the IANA
# multicast registries; written out here instead of using ``ipaddress``'s ``is_*`` flags,
# whose answers changed between Python 3.11 and 3.13.
_V4_TABLE: Final[tuple[tuple[AddressClass, tuple[IPNetwork, ...]], ...]] = (
    (AddressClass.UNSPECIFIED, _nets("0.0.0.0/8")),  # "this network", RFC 791/1122
    (AddressClass.LOOPBACK, _nets("127.0.0.0/8")),
    (AddressClass.PRIVATE, _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")),
    (AddressClass.LINK_LOCAL, _nets("169.254.0.0/16")),
    (AddressClass.MULTICAST, _nets("224.0.0.0/4")),
    (
        AddressClass.RESERVED,
        _nets(
            "192.0.0.0/24",  # IETF protocol assignments
            "192.0.2.0/24",  # TEST-NET-1
            "198.51.100.0/24",  # TEST-NET-2
            "203.0.113.0/24",  # TEST-NET-3
            "198.18.0.0/15",  # benchmarking
            "192.88.99.0/24",  # deprecated 6to4 relay anycast (RFC 7526)
            "240.0.0.0/4",  # reserved, includes limited broadcast 255.255.255.255
        ),
    ),
)
_V6_TABLE: Final[tuple[tuple[AddressClass, tuple[IPNetwork, ...]], ...]] = (
    (AddressClass.UNSPECIFIED, _nets("::/128")),
    (AddressClass.LOOPBACK, _nets("::1/128")),
    (AddressClass.PRIVATE, _nets("fc00::/7", "fec0::/10", "64:ff9b:1::/48")),  # ULA, site-local
    (AddressClass.LINK_LOCAL, _nets("fe80::/10")),
    (AddressClass.MULTICAST, _nets("ff00::/8")),
    (
        AddressClass.RESERVED,
        _nets(
            "::/96",  # deprecated IPv4-compatible addresses
            "100::/64",  # discard-only
            "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, …)
            "2001:db8::/32",  # documentation
            "3fff::/20",  # documentation (RFC 9637)
            "5f00::/16",  # SRv6 SIDs (RFC 9602)
        ),
    ),
)
_V4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")


def normalize(addr: IPAddress) -> IPAddress:
    """A v4-mapped IPv6 address as the IPv4 address it is; anything else unchanged."""
    if isinstance(addr, ipaddress.IPv6Address) and addr in _V4_MAPPED:
        return ipaddress.IPv4Address(int(addr) & 0xFFFF_FFFF)
    return addr


def classify(addr: IPAddress) -> AddressClass:
    """The special-purpose class of ``addr`` (``GLOBAL`` if it is in none)."""
    addr = normalize(addr)
    table = _V4_TABLE if isinstance(addr, ipaddress.IPv4Address) else _V6_TABLE
    for cls, nets in table:
        if any(addr in net for net in nets):
            return cls
    if isinstance(addr, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = None
        if addr in _NAT64:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFF_FFFF)
        elif addr in _SIX_TO_FOUR:
            embedded = ipaddress.IPv4Address((int(addr) >> 80) & 0xFFFF_FFFF)
        if embedded is not None:
            return classify(embedded)
    return AddressClass.GLOBAL


class Action(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class PortRange:
    low: int = 1
    high: int = 0xFFFF

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high <= 0xFFFF:
            raise PolicySyntaxError(f"bad port range {self.low}-{self.high}")

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __str__(self) -> str:
        if (self.low, self.high) == (1, 0xFFFF):
            return "*"
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True, slots=True)
class Rule:
    """``accept|reject ADDRESS[/BITS][:PORTS]``; ``network=None`` is ``*`` (any address)."""

    action: Action
    network: IPNetwork | None = None
    ports: PortRange = field(default_factory=PortRange)

    def matches(self, addr: IPAddress, port: int) -> bool:
        if port not in self.ports:
            return False
        if self.network is None:
            return True
        addr = normalize(addr)
        return addr.version == self.network.version and addr in self.network

    def __str__(self) -> str:
        if self.network is None:
            where = "*"
        elif self.network.version == 6:
            where = f"[{self.network.network_address}]/{self.network.prefixlen}"
        else:
            where = str(self.network)
        return f"{self.action.value} {where}:{self.ports}"

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Parse one rule, e.g. ``reject *:25``, ``accept 192.0.2.0/24:80-443``,
        ``reject [2001:db8::]/32``. Raises :class:`PolicySyntaxError`."""
        parts = text.split()
        if len(parts) != 2:
            raise PolicySyntaxError(f"rule {text!r}: want 'accept|reject ADDRESS[:PORTS]'")
        try:
            action = Action(parts[0].lower())
        except ValueError:
            raise PolicySyntaxError(f"rule {text!r}: unknown action") from None
        target = parts[1]
        ports_text = "*"
        if target.startswith("["):
            close = target.find("]")
            if close < 0:
                raise PolicySyntaxError(f"rule {text!r}: unclosed '['")
            addr_text, rest = target[1:close], target[close + 1 :]
            if rest.startswith("/"):
                bits, _, ports_part = rest[1:].partition(":")
                addr_text = f"{addr_text}/{bits}"
                ports_text = ports_part or "*"
            elif rest.startswith(":"):
                ports_text = rest[1:]
            elif rest:
                raise PolicySyntaxError(f"rule {text!r}: junk after ']'")
            if ":" not in addr_text:
                raise PolicySyntaxError(f"rule {text!r}: brackets hold only IPv6")
        else:
            addr_text, _, ports_part = target.partition(":")
            ports_text = ports_part or "*"
        return cls(action, _parse_network(addr_text, text), _parse_ports(ports_text, text))


def _parse_network(addr_text: str, rule: str) -> IPNetwork | None:
    if addr_text == "*":
        return None
    if not addr_text or not addr_text.isascii() or any(c.isspace() for c in addr_text):
        raise PolicySyntaxError(f"rule {rule!r}: bad address")
    try:
        net = ipaddress.ip_network(addr_text, strict=True)
    except ValueError as exc:
        raise PolicySyntaxError(f"rule {rule!r}: {exc}") from None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.scope_id:
        raise PolicySyntaxError(f"rule {rule!r}: scoped address")
    return net


def _parse_ports(ports_text: str, rule: str) -> PortRange:
    if ports_text == "*":
        return PortRange()
    low_text, dash, high_text = ports_text.partition("-")
    if not (low_text.isascii() and low_text.isdigit()) or (
        dash and not (high_text.isascii() and high_text.isdigit())
    ):
        raise PolicySyntaxError(f"rule {rule!r}: bad ports {ports_text!r}")
    if len(low_text) > 5 or len(high_text) > 5:
        raise PolicySyntaxError(f"rule {rule!r}: port out of range")
    low = int(low_text)
    return PortRange(low, int(high_text) if dash else low)


#: Applied after the operator's rules.
DEFAULT_TAIL: Final = (
    Rule(Action.REJECT, None, PortRange(25, 25)),  # SMTP: the classic open-relay abuse
    Rule(Action.ACCEPT),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: ResetReason | None  # ``POLICY_REFUSED`` when refused, else None
    explanation: str


_ALLOWED_BY_FLAG: Final = {
    AddressClass.LOOPBACK: "allow_loopback",
    AddressClass.PRIVATE: "allow_private",
    AddressClass.LINK_LOCAL: "allow_private",
}


@dataclass(frozen=True, slots=True)
class ExitPolicy:
    """An exit's policy; immutable, so one instance can be shared by every stream."""

    rules: tuple[Rule, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False

    @classmethod
    def from_lines(
        cls, lines: Iterable[str], *, allow_loopback: bool = False, allow_private: bool = False
    ) -> ExitPolicy:
        """Rules from configuration text; blank lines and ``#`` comments are skipped."""
        rules = []
        for line in lines:
            text = line.split("#", 1)[0].strip()
            if text:
                rules.append(Rule.parse(text))
        return cls(tuple(rules), allow_loopback=allow_loopback, allow_private=allow_private)

    def check(self, addr: IPAddress, port: int) -> Verdict:
        """May the exit connect to ``addr``:``port``? ``addr`` must be already resolved."""
        if not 1 <= port <= 0xFFFF:
            return _refuse(f"port {port}")
        cls = classify(addr)
        if cls is not AddressClass.GLOBAL:
            flag = _ALLOWED_BY_FLAG.get(cls)
            if flag is None or not getattr(self, flag):
                return _refuse(f"{cls.value} address")
        for rule in (*self.rules, *DEFAULT_TAIL):
            if rule.matches(addr, port):
                if rule.action is Action.ACCEPT:
                    return Verdict(True, None, f"rule '{rule}'")
                return _refuse(f"rule '{rule}'")
        raise AssertionError("DEFAULT_TAIL ends with accept *:*")  # pragma: no cover

    def __str__(self) -> str:
        flags = [n for n in ("allow_loopback", "allow_private") if getattr(self, n)]
        lines = [f"# flags: {', '.join(flags) or 'none'}", *map(str, self.rules)]
        return "\n".join([*lines, *(f"{r}  # default" for r in DEFAULT_TAIL)])


def _refuse(why: str) -> Verdict:
    return Verdict(False, ResetReason.POLICY_REFUSED, why)
