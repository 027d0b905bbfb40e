"""HTTP to an address that was checked, not to whatever the name resolves to next.

A destination check (core/destinations.py, core/notify_destinations.py) resolves the host and
looks at every address. If the request then resolved the name again, a DNS answer that changed in
between (DNS rebinding, a short TTL) would send it somewhere unchecked. So the connection goes to
the checked address itself; the Host header, TLS SNI and the certificate check still use the name,
so HTTPS verifies the site the URL names. Used by the Jira transport and the notifier.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from requests.adapters import HTTPAdapter


class PinnedHostAdapter(HTTPAdapter):
    """An adapter for connections made to an IP address on behalf of `server_hostname` (HTTPS)."""

    def __init__(self, server_hostname: str | None = None) -> None:
        self._server_hostname = server_hostname
        super().__init__(max_retries=0)  # retries belong to the caller's own loop

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The pool manager, told which name to send as SNI and to expect on the certificate."""
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
            kwargs["assert_hostname"] = self._server_hostname
        super().init_poolmanager(*args, **kwargs)


def host_literal(address: str) -> str:
    """The address as a URL's host: an IPv6 address in brackets, anything else as it is."""
    try:
        is_v6 = ipaddress.ip_address(address).version == 6
    except ValueError:
        return address
    return f"[{address}]" if is_v6 else address


def pinned(url: str, address: str) -> tuple[str, str]:
    """(the URL with its host replaced by `address`, the Host header of the original URL)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = host_literal(address)
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, "")), host_header
