"""What the HTML report shows of an image and its findings, as display strings. Pure.

One rule for signals: a value the scan did not give (BASIC scanning, a KEV lookup not made) is
shown as "unknown", never as "no"; "no" is only what Inspector or CISA said. Counts over findings
follow it: a count is "unknown" when no finding has the signal, so 0 means "known: none".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from ecs_scan_operator.core.links import safe_url
from ecs_scan_operator.core.model import SEVERITY_ORDER, Finding, FixAvailable, ImageResult, RefKind
from ecs_scan_operator.core.remediation import PRIORITIES, RemediationPlan, has_fix, plan

UNKNOWN = "unknown"
#: The sort rank of "no priority" (after P4), so unprioritised images sort last.
NO_PRIORITY_RANK = len(PRIORITIES) + 1


def yes_no(value: bool | None) -> str:
    """yes / no / unknown."""
    return UNKNOWN if value is None else ("yes" if value else "no")


def day(value: date | datetime | None) -> str:
    """YYYY-MM-DD, or "" when there is no such date."""
    if value is None:
        return ""
    return (value.date() if isinstance(value, datetime) else value).isoformat()


def priority_rank(priority: str) -> int:
    """P1 -> 1 ... P4 -> 4; anything else after them."""
    return PRIORITIES.index(priority) + 1 if priority in PRIORITIES else NO_PRIORITY_RANK


def image_priority(img: ImageResult) -> str:
    """The most urgent priority among the image's findings ("" when none is prioritised)."""
    ranked = sorted(priority_rank(f.assessment.priority) for f in img.findings)
    return PRIORITIES[ranked[0] - 1] if ranked and ranked[0] <= len(PRIORITIES) else ""


def image_accounts(img: ImageResult) -> list[str]:
    """The AWS accounts of the task definitions that use the image (issue #16), sorted."""
    return sorted({u.account for u in img.uses if u.account})


def advisory_url(f: Finding) -> str | None:
    """Where to read about a vulnerability: its own http(s) link, else NVD or GitHub advisories."""
    own = safe_url(f.url)
    if own:
        return own
    vid = f.vulnerability_id
    if vid.upper().startswith("CVE-") and vid[4:].replace("-", "").isdigit():
        return f"https://nvd.nist.gov/vuln/detail/{vid}"
    if vid.upper().startswith("GHSA-") and all(c.isalnum() or c == "-" for c in vid):
        return f"https://github.com/advisories/{vid}"
    return None


def _count(findings: Sequence[Finding], signal: Callable[[Finding], bool | None]) -> int | None:
    """How many findings have the signal; None when no finding says either way."""
    values = [signal(f) for f in findings]
    if all(v is None for v in values):
        return None
    return sum(1 for v in values if v)


def _fix(f: Finding) -> bool | None:
    if has_fix(f) or f.signals.fix_available in (FixAvailable.YES, FixAvailable.PARTIAL):
        return True
    return False if f.signals.fix_available is FixAvailable.NO else None


def _kev(f: Finding) -> bool | None:
    return f.signals.kev


def _exploit(f: Finding) -> bool | None:
    return f.signals.exploit_available


def _overdue(f: Finding) -> bool | None:
    # Overdue is only known where the policy set a due date.
    return f.assessment.overdue if f.assessment.due is not None else None


def count_text(n: int | None) -> str:
    """A signal count for people: the number, or "unknown"."""
    return UNKNOWN if n is None else str(n)


def image_signals(img: ImageResult) -> dict[str, int | None]:
    """Known-exploited, exploit-available, fix-available and overdue findings of one image."""
    return {
        "kev": _count(img.findings, _kev),
        "exploit": _count(img.findings, _exploit),
        "fix": _count(img.findings, _fix),
        "overdue": _count(img.findings, _overdue),
    }


def image_plan(img: ImageResult) -> RemediationPlan:
    """The remediation plan of one image's actionable findings."""
    return plan((img.ref.display, f) for f in img.findings)


def index_order(img: ImageResult) -> tuple[Any, ...]:
    """The static order of index.html: affected first, most urgent priority, most severe, then name."""
    counts = img.counts()
    return (
        not img.affected,
        priority_rank(image_priority(img)),
        tuple(-counts[s.value] for s in SEVERITY_ORDER),
        img.ref.raw,
    )


