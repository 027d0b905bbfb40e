"""The one rule for what becomes a link (tickets, HTML and CSV all use it)."""

from __future__ import annotations

import pytest

from ecs_scan_operator.core.links import MAX_URL_LENGTH, safe_url


@pytest.mark.parametrize(
    "url",
    [
        "https://nvd.nist.gov/vuln/detail/CVE-2024-0001",
        "http://security.example.com/advisory?id=1&x=2",
        "HTTPS://EXAMPLE.COM/",
        "https://[2001:db8::1]/a",
        "https://example.com:8443/a#frag",
    ],
)
def test_http_and_https_urls_with_a_host_are_links(url: str) -> None:
    assert safe_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "s3://bucket/key",
        "ftp://example.com/x",
        "//example.com/protocol-relative",
        "/relative/path",
        "example.com",
        "https://",
        "https:///no-host",
        "http:\\\\evil.example\\x",
        " https://example.com",  # leading space: browsers strip it, we refuse it
        "\thttps://example.com",
        "https://example.com/\r\nInjected: header",
        "https://exa mple.com/",
        "https://example.com/\x00",
        "https://example.com/\x7f",
        "https://[::1/",
        "https://example.com:99999/",
        "https://example.com/" + "a" * MAX_URL_LENGTH,
    ],
)
def test_everything_else_is_text(url: str | None) -> None:
    assert safe_url(url) is None
