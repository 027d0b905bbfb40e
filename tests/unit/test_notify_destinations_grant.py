"""check_granted: the grant's notification destinations (URL prefixes, host patterns) against a URL."""

from __future__ import annotations

import pytest

from ecs_scan_operator.core.notify_destinations import DestinationRefused, check_granted

GRANTED = ("https://hooks.slack.com/services/T1", "*.webhook.office.com", "alerts.example.com")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T1",
        "https://hooks.slack.com/services/T1/B2/xyz",
        "https://HOOKS.slack.com/services/T1/B2",  # host names compare case-insensitively
        "https://team.webhook.office.com/webhookb2/abc",
        "https://a.b.webhook.office.com/x",
        "https://alerts.example.com/anything?x=1",
        "http://alerts.example.com:8443/a",  # a host pattern names the host, not scheme or port
    ],
)
def test_granted_urls_pass(url: str) -> None:
    check_granted(url, GRANTED)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://hooks.slack.com/services/T10/B2", "not among"),  # the prefix continues at a /
        ("https://hooks.slack.com/services/", "not among"),
        ("https://hooks.slack.com:444/services/T1/B2", "not among"),  # another port
        ("http://hooks.slack.com/services/T1/B2", "not among"),  # another scheme
        ("https://hooks.slack.com.evil.example/services/T1/B2", "not among"),
        ("https://webhook.office.com/x", "not among"),  # *. needs a label before
        ("https://evil.example/.webhook.office.com", "not among"),
        ("https://alerts.example.com.evil.example/", "not among"),
        ("https://xalerts.example.com/", "not among"),
    ],
)
def test_other_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(DestinationRefused, match=why):
        check_granted(url, GRANTED)


def test_nothing_granted_refuses_everything_and_says_so() -> None:
    with pytest.raises(DestinationRefused, match="no notification destinations are granted"):
        check_granted("https://hooks.slack.com/services/T1/B2", ())
