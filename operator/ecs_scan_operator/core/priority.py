"""Which findings to act on, how urgent each is, and when it is due. Pure: no I/O, no clock reads.

Rules (docs/prioritisation.md is the reference for people):

* Actionable. Without spec.actOn a finding is actionable when its severity meets
  spec.severityThreshold (today's rule). With spec.actOn it is actionable when any rule matches, and
  a rule matches when every condition it gives holds. A signal Inspector did not give (BASIC
  scanning, a CVE SearchVulnerabilities does not know) is unknown, and unknown never matches: a
  BASIC finding can only match on its severity.
* Priority, the first row that holds (EPSS_HIGH = 0.1):

  ====  ==========================================================================
  P1    on CISA's KEV list; or an exploit is available and the severity is CRITICAL or HIGH
  P2    CRITICAL; or an exploit is available; or HIGH with EPSS >= EPSS_HIGH
  P3    HIGH; or EPSS >= EPSS_HIGH; or MEDIUM with a fix available
  P4    everything else (MEDIUM without a known fix, LOW, INFORMATIONAL, UNTRIAGED)
  ====  ==========================================================================

  A ticket's priority is that of its most urgent finding.
* Due. A finding is first seen at the earliest of Inspector's firstObservedAt and the first run
  that saw it (the state object). Its due date is first seen + spec.dueDays[priority], and never
  later than CISA's dateDue when the CVE is on the KEV list. Overdue: today is past the due date.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

from ecs_scan_operator.core.model import Assessment, Finding, FixAvailable, Severity
from ecs_scan_operator.core.policy import ActOnRule, NoFix, PolicySpec, Priority

EPSS_HIGH = 0.1
PRIORITY_ORDER: tuple[Priority, ...] = (Priority.P1, Priority.P2, Priority.P3, Priority.P4)
NO_FIX_REASON = "no fix available (spec.noFix: reportOnly)"


def _severity_meets(severity: Severity, least: Severity, *, include_untriaged: bool) -> bool:
    if severity is Severity.UNTRIAGED:
        return include_untriaged
    return severity.rank >= least.rank


def rule_matches(rule: ActOnRule, f: Finding, *, include_untriaged: bool) -> bool:
    """Every condition the rule gives holds for `f` (an unknown signal never holds)."""
    s = f.signals
    if rule.severity is not None and not _severity_meets(
        f.severity, rule.severity, include_untriaged=include_untriaged
    ):
        return False
    if rule.kev and s.kev is not True:
        return False
    if rule.exploit_available and s.exploit_available is not True:
        return False
    return not (rule.epss_at_least is not None and (s.epss is None or s.epss < rule.epss_at_least))


def is_actionable(spec: PolicySpec, f: Finding) -> bool:
    """spec.actOn when set (any rule), else spec.severityThreshold."""
    if spec.act_on is None:
        return _severity_meets(f.severity, spec.threshold, include_untriaged=spec.include_untriaged)
    return any(rule_matches(r, f, include_untriaged=spec.include_untriaged) for r in spec.act_on)


def report_only(spec: PolicySpec, f: Finding) -> bool:
    """An actionable finding kept out of tickets: Inspector says it has no fix and noFix is reportOnly."""
    return spec.no_fix is NoFix.REPORT_ONLY and f.signals.fix_available is FixAvailable.NO


def fetch_floor(spec: PolicySpec) -> Severity:
    """The lowest severity a findings query must ask for so that every rule can be evaluated.

    A rule without severityAtLeast may match a finding of any severity (a LOW one on the KEV list).
    """
    if spec.act_on is None:
        return spec.threshold
    floors = [r.severity for r in spec.act_on]
    if any(s is None for s in floors):
        return Severity.INFORMATIONAL
    return min((s for s in floors if s is not None), key=lambda s: s.rank)


def priority_of(f: Finding) -> Priority:
    """The finding's priority, from the table in the module docstring."""
    s, sev = f.signals, f.severity
    exploit = s.exploit_available is True
    epss_high = s.epss is not None and s.epss >= EPSS_HIGH
    has_fix = s.fix_available in (FixAvailable.YES, FixAvailable.PARTIAL)
    if s.kev is True or (exploit and sev in (Severity.CRITICAL, Severity.HIGH)):
        return Priority.P1
    if sev is Severity.CRITICAL or exploit or (sev is Severity.HIGH and epss_high):
        return Priority.P2
    if sev is Severity.HIGH or epss_high or (sev is Severity.MEDIUM and has_fix):
        return Priority.P3
    return Priority.P4


def most_urgent(priorities: Iterable[str]) -> Priority | None:
    """The most urgent of some priorities ("" ignored), or None."""
    known = [Priority(p) for p in priorities if p]
    return min(known, key=PRIORITY_ORDER.index) if known else None


def first_seen(f: Finding, remembered: datetime | None, now: datetime) -> datetime:
    """The earliest of Inspector's firstObservedAt, the state's first sighting, and now."""
    return min(t for t in (f.first_observed, remembered, now) if t is not None)


def due_date(
    priority: Priority, seen: datetime, due_days: Mapping[Priority, int], kev_due: date | None
) -> date | None:
    """first seen + dueDays[priority], never later than CISA's dateDue; None when neither is set."""
    days = due_days.get(priority)
    candidates = [d for d in (seen.date() + timedelta(days=days) if days else None, kev_due) if d]
    return min(candidates) if candidates else None


def assess(
    f: Finding,
    spec: PolicySpec,
    *,
    remembered: datetime | None,
    now: datetime,
    actionable: bool = True,
) -> Finding:
    """`f` with its Assessment: priority, first seen, due date and whether it is overdue at `now`."""
    prio = priority_of(f)
    seen = first_seen(f, remembered, now)
    due = due_date(prio, seen, spec.due_days, f.signals.kev_date_due)
    return replace(
        f,
        assessment=Assessment(
            priority=prio.value,
            actionable=actionable,
            first_seen=seen,
            due=due,
            overdue=due is not None and now.date() > due,
        ),
    )


def counts_by_priority(findings: Sequence[Finding]) -> dict[str, int]:
    """Findings per priority, every priority present (0 when none)."""
    out = {p.value: 0 for p in PRIORITY_ORDER}
    for f in findings:
        if f.assessment.priority:
            out[f.assessment.priority] += 1
    return out


UNKNOWN = "unknown"


def tristate(value: bool | None) -> str:
    """yes / no / unknown: a signal nobody gave is "unknown", never "no"."""
    return UNKNOWN if value is None else "yes" if value else "no"


def signal_cells(f: Finding) -> dict[str, str]:
    """The signals and SLA of one finding as text (reports, tickets): unknown where not given."""
    s, a = f.signals, f.assessment
    return {
        "priority": a.priority or UNKNOWN,
        "epss": UNKNOWN if s.epss is None else f"{s.epss:.3f}",
        "exploitAvailable": tristate(s.exploit_available),
        "kev": tristate(s.kev),
        "kevDateDue": s.kev_date_due.isoformat() if s.kev_date_due else "",
        "fixAvailable": s.fix_available.value.lower() if s.fix_available.value else UNKNOWN,
        "inspectorScore": UNKNOWN if s.inspector_score is None else f"{s.inspector_score:g}",
        "firstSeen": a.first_seen.isoformat() if a.first_seen else "",
        "due": a.due.isoformat() if a.due else "",
        "overdue": "yes" if a.overdue else "no",
    }
