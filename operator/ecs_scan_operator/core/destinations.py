"""Where credentials may be sent: the decision for one outside destination (the Jira URL). Pure.

Rules, applied after DNS resolution to every address the host name resolves to:
- a destination is allowed when each of its addresses is a public (globally routable) one;
- an address that is unspecified (0.0.0.0, ::), loopback (127.0.0.0/8, ::1), link-local
  (169.254.0.0/16 with the instance metadata service at 169.254.169.254, fe80::/10),
  multicast, private (10/8, 172.16/12, 192.168/16, fc00::/7) or otherwise not globally
  routable (100.64/10, reserved and documentation ranges) refuses the whole destination,
  so a name that resolves to a mix of public and private addresses is refused;
- an IPv4 address written as IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is;
- the operator's allow-list lets a destination through anyway: an entry that is a host name
  allows that name whatever it resolves to (a self-hosted Jira on a private address), an
  entry that is an address or a CIDR allows the addresses inside it;
- a name that resolves to nothing is refused (there is nothing to check).
The I/O (getaddrinfo) is the adapter's; this module only decides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The cloud instance metadata services (AWS, GCP, Azure: 169.254.169.254; AWS IPv6: fd00:ec2::254).
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


@dataclass(frozen=True)
class AllowList:
    """Operator-approved destinations: host names (exact, case-insensitive) and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """From entries such as `jira.internal`, `10.0.0.0/8`, `127.0.0.1`; ValueError names a bad one."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = normalize_host(entry)
            if not _is_host_name(name):
                raise ValueError(f"{entry[:100]!r} is neither a host name nor an address or CIDR")
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    def extended(self, entries: Iterable[str]) -> AllowList:
        """This list plus `entries` (a grant's hosts on top of the operator's own)."""
        more = AllowList.parse(entries)
        if not more.hosts and not more.networks:
            return self
        return AllowList(self.hosts | more.hosts, self.networks + more.networks)

    def allows_host(self, host: str) -> bool:
        """The host name itself is on the list."""
        return normalize_host(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        """The address lies in a listed network."""
        return any(address.version == net.version and address in net for net in self.networks)


@dataclass(frozen=True)
class Allowed:
    """Credentials may go to this host, at these (checked) addresses."""

    host: str
    addresses: tuple[str, ...]
    by_allow_list: bool = False


@dataclass(frozen=True)
class Refused:
    """Credentials must not go to this host; `reason` says which address and why."""

    host: str
    reason: str

    def __str__(self) -> str:
        return f"{self.host}: {self.reason}"


Decision = Allowed | Refused


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets: the form host names are compared in."""
    return host.strip().strip("[]").rstrip(".").lower()


def _is_host_name(name: str) -> bool:
    labels = name.split(".")
    return (
        bool(name)
        and len(name) <= 253
        and all(
            0 < len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum() and label.isascii()
            for label in labels
        )
    )


def unmapped(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d); others unchanged."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_class(address: IPAddress) -> str | None:  # noqa: PLR0911 - one return per address class, the most specific first
    """Why this address is not a public one (a short phrase), or None when it is public."""
    address = unmapped(address)
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address in METADATA_ADDRESSES:
        return "the instance metadata service"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved, not globally routable address"
    return None


def decide(host: str, addresses: Sequence[str], allow: AllowList) -> Decision:
    """May credentials go to `host`, which resolved to `addresses`? Every address must pass."""
    name = normalize_host(host)
    if not addresses:
        return Refused(name, "the name resolves to no address")
    by_name = allow.allows_host(name)
    checked: list[str] = []
    listed = False
    for text in addresses:
        try:
            address = unmapped(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            return Refused(name, f"the resolver answered {text[:100]!r}, which is not an address")
        if str(address) not in checked:
            checked.append(str(address))
        why = address_class(address)
        if why is None or by_name:
            listed = listed or why is not None
            continue
        if allow.allows_address(address):
            listed = True
            continue
        return Refused(
            name,
            f"{address} is {why}; credentials are not sent there unless the operator setting "
            "ECS_SCAN_JIRA_ALLOWED_HOSTS lists the host",
        )
    return Allowed(name, tuple(checked), by_allow_list=listed)
