"""Outbound safety: actions cannot be pointed at internal services.

A workflow author chooses the URL; the process runs inside the operator's
network. So by default an action may only reach public addresses over HTTPS.
The operator opens more with an allowlist of CIDRs and host patterns
(``FLOWGUARD_ACTIONS_ALLOW_HOSTS``). The check runs twice: on the URL
(scheme, host name) before anything is sent, and on every address the host
*resolves to*, at connect time, so a DNS name pointing at 169.254.169.254 is
refused as surely as the literal address.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from flowguard.errors import ConfigError, Refused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance-metadata endpoints: only a CIDR entry opens them, never a host pattern,
# so a public-looking name that resolves here stays refused.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_HOST_PATTERN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.*?")


@dataclass(frozen=True, slots=True)
class AllowList:
    """What the operator opened: networks (by address) and host patterns (by name)."""

    networks: tuple[IPNetwork, ...] = ()
    host_patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Parse CIDRs, single addresses and host patterns; a bad entry names itself."""
        networks: list[IPNetwork] = []
        patterns: list[str] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if not set(entry) <= _HOST_PATTERN_CHARS or entry.strip("*.?") == "":
                raise ConfigError(
                    f"FLOWGUARD_ACTIONS_ALLOW_HOSTS: {raw.strip()!r} is neither a CIDR "
                    "(10.0.0.0/8), an address, nor a host pattern (*.corp.example)"
                )
            patterns.append(entry)
        return cls(tuple(networks), tuple(patterns))

    def host_allowed(self, host: str) -> bool:
        """The host name matches a pattern, or the host is an address inside an allowed network."""
        host = host.lower().strip("[]")
        if any(fnmatch.fnmatchcase(host, p) for p in self.host_patterns):
            return True
        address = _as_address(host)
        return address is not None and self.address_allowed(address)

    def address_allowed(self, address: IPAddress) -> bool:
        """Inside an allowed network (an IPv4-mapped IPv6 address counts as its IPv4 address)."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks if net.version == address.version)


def _as_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# IPv6 ranges that carry an IPv4 address in their low 32 bits (RFC 6052's /96 layout).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: always this layout
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local use (RFC 8215): often /96 too
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291), :: and ::1 aside
_SIXTOFOUR = ipaddress.ip_network("2002::/16")


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination, or ``None`` when it is.

    An IPv6 address that carries an IPv4 one (IPv4-mapped, NAT64, 6to4, Teredo,
    IPv4-compatible) is judged by the IPv4 address first, under the same label, so
    ``2002:a9fe:a9fe::`` is "cloud metadata" like 169.254.169.254 (and no host pattern
    opens it). Mapped and well-known NAT64 addresses of public IPv4 ones are public
    (that is what DNS64 answers on an IPv6-only network); 6to4 is refused even then: it
    goes through whichever relay answers (deprecated, RFC 7526).
    """
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            problem = address_problem(inner)
            if problem is not None or address.ipv4_mapped is not None or address in _NAT64:
                return problem
            if address in _SIXTOFOUR:
                return "6to4"
        if address.is_site_local:
            return "site-local"
    for label, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return label
    if not address.is_global:
        return "non-global"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries, or ``None``: what a packet to it would reach."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client: where the tunnel ends
    if (
        address in _NAT64
        or address in _NAT64_LOCAL
        or (address in _IPV4_COMPATIBLE and int(address) > 1)
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_url_target(scheme: str, host: str, allow: AllowList) -> None:
    """Refuse a URL before sending: plain HTTP or a literal internal address, unless allowed."""
    allowed = allow.host_allowed(host)
    if scheme != "https" and not allowed:
        raise Refused(
            f"refused {scheme}://{host}: only https is allowed unless the host is in "
            "FLOWGUARD_ACTIONS_ALLOW_HOSTS"
        )
    address = _as_address(host.strip("[]"))
    if address is not None:
        check_address(host, address, allow)


def check_address(host: str, address: IPAddress, allow: AllowList) -> None:
    """Refuse a resolved address that is internal, unless the operator opened it.

    A host pattern opens private addresses of that host but never a metadata address:
    only a CIDR naming the address itself does.
    """
    problem = address_problem(address)
    if problem is None or allow.address_allowed(address):
        return
    if problem != "cloud metadata" and allow.host_allowed(host):
        return
    where = "" if _as_address(host.strip("[]")) == address else f" (resolves to {address})"
    raise Refused(
        f"refused {host}{where}: {problem} address; allow it with FLOWGUARD_ACTIONS_ALLOW_HOSTS"
    )
