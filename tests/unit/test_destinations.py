"""Where credentials may be sent (core.destinations.decide): every class of address, as a table."""

from __future__ import annotations

import pytest

from ecs_scan_operator.core.destinations import Allowed, AllowList, Refused, decide

PUBLIC4 = "104.192.141.1"  # an Atlassian Cloud address
PUBLIC6 = "2401:1d80:3000::1"
NONE = AllowList()


@pytest.mark.parametrize(
    ("host", "addresses", "why"),
    [
        ("localhost", ["127.0.0.1"], "loopback"),
        ("x", ["127.8.9.10"], "loopback"),
        ("localhost", ["::1"], "loopback"),
        ("x", ["::ffff:127.0.0.1"], "loopback"),  # IPv4-mapped IPv6 is judged as IPv4
        ("x", ["0.0.0.0"], "unspecified"),
        ("x", ["::"], "unspecified"),
        ("x", ["169.254.169.254"], "instance metadata service"),
        ("x", ["::ffff:169.254.169.254"], "instance metadata service"),
        ("x", ["fd00:ec2::254"], "instance metadata service"),
        ("x", ["169.254.10.20"], "link-local"),
        ("x", ["fe80::1%eth0"], "link-local"),  # a scope id is not an escape
        ("x", ["224.0.0.1"], "multicast"),
        ("x", ["ff02::1"], "multicast"),
        ("x", ["10.1.2.3"], "private"),
        ("x", ["172.16.0.1"], "private"),
        ("x", ["172.31.255.255"], "private"),
        ("x", ["192.168.1.1"], "private"),
        ("x", ["::ffff:10.0.0.1"], "private"),
        ("x", ["fd12:3456::1"], "private"),
        ("x", ["100.64.0.1"], "not globally routable"),  # carrier-grade NAT
        ("x", ["192.0.2.1"], "private"),  # documentation range (is_private in the stdlib)
        ("jira.example.com", [PUBLIC4, "10.0.0.5"], "10.0.0.5 is a private"),  # one bad apple
        ("jira.example.com", [PUBLIC6, "::1"], "::1 is a loopback"),
        ("jira.example.com", [], "resolves to no address"),
        ("jira.example.com", ["not-an-ip"], "not an address"),
    ],
)
def test_refused(host: str, addresses: list[str], why: str) -> None:
    got = decide(host, addresses, NONE)
    assert isinstance(got, Refused)
    assert why in got.reason
    assert got.host == host.lower()
    assert "ECS_SCAN_JIRA_ALLOWED_HOSTS" in got.reason or not addresses or "not an address" in got.reason


@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("your-domain.atlassian.net", [PUBLIC4]),
        ("your-domain.atlassian.net", [PUBLIC4, PUBLIC6]),
        ("x", [f"::ffff:{PUBLIC4}"]),
    ],
)
def test_public_addresses_are_allowed(host: str, addresses: list[str]) -> None:
    got = decide(host, addresses, NONE)
    assert isinstance(got, Allowed) and not got.by_allow_list
    assert got.addresses[0] == addresses[0].removeprefix("::ffff:")


@pytest.mark.parametrize(
    ("entries", "host", "addresses", "allowed"),
    [
        (["jira.internal"], "jira.internal", ["10.0.0.5"], True),
        (["JIRA.internal."], "jira.INTERNAL", ["10.0.0.5", "fd00::5"], True),  # case, trailing dot
        (["jira.internal"], "other.internal", ["10.0.0.5"], False),
        (["jira.internal"], "sub.jira.internal", ["10.0.0.5"], False),  # names match exactly
        (["10.0.0.0/8"], "jira.internal", ["10.0.0.5"], True),
        (["10.0.0.0/8"], "jira.internal", ["10.0.0.5", "192.168.0.1"], False),  # every address
        (["10.0.0.0/8"], "x", ["::ffff:10.0.0.5"], True),
        (["127.0.0.1"], "127.0.0.1", ["127.0.0.1"], True),
        (["127.0.0.1"], "localhost", ["127.0.0.1", "::1"], False),
        (["::1", "127.0.0.1"], "localhost", ["127.0.0.1", "::1"], True),
        (["[::1]"], "x", ["::1"], True),
        ([], "jira.internal", ["10.0.0.5"], False),
    ],
)
def test_the_allow_list(entries: list[str], host: str, addresses: list[str], allowed: bool) -> None:
    got = decide(host, addresses, AllowList.parse(entries))
    assert isinstance(got, Allowed) is allowed
    if allowed:
        assert isinstance(got, Allowed) and got.by_allow_list


@pytest.mark.parametrize("entry", ["jira internal", "http://jira.internal", "10.0.0.0/33", "a/b", "-" * 300])
def test_a_bad_allow_list_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor an address or CIDR") as err:
        AllowList.parse([entry])
    assert len(str(err.value)) < 200  # a long entry is not echoed whole


def test_a_grants_hosts_extend_the_operators_list_and_nothing_else() -> None:
    operator = AllowList.parse(["jira.corp.internal", "10.1.0.0/16"])
    assert operator.extended([]) is operator
    both = operator.extended(["10.0.0.5", "jira.lab"])
    assert isinstance(decide("jira.lab", ["192.168.1.1"], both), Allowed)  # by name
    assert isinstance(decide("x", ["10.0.0.5"], both), Allowed)  # by address
    assert isinstance(decide("x", ["10.1.2.3"], both), Allowed)  # the operator's own still hold
    assert isinstance(decide("x", ["10.0.0.6"], both), Refused)  # nothing more
    assert isinstance(decide("x", ["10.0.0.5"], operator), Refused)  # the original is unchanged
