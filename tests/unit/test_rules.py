"""Threshold, suppressions with expiry, family selection and key sanitizing: pure tables."""

from __future__ import annotations

from datetime import date

import pytest

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.keys import image_key, run_folder, safe_part, safe_path, state_key
from ecs_scan_operator.core.model import Finding, Severity
from ecs_scan_operator.core.policy import Suppression
from ecs_scan_operator.core.rules import apply_rules, meets_threshold, severities_at_or_above
from ecs_scan_operator.core.selection import exact_family, literal_prefix, select_families

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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("UNDEFINED", S.UNTRIAGED), ("high", S.HIGH), (None, S.UNTRIAGED), ("weird", S.UNTRIAGED)],
)
def test_severity_parse(raw: str | None, expected: Severity) -> None:
    assert Severity.parse(raw) is expected


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


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ([], [], ["a-x", "b-y", "b-y-sandbox", "c"]),
        (["b-*"], [], ["b-y", "b-y-sandbox"]),
        (["b-*"], ["*-sandbox"], ["b-y"]),
        (["a-?", "c"], [], ["a-x", "c"]),
        (["[ab]-*"], ["b-*"], ["a-x"]),
        (["z*"], [], []),
    ],
)
def test_select_families(include: list[str], exclude: list[str], expected: list[str]) -> None:
    assert select_families(["c", "b-y", "a-x", "b-y-sandbox", "a-x"], include, exclude) == expected


@pytest.mark.parametrize(
    ("include", "prefix", "exact"),
    [
        ([], "", None),
        (["payments-*"], "payments-", None),
        (["pay-a*", "pay-b*"], "pay-", None),
        (["web"], "web", "web"),
        (["a*", "b*"], "", None),
        (["x?y"], "x", None),
    ],
)
def test_prefixes(include: list[str], prefix: str, exact: str | None) -> None:
    assert literal_prefix(include) == prefix
    assert exact_family(include) == exact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("..", "_"),
        ("a/b", "a_b"),
        ("ok-1.2_x", "ok-1.2_x"),
        ("a\x00b\nc", "a_b_c"),
        ("", "_"),
        (".hidden", "hidden"),
        ("sha256:abc", "sha256_abc"),
    ],
)
def test_safe_part(text: str, expected: str) -> None:
    assert safe_part(text) == expected


def test_safe_part_bounded_and_distinct() -> None:
    a, b = safe_part("x" * 500 + "a"), safe_part("x" * 500 + "b")
    assert len(a) <= 120 and len(b) <= 120 and a != b


def test_keys_layout() -> None:
    from datetime import UTC, datetime

    folder = run_folder("reports/", datetime(2026, 11, 28, tzinfo=UTC), "team-a", "nightly", "r1")
    assert folder == "reports/2026-11-28/team-a/nightly/r1"
    assert image_key(folder, "payments/../api", "v1") == f"{folder}/images/payments/_/api/v1.json"
    assert safe_path("a//b/../c") == "a/b/_/c"
    assert state_key("reports", "team-a", "nightly") == "reports/state/team-a/nightly.json"
