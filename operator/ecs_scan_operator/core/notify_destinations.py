"""May a notification be sent to this URL? Pure (the adapter resolves the host and asks again).

Rules: https only (http only where private destinations are allowed, i.e. for local test
receivers); no credentials in the URL; the host's addresses must all be public unless private
destinations are allowed: loopback, link-local (the cloud metadata endpoint 169.254.169.254),
private (RFC 1918, fc00::/7), carrier-grade NAT, unspecified, multicast and reserved addresses are
refused, so a policy author cannot make the operator post into the cluster or the VPC.

In tenancy mode `grants` the URL must also be one the allowing ScanAccessGrant lists in
`notifications.destinations` (`check_granted`): an entry with a scheme is a URL prefix (same
scheme, host and port; the path continues at a `/`), an entry without one is a host pattern
(`*` any run, as in every grant pattern): `hooks.slack.com`, `*.webhook.office.com`.

Which addresses are public is decided once for Jira and notifications alike
(core/destinations.py `address_class`); only the URL rules and the switch differ.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from ecs_scan_operator.core.destinations import address_class
from ecs_scan_operator.core.grants import matches


class DestinationRefused(ValueError):
    """The URL or one of its addresses may not receive notifications; the message says why."""


def check_url(url: str, *, allow_private: bool) -> str:
    """The host to resolve; raise DestinationRefused for a URL that may never be used."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise DestinationRefused("the URL is not valid") from None
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise DestinationRefused("the URL must be https")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("credentials do not belong in the URL")
    if not parts.hostname:
        raise DestinationRefused("the URL has no host")
    return parts.hostname


def check_addresses(host: str, addresses: Iterable[str], *, allow_private: bool) -> None:
    """Raise DestinationRefused when the host resolved to nothing or to a non-public address."""
    try:
        found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    except ValueError:
        raise DestinationRefused(f"{host} resolved to something that is not an address") from None
    if not found:
        raise DestinationRefused(f"{host} has no address")
    if allow_private:
        return
    for addr in found:
        why = address_class(addr)
        if why is not None:
            raise DestinationRefused(
                f"{host} resolves to a non-public address ({addr}, {why});"
                " private destinations are not allowed"
            )


def _prefix_allows(entry: str, url: str) -> bool:
    want, got = urlsplit(entry), urlsplit(url)
    try:
        same_site = (want.scheme, want.hostname, want.port) == (got.scheme, got.hostname, got.port)
    except ValueError:
        return False
    path = want.path.rstrip("/")
    return same_site and (got.path == path or got.path.startswith(path + "/"))


def check_granted(url: str, destinations: Iterable[str]) -> None:
    """Raise DestinationRefused unless one granted destination (URL prefix or host pattern) allows `url`."""
    host = (urlsplit(url).hostname or "").lower()
    entries = list(destinations)
    for entry in entries:
        if "://" in entry:
            if _prefix_allows(entry, url):
                return
        elif host and matches(entry.lower(), host):
            return
    if not entries:
        raise DestinationRefused("no notification destinations are granted to this namespace")
    raise DestinationRefused(f"{host or 'the URL'} is not among the granted notification destinations")
