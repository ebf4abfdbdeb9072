"""Outbound safety rules: which addresses are internal, what the allowlist opens."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowguard.actions.safety import AllowList, address_problem, check_address, check_url_target
from flowguard.errors import ConfigError, Refused


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-global"),
        ("::ffff:10.0.0.1", "private"),
        # IPv4 embedded in IPv6: judged by the IPv4 address inside.
        ("2002:a9fe:a9fe::", "cloud metadata"),  # 6to4 of 169.254.169.254
        ("2002:7f00:1::1", "loopback"),
        ("2002:a00:1::", "private"),
        ("2002:808:808::1", "6to4"),  # a public one still goes through an unknown relay
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 (RFC 6052)
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b:1::a00:1", "private"),  # local-use NAT64 (RFC 8215)
        ("64:ff9b::808:808", None),  # DNS64 answers for a public host: reachable
        ("2001:0:4136:e378:8000:63bf:5601:5601", "cloud metadata"),  # Teredo, client obfuscated
        ("::a9fe:a9fe", "cloud metadata"),  # IPv4-compatible (deprecated)
        ("fec0::1", "site-local"),
        ("feff:ffff::1", "site-local"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_problems(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


def test_allowlist_parses_cidrs_addresses_and_patterns() -> None:
    allow = AllowList.parse(["10.0.0.0/8", " 127.0.0.1 ", "*.corp.example", "", "fd00::/8"])
    assert len(allow.networks) == 3
    assert allow.host_patterns == ("*.corp.example",)
    assert allow.host_allowed("hooks.corp.example")
    assert allow.host_allowed("HOOKS.Corp.Example")
    assert not allow.host_allowed("corp.example.evil.com")
    assert allow.host_allowed("10.1.2.3")
    assert allow.host_allowed("[fd00::1]")
    assert allow.address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"))


@pytest.mark.parametrize("entry", ["*", "*.*", "http://x", "10.0.0.0/33x", "a b", "host/path"])
def test_a_bad_allowlist_entry_names_itself(entry: str) -> None:
    with pytest.raises(ConfigError, match="FLOWGUARD_ACTIONS_ALLOW_HOSTS") as info:
        AllowList.parse([entry])
    assert repr(entry.strip()) in str(info.value)


def test_plain_http_needs_the_allowlist() -> None:
    with pytest.raises(Refused, match="only https is allowed"):
        check_url_target("http", "hooks.example.com", AllowList())
    check_url_target("https", "hooks.example.com", AllowList())
    check_url_target("http", "hooks.corp.example", AllowList.parse(["*.corp.example"]))


def test_a_host_pattern_opens_private_but_never_metadata_addresses() -> None:
    allow = AllowList.parse(["hooks.corp.example"])
    check_address("hooks.corp.example", ipaddress.ip_address("10.1.1.1"), allow)
    with pytest.raises(Refused, match=r"resolves to 169\.254\.169\.254"):
        check_address("hooks.corp.example", ipaddress.ip_address("169.254.169.254"), allow)
    opened = AllowList.parse(["169.254.169.254/32"])
    check_address("metadata", ipaddress.ip_address("169.254.169.254"), opened)


def test_a_host_pattern_never_opens_metadata_embedded_in_ipv6() -> None:
    allow = AllowList.parse(["hooks.corp.example"])
    for embedded in ("2002:a9fe:a9fe::", "64:ff9b::a9fe:a9fe", "::ffff:169.254.169.254"):
        with pytest.raises(Refused, match="cloud metadata"):
            check_address("hooks.corp.example", ipaddress.ip_address(embedded), allow)


_private_v4 = st.sampled_from(
    [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
).flatmap(lambda net: st.integers(0, net.num_addresses - 1).map(lambda i: net.network_address + i))


@given(address=_private_v4, prefix=st.integers(min_value=8, max_value=32))
def test_a_private_address_is_refused_unless_its_network_is_allowed(
    address: ipaddress.IPv4Address, prefix: int
) -> None:
    with pytest.raises(Refused):
        check_address("h.example", address, AllowList())
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    check_address("h.example", address, AllowList((network,)))
    other = AllowList((ipaddress.ip_network("203.0.113.0/24"),))
    with pytest.raises(Refused):
        check_address("h.example", address, other)


_internal_v4 = st.sampled_from(
    [
        ipaddress.ip_network(n)
        for n in ("10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16", "0.0.0.0/8")
    ]
).flatmap(lambda net: st.integers(0, net.num_addresses - 1).map(lambda i: net.network_address + i))


@given(address=_internal_v4)
def test_an_internal_ipv4_address_stays_internal_in_every_ipv6_wrapping(
    address: ipaddress.IPv4Address,
) -> None:
    value = int(address)
    wrapped = [
        ipaddress.IPv6Address((0xFFFF << 32) | value),  # ::ffff:a.b.c.d
        ipaddress.IPv6Address((0x2002 << 112) | (value << 80)),  # 6to4
        ipaddress.IPv6Address((0x64FF9B << 96) | value),  # NAT64
        ipaddress.IPv6Address((0x20010000 << 96) | (value ^ 0xFFFFFFFF)),  # Teredo client
    ]
    expected = address_problem(address)
    assert expected is not None
    for form in wrapped:
        assert address_problem(form) == expected, form
