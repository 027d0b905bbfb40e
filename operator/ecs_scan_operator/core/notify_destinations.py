"""May a notification be sent to this URL? Pure (the adapter resolves the host and asks again).

Rules: https only (http only where private destinations are allowed, i.e. for local test
receivers); no credentials in the URL; the host's addresses must all be public unless private
destinations are allowed: loopback, link-local (the cloud metadata endpoint 169.254.169.254),
private (RFC 1918, fc00::/7), carrier-grade NAT, unspecified, multicast and reserved addresses are
refused, so a policy author cannot make the operator post into the cluster or the VPC.

Which addresses are public is decided once for Jira and notifications alike
(core/destinations.py `address_class`); only the URL rules and the switch differ.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from ecs_scan_operator.core.destinations import address_class


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
