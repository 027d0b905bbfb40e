"""Which URLs may become links: absolute `http` and `https` URLs with a host, nothing else.

A finding's reference URL comes from scanner data, and so from whoever published the advisory.
A `file:`, `javascript:`, `data:` or `s3:` URL must never become something a person clicks in a
Jira ticket, the HTML report or a spreadsheet; such a URL is shown as text, if at all. The one rule
lives here so that tickets, HTML and CSV cannot drift apart.
"""

from __future__ import annotations

from urllib.parse import urlsplit

LINK_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 2048  # longer "URLs" are data, not links


def safe_url(url: str | None) -> str | None:
    """`url` when it may become a link (http/https, a host, no whitespace or control chars), else None."""
    if not url or len(url) > MAX_URL_LENGTH:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a port out of range
    except ValueError:  # an unbalanced IPv6 bracket, a bad port
        return None
    if parts.scheme.lower() not in LINK_SCHEMES or not host:
        return None
    return url
