"""core/rules.py: the threshold, suppressions with expiry, the order of actionable findings."""

from __future__ import annotations

from datetime import date

import pytest

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import Finding, Severity
from ecs_scan_operator.core.policy import Suppression
from ecs_scan_operator.core.rules import apply_rules, meets_threshold, severities_at_or_above

S = Severity


@pytest.mark.parametrize(
    ("sev", "threshold", "untriaged", "expected"),
    [
        (S.CRITICAL, S.MEDIUM, True, True),
        (S.MEDIUM, S.MEDIUM, True, True),
        (S.LOW, S.MEDIUM, True, False),
        (S.INFORMATIONAL, S.INFORMATIONAL, False, True),
        (S.UNTRIAGED, S.CRITICAL, True, True),
        (S.UNTRIAGED, S.LOW, False, False),
    ],
)
def test_threshold(sev: Severity, threshold: Severity, untriaged: bool, expected: bool) -> None:
    assert meets_threshold(sev, threshold, include_untriaged=untriaged) is expected


def test_severities_query() -> None:
    assert severities_at_or_above(S.HIGH, include_untriaged=True) == [S.CRITICAL, S.HIGH, S.UNTRIAGED]
    assert severities_at_or_above(S.INFORMATIONAL, include_untriaged=False)[-1] is S.INFORMATIONAL


TODAY = date(2026, 11, 28)
REF = parse_image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/payments/api:v1")


def sup(vid: str, expires: date, images: list[str] | None = None) -> Suppression:
    return Suppression(vulnerability_id=vid, reason=f"why {vid}", expires=expires, images=images or [])


def f(vid: str, sev: Severity) -> Finding:
    return Finding(vulnerability_id=vid, severity=sev, package="p")


@pytest.mark.parametrize(
    ("suppressions", "kept", "suppressed", "expired"),
    [
        ([], ["CVE-A", "CVE-B"], [], set()),
        ([sup("CVE-A", date(2027, 1, 1))], ["CVE-B"], ["CVE-A"], set()),
        ([sup("CVE-A", TODAY)], ["CVE-B"], ["CVE-A"], set()),  # valid through its last day
        ([sup("CVE-A", date(2026, 11, 27))], ["CVE-A", "CVE-B"], [], {"CVE-A"}),
        ([sup("CVE-A", date(2027, 1, 1), ["orders/*"])], ["CVE-A", "CVE-B"], [], set()),
        ([sup("CVE-A", date(2027, 1, 1), ["payments/*"])], ["CVE-B"], ["CVE-A"], set()),
        ([sup("CVE-A", date(2027, 1, 1), ["payments/api:v1"])], ["CVE-B"], ["CVE-A"], set()),
    ],
)
def test_suppressions(
    suppressions: list[Suppression], kept: list[str], suppressed: list[str], expired: set[str]
) -> None:
    findings = [f("CVE-A", S.HIGH), f("CVE-B", S.CRITICAL), f("CVE-C", S.LOW)]
    out = apply_rules(findings, REF, suppressions, S.MEDIUM, include_untriaged=True, today=TODAY)
    assert sorted(x.vulnerability_id for x in out.actionable) == kept
    assert [x.vulnerability_id for x, _ in out.suppressed] == suppressed
    assert out.expired_used == expired


def test_actionable_sorted_most_severe_first() -> None:
    findings = [f("CVE-1", S.MEDIUM), f("CVE-2", S.UNTRIAGED), f("CVE-3", S.CRITICAL), f("CVE-0", S.HIGH)]
    out = apply_rules(findings, REF, [], S.MEDIUM, include_untriaged=True, today=TODAY)
    assert [x.vulnerability_id for x in out.actionable] == ["CVE-3", "CVE-0", "CVE-1", "CVE-2"]
