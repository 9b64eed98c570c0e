"""Exit policy: special-address tables, flags, rule syntax and first-match order."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.exit.policy import (
    Action,
    AddressClass,
    ExitPolicy,
    PolicySyntaxError,
    PortRange,
    Rule,
    classify,
)
from zmesh.sansio.streams import ResetReason
from zmesh.sansio.wire import ProtocolError

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    ("addr", "cls"),
    [
        ("0.0.0.0", AddressClass.UNSPECIFIED),
        ("0.1.2.3", AddressClass.UNSPECIFIED),
        ("::", AddressClass.UNSPECIFIED),
        ("127.0.0.1", AddressClass.LOOPBACK),
        ("127.255.0.9", AddressClass.LOOPBACK),
        ("::1", AddressClass.LOOPBACK),
        ("::ffff:127.0.0.1", AddressClass.LOOPBACK),  # v4-mapped
        ("10.1.2.3", AddressClass.PRIVATE),
        ("172.31.255.255", AddressClass.PRIVATE),
        ("192.168.1.1", AddressClass.PRIVATE),
        ("100.64.0.1", AddressClass.PRIVATE),  # CGNAT shared space
        ("::ffff:192.168.0.1", AddressClass.PRIVATE),
        ("fd00::1", AddressClass.PRIVATE),
        ("fec0::1", AddressClass.PRIVATE),
        ("169.254.169.254", AddressClass.LINK_LOCAL),  # cloud metadata service
        ("fe80::1", AddressClass.LINK_LOCAL),
        ("224.0.0.1", AddressClass.MULTICAST),
        ("239.255.255.250", AddressClass.MULTICAST),
        ("ff02::1", AddressClass.MULTICAST),
        ("255.255.255.255", AddressClass.RESERVED),
        ("240.0.0.1", AddressClass.RESERVED),
        ("192.0.2.1", AddressClass.RESERVED),
        ("198.18.0.1", AddressClass.RESERVED),
        ("2001:db8::1", AddressClass.RESERVED),
        ("::1.2.3.4", AddressClass.RESERVED),  # deprecated IPv4-compatible
        ("64:ff9b::7f00:1", AddressClass.LOOPBACK),  # NAT64 of 127.0.0.1
        ("64:ff9b::a00:1", AddressClass.PRIVATE),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::1", AddressClass.LOOPBACK),  # 6to4 of 127.0.0.1
        ("2002:c0a8:101::1", AddressClass.PRIVATE),  # 6to4 of 192.168.1.1
        ("93.184.216.34", AddressClass.GLOBAL),
        ("172.32.0.1", AddressClass.GLOBAL),
        ("::ffff:93.184.216.34", AddressClass.GLOBAL),
        ("2606:2800:220:1::1", AddressClass.GLOBAL),
        ("64:ff9b::5db8:d822", AddressClass.GLOBAL),  # NAT64 of 93.184.216.34
    ],
)
def test_classify(addr: str, cls: AddressClass) -> None:
    assert classify(ip(addr)) is cls


def test_default_policy_refuses_special_addresses_and_smtp() -> None:
    policy = ExitPolicy()
    for addr in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1", "fe80::1", "0.0.0.0", "::"]:
        verdict = policy.check(ip(addr), 443)
        assert not verdict.allowed and verdict.reason is ResetReason.POLICY_REFUSED, addr
    assert policy.check(ip("93.184.216.34"), 443).allowed
    assert policy.check(ip("2606:2800:220:1::1"), 80).allowed
    smtp = policy.check(ip("93.184.216.34"), 25)
    assert not smtp.allowed and "25" in smtp.explanation
    assert not policy.check(ip("93.184.216.34"), 0).allowed


def test_flags_open_loopback_and_private_only() -> None:
    loop = ExitPolicy(allow_loopback=True)
    assert loop.check(ip("127.0.0.1"), 8080).allowed
    assert loop.check(ip("::ffff:127.0.0.1"), 8080).allowed
    assert not loop.check(ip("10.0.0.1"), 8080).allowed
    assert not loop.check(ip("127.0.0.1"), 25).allowed  # the SMTP default still applies
    private = ExitPolicy(allow_private=True)
    assert private.check(ip("192.168.0.10"), 80).allowed
    assert private.check(ip("fe80::1"), 80).allowed
    assert not private.check(ip("127.0.0.1"), 80).allowed
    # Multicast, reserved and unspecified stay refused whatever the flags.
    both = ExitPolicy(allow_loopback=True, allow_private=True)
    for addr in ["224.0.0.1", "255.255.255.255", "0.0.0.0", "2001:db8::1"]:
        assert not both.check(ip(addr), 80).allowed


def test_operator_rules_cannot_reopen_special_ranges() -> None:
    policy = ExitPolicy.from_lines(["accept *:*"])
    assert not policy.check(ip("127.0.0.1"), 80).allowed
    assert not policy.check(ip("10.0.0.1"), 80).allowed


def test_first_match_wins() -> None:
    policy = ExitPolicy.from_lines(
        [
            "# web only, but not to the documentation-adjacent block",
            "reject 93.184.0.0/16:*",
            "accept *:80",
            "accept *:443  # https",
            "accept [2606:2800::]/32:8000-8999",
            "reject *",
        ]
    )
    assert not policy.check(ip("93.184.216.34"), 80).allowed
    assert policy.check(ip("1.1.1.1"), 80).allowed
    assert policy.check(ip("1.1.1.1"), 443).allowed
    assert not policy.check(ip("1.1.1.1"), 22).allowed
    assert policy.check(ip("2606:2800:220:1::1"), 8080).allowed
    assert not policy.check(ip("2606:2801::1"), 8080).allowed
    # A v4 rule also matches the v4-mapped form of the address.
    assert not policy.check(ip("::ffff:93.184.216.34"), 80).allowed


def test_smtp_can_be_accepted_explicitly() -> None:
    assert ExitPolicy.from_lines(["accept *:25"]).check(ip("1.1.1.1"), 25).allowed


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("reject *:25", Rule(Action.REJECT, None, PortRange(25, 25))),
        ("accept *", Rule(Action.ACCEPT)),
        (
            "ACCEPT 10.0.0.0/8:1-1024",
            Rule(Action.ACCEPT, ipaddress.ip_network("10.0.0.0/8"), PortRange(1, 1024)),
        ),
        ("reject [2001:db8::]/32", Rule(Action.REJECT, ipaddress.ip_network("2001:db8::/32"))),
        (
            "reject [::1]:22",
            Rule(Action.REJECT, ipaddress.ip_network("::1/128"), PortRange(22, 22)),
        ),
        ("accept 1.2.3.4", Rule(Action.ACCEPT, ipaddress.ip_network("1.2.3.4/32"))),
    ],
)
def test_rule_syntax(text: str, rule: Rule) -> None:
    assert Rule.parse(text) == rule
    assert Rule.parse(str(rule)) == rule


@pytest.mark.parametrize(
    "text",
    [
        "",
        "allow *:80",
        "accept",
        "accept *:80 extra",
        "accept 10.0.0.1/8",  # host bits set
        "accept 10.0.0.0/33",
        "accept *:0",
        "accept *:70000",
        "accept *:443-80",
        "accept *:http",
        "accept [1.2.3.4]",
        "accept [::1",
        "accept [::1]x",
        "accept ::1",  # IPv6 needs brackets (the colon would be the port separator)
        "accept 1.2.3.4:+80",
    ],
)
def test_bad_rules(text: str) -> None:
    with pytest.raises(PolicySyntaxError):
        Rule.parse(text)


@settings(max_examples=400)
@given(st.text(max_size=40))
def test_random_rule_text_raises_only_protocol_errors(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        rule = Rule.parse(text)
        assert Rule.parse(str(rule)) == rule


@settings(max_examples=300)
@given(st.ip_addresses(), st.integers(1, 0xFFFF))
def test_default_policy_agrees_with_the_tables(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    verdict = ExitPolicy().check(addr, port)
    assert verdict.allowed == (classify(addr) is AddressClass.GLOBAL and port != 25)
