"""core/priority.py: actOn rule evaluation, the P1..P4 table, due dates and overdue, as tables."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from ecs_scan_operator.core.model import Finding, FixAvailable, Severity, Signals
from ecs_scan_operator.core.policy import ActOnRule, Priority, parse_spec
from ecs_scan_operator.core.priority import (
    assess,
    counts_by_priority,
    due_date,
    fetch_floor,
    is_actionable,
    most_urgent,
    priority_of,
    report_only,
    rule_matches,
    signal_cells,
)

S, Y, N, P = Severity, FixAvailable.YES, FixAvailable.NO, FixAvailable.PARTIAL
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "schedule": "@daily",
    "aws": {"region": "eu-west-1"},
    "report": {"s3": {"bucket": "scan-reports"}},
}


def spec(**over: Any) -> Any:
    data = copy.deepcopy(BASE)
    data.update(over)
    return parse_spec(data)


def finding(
    sev: Severity = S.MEDIUM,
    *,
    kev: bool | None = None,
    exploit: bool | None = None,
    epss: float | None = None,
    fix: FixAvailable = FixAvailable.UNKNOWN,
    kev_due: date | None = None,
    first: datetime | None = None,
) -> Finding:
    return Finding(
        "CVE-2024-0001",
        sev,
        "openssl",
        first_observed=first,
        signals=Signals(
            epss=epss, exploit_available=exploit, fix_available=fix, kev=kev, kev_date_due=kev_due
        ),
    )


def rule(**kw: Any) -> ActOnRule:
    return ActOnRule.model_validate(kw)


# A rule matches when every condition holds; an unknown signal (None) never holds.
@pytest.mark.parametrize(
    ("conditions", "f", "untriaged", "expected"),
    [
        ({"severityAtLeast": "CRITICAL"}, finding(S.CRITICAL), True, True),
        ({"severityAtLeast": "CRITICAL"}, finding(S.HIGH), True, False),
        ({"severityAtLeast": "HIGH"}, finding(S.UNTRIAGED), True, True),
        ({"severityAtLeast": "HIGH"}, finding(S.UNTRIAGED), False, False),
        ({"kev": True}, finding(S.LOW, kev=True), True, True),
        ({"kev": True}, finding(S.CRITICAL, kev=False), True, False),
        ({"kev": True}, finding(S.CRITICAL, kev=None), True, False),  # BASIC: unknown is not a match
        ({"epssAtLeast": 0.1}, finding(S.LOW, epss=0.1), True, True),  # at least: the bound matches
        ({"epssAtLeast": 0.1}, finding(S.LOW, epss=0.0999), True, False),
        ({"epssAtLeast": 0.1}, finding(S.CRITICAL, epss=None), True, False),
        ({"epssAtLeast": 0}, finding(S.LOW, epss=None), True, False),  # even 0 needs a known score
        ({"exploitAvailable": True}, finding(S.LOW, exploit=True), True, True),
        ({"exploitAvailable": True}, finding(S.LOW, exploit=None), True, False),
        ({"severityAtLeast": "HIGH", "exploitAvailable": True}, finding(S.HIGH, exploit=True), True, True),
        ({"severityAtLeast": "HIGH", "exploitAvailable": True}, finding(S.MEDIUM, exploit=True), True, False),
        (
            {"severityAtLeast": "HIGH", "exploitAvailable": True},
            finding(S.CRITICAL, exploit=False),
            True,
            False,
        ),
        ({"kev": True, "epssAtLeast": 0.5}, finding(S.LOW, kev=True, epss=0.6), True, True),
        ({"kev": True, "epssAtLeast": 0.5}, finding(S.LOW, kev=True, epss=0.4), True, False),
    ],
)
def test_rule_matches(conditions: dict[str, Any], f: Finding, untriaged: bool, expected: bool) -> None:
    assert rule_matches(rule(**conditions), f, include_untriaged=untriaged) is expected


def test_actionable_is_any_rule_and_without_act_on_the_threshold() -> None:
    rules = [{"severityAtLeast": "CRITICAL"}, {"kev": True}, {"epssAtLeast": 0.1}]
    s = spec(actOn=rules)
    assert is_actionable(s, finding(S.CRITICAL))
    assert is_actionable(s, finding(S.LOW, kev=True))
    assert is_actionable(s, finding(S.LOW, epss=0.2))
    assert not is_actionable(s, finding(S.HIGH, exploit=True, epss=0.01))
    legacy = spec(severityThreshold="HIGH")  # no actOn: today's behaviour, signals ignored
    assert is_actionable(legacy, finding(S.HIGH))
    assert not is_actionable(legacy, finding(S.MEDIUM, kev=True))


@pytest.mark.parametrize(
    ("over", "floor"),
    [
        ({}, S.MEDIUM),
        ({"severityThreshold": "HIGH"}, S.HIGH),
        ({"actOn": [{"severityAtLeast": "CRITICAL"}, {"severityAtLeast": "HIGH", "kev": True}]}, S.HIGH),
        ({"actOn": [{"severityAtLeast": "CRITICAL"}, {"kev": True}]}, S.INFORMATIONAL),  # any severity
        ({"severityThreshold": "CRITICAL", "actOn": [{"severityAtLeast": "LOW"}]}, S.LOW),
    ],
)
def test_fetch_floor_asks_for_every_severity_a_rule_can_match(over: dict[str, Any], floor: Severity) -> None:
    assert fetch_floor(spec(**over)) is floor


@pytest.mark.parametrize(
    ("no_fix", "fix", "expected"),
    [
        ("reportOnly", N, True),
        ("reportOnly", Y, False),
        ("reportOnly", P, False),
        ("reportOnly", FixAvailable.UNKNOWN, False),
        ("ticket", N, False),
    ],
)
def test_report_only_only_for_a_known_missing_fix(no_fix: str, fix: FixAvailable, expected: bool) -> None:
    assert report_only(spec(noFix=no_fix), finding(S.HIGH, fix=fix)) is expected


# The priority table (docs/prioritisation.md), row by row, including the "unknown" (BASIC) signals.
@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (finding(S.LOW, kev=True), "P1"),
        (finding(S.UNTRIAGED, kev=True), "P1"),
        (finding(S.CRITICAL, exploit=True), "P1"),
        (finding(S.HIGH, exploit=True), "P1"),
        (finding(S.CRITICAL), "P2"),  # BASIC CRITICAL
        (finding(S.CRITICAL, kev=False, exploit=False, epss=0.0), "P2"),
        (finding(S.MEDIUM, exploit=True), "P2"),
        (finding(S.LOW, exploit=True), "P2"),
        (finding(S.HIGH, epss=0.1), "P2"),
        (finding(S.HIGH), "P3"),  # BASIC HIGH
        (finding(S.HIGH, epss=0.05), "P3"),
        (finding(S.LOW, epss=0.5), "P3"),
        (finding(S.MEDIUM, fix=Y), "P3"),
        (finding(S.MEDIUM, fix=P), "P3"),
        (finding(S.MEDIUM), "P4"),  # BASIC MEDIUM: the fix is unknown
        (finding(S.MEDIUM, fix=N), "P4"),
        (finding(S.LOW, fix=Y), "P4"),
        (finding(S.INFORMATIONAL), "P4"),
        (finding(S.UNTRIAGED), "P4"),
    ],
)
def test_priority_table(f: Finding, expected: str) -> None:
    assert priority_of(f).value == expected


def test_priority_is_monotonic_in_each_signal() -> None:
    """Adding a worse signal never makes a finding less urgent (over the whole grid)."""
    order = ["P1", "P2", "P3", "P4"]
    for sev in S:
        for epss in (None, 0.0, 0.5):
            for fix in FixAvailable:
                base = finding(sev, epss=epss, fix=fix)
                for worse in (
                    replace(base, signals=replace(base.signals, kev=True)),
                    replace(base, signals=replace(base.signals, exploit_available=True)),
                ):
                    assert order.index(priority_of(worse)) <= order.index(priority_of(base))


def test_most_urgent_and_counts() -> None:
    assert most_urgent(["P3", "", "P2", "P4"]) is Priority.P2
    assert most_urgent(["", ""]) is None
    s = spec()
    fs = [assess(finding(sev), s, remembered=None, now=NOW) for sev in (S.CRITICAL, S.HIGH, S.HIGH)]
    assert counts_by_priority(fs) == {"P1": 0, "P2": 1, "P3": 2, "P4": 0}


D = {Priority.P1: 7, Priority.P2: 30}


@pytest.mark.parametrize(
    ("prio", "seen", "kev_due", "expected"),
    [
        (Priority.P1, datetime(2026, 11, 1, tzinfo=UTC), None, date(2026, 11, 8)),
        (Priority.P2, datetime(2026, 11, 1, tzinfo=UTC), None, date(2026, 12, 1)),
        (Priority.P3, datetime(2026, 11, 1, tzinfo=UTC), None, None),  # no dueDays for P3
        (Priority.P3, datetime(2026, 11, 1, tzinfo=UTC), date(2026, 11, 20), date(2026, 11, 20)),
        (
            Priority.P2,
            datetime(2026, 11, 1, tzinfo=UTC),
            date(2026, 11, 20),
            date(2026, 11, 20),
        ),  # KEV earlier
        (
            Priority.P1,
            datetime(2026, 11, 1, tzinfo=UTC),
            date(2026, 12, 20),
            date(2026, 11, 8),
        ),  # SLA earlier
    ],
)
def test_due_date_never_later_than_kev(
    prio: Priority, seen: datetime, kev_due: date | None, expected: date | None
) -> None:
    assert due_date(prio, seen, D, kev_due) == expected


@pytest.mark.parametrize(
    ("first_observed", "remembered", "seen", "overdue"),
    [
        (None, None, NOW, False),  # first run that sees it: due in 30 days
        (datetime(2026, 11, 1, tzinfo=UTC), None, datetime(2026, 11, 1, tzinfo=UTC), False),  # due 12-01
        (
            datetime(2026, 10, 1, tzinfo=UTC),
            datetime(2026, 9, 1, tzinfo=UTC),
            datetime(2026, 9, 1, tzinfo=UTC),
            True,
        ),
        (
            None,
            datetime(2026, 10, 30, tzinfo=UTC),
            datetime(2026, 10, 30, tzinfo=UTC),
            False,
        ),  # due 11-29: today
        (None, datetime(2026, 10, 29, tzinfo=UTC), datetime(2026, 10, 29, tzinfo=UTC), True),  # due 11-28
    ],
)
def test_assess_first_seen_is_the_earliest_and_overdue_after_the_due_day(
    first_observed: datetime | None, remembered: datetime | None, seen: datetime, overdue: bool
) -> None:
    s = spec(dueDays={"P2": 30})
    # HIGH with EPSS 0.1 is P2 (table above)
    out = assess(finding(S.HIGH, epss=0.1, first=first_observed), s, remembered=remembered, now=NOW)
    assert out.assessment.priority == "P2"
    assert out.assessment.first_seen == seen
    assert out.assessment.overdue is overdue


def test_signal_cells_say_unknown_never_no_for_missing_signals() -> None:
    cells = signal_cells(Finding("CVE-2024-1", S.HIGH))
    assert cells["epss"] == cells["exploitAvailable"] == cells["kev"] == cells["fixAvailable"] == "unknown"
    known = signal_cells(finding(S.HIGH, kev=False, exploit=False, epss=0.01234, fix=N))
    assert (known["kev"], known["exploitAvailable"], known["epss"], known["fixAvailable"]) == (
        "no",
        "no",
        "0.012",
        "no",
    )