def redeploy_text(img: ImageResult) -> str:
    """Redeploy needed: yes, or no; unknown without a running view (nothing said what runs)."""
    if img.redeploy_needed:
        return "yes"
    return "no" if img.runtime is not None else UNKNOWN


def runtime_view(img: ImageResult) -> list[tuple[str, str]]:
    """The running view of the image as (label, value) rows; empty when none was looked up."""
    rt = img.runtime
    if rt is None:
        return []
    return [
        ("Clusters", ", ".join(rt.clusters) or "none"),
        ("Services", ", ".join(rt.services) or "none"),
        ("Running tasks", str(rt.running_tasks)),
        ("Digests running", ", ".join(rt.running_digests) or "none"),
        ("Digest the tag points at now", rt.tag_digest or UNKNOWN),
        ("Drift (the tag moved, tasks still run the old digest)", "yes" if rt.drift else "no"),
        ("Redeploy needed", redeploy_text(img)),
        ("First seen running", day(rt.first_seen_running) or UNKNOWN),
        ("Last seen running", day(rt.last_seen_running) or UNKNOWN),
        ("Inspector: in use by (inUseCount)", UNKNOWN if rt.in_use_count is None else str(rt.in_use_count)),
        ("Inspector: last in use", day(rt.last_in_use_at) or UNKNOWN),
        (
            "Findings may be stale (running past Inspector's rescan window)",
            "yes" if rt.coverage_at_risk else "no",
        ),
    ]


def finding_row(f: Finding) -> dict[str, Any]:
    """One row of an image page's findings table."""
    s, a = f.signals, f.assessment
    fixed = (
        f.fixed_version.strip() if has_fix(f) else ("none" if s.fix_available is FixAvailable.NO else UNKNOWN)
    )
    kev = yes_no(s.kev)
    if s.kev and s.kev_date_due:
        kev += f" (CISA due {day(s.kev_date_due)})"
    exploit = yes_no(s.exploit_available)
    if s.last_known_exploit_at:
        exploit += f" (last {day(s.last_known_exploit_at)})"
    first = a.first_seen or f.first_observed
    return {
        "id": f.vulnerability_id,
        "href": advisory_url(f),
        "title": f.title,
        "severity": f.severity.value,
        "severity_rank": f.severity.position,
        "package": f.package,
        "manager": f.package_manager or UNKNOWN,
        "installed": f.installed_version or UNKNOWN,
        "fixed": fixed,
        "epss": UNKNOWN if s.epss is None else f"{s.epss:.4f}",
        "exploit": exploit,
        "kev": kev,
        "kev_flag": s.kev is True,
        "first_seen": day(first) or UNKNOWN,
        "due": day(a.due) or ("" if not a.priority else UNKNOWN),
        "overdue": a.overdue,
        "priority": a.priority or "",
        "priority_rank": priority_rank(a.priority),
        "remediation": s.remediation,
        "kev_action": s.kev_action,
    }


def finding_order(f: Finding) -> tuple[Any, ...]:
    """An image page's findings: most urgent priority, known-exploited, most severe, then id."""
    return (
        priority_rank(f.assessment.priority),
        f.signals.kev is not True,
        f.severity.position,
        f.vulnerability_id,
    )


def plan_view(p: RemediationPlan) -> dict[str, Any]:
    """The remediation plan for a page: steps in order, the findings no upgrade fixes, the hint."""
    return {
        "hint": p.hint,
        "steps": [
            {"text": step.text, "ids": ", ".join(f.vulnerability_id for f in step.findings)}
            for step in p.steps
        ],
        "unfixed": [
            {"id": f.vulnerability_id, "package": f.package, "severity": f.severity.value} for f in p.unfixed
        ],
    }


def plan_document(p: RemediationPlan) -> dict[str, Any]:
    """The remediation plan in the per-image JSON."""
    return {
        "steps": [
            {
                "package": s.package,
                "installedVersions": list(s.installed),
                "fixedVersion": s.fixed,
                "vulnerabilityIds": [f.vulnerability_id for f in s.findings],
                "knownExploited": s.known_exploited,
                "critical": s.count(SEVERITY_ORDER[0]),
                "text": s.text,
            }
            for s in p.steps
        ],
        "noFixKnown": [{"vulnerabilityId": f.vulnerability_id, "package": f.package} for f in p.unfixed],
        "baseImageHint": p.hint or None,
    }


def label(img: ImageResult) -> str:
    """How the image is named for people."""
    return img.ref.display if img.ref.kind is RefKind.ECR else img.ref.raw
