"""What one group holds this run: its findings merged across images, with the last known findings
of images that were not scanned carried over. Pure.

An image that is merely no longer monitored (not covered, not found, a failed scan) keeps the
findings the ticket's property last recorded for it: it is never counted as fixed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from ecs_scan_operator.core.model import SEVERITY_ORDER, Finding, FixAvailable, ImageResult, Severity
from ecs_scan_operator.core.policy import Priority
from ecs_scan_operator.core.priority import most_urgent
from ecs_scan_operator.core.tickets.grouping import Group
from ecs_scan_operator.core.tickets.identity import image_slot
from ecs_scan_operator.core.tickets.property import (
    FindingRow,
    TicketProperty,
    content_fingerprint,
    fingerprint,
)

#: The signal labels the tool keeps on a ticket (added and removed as the findings change).
LABEL_KEV, LABEL_EXPLOIT, LABEL_FIX, LABEL_NO_FIX = "kev", "exploit-available", "fix-available", "no-fix"
SIGNAL_LABELS = (LABEL_KEV, LABEL_EXPLOIT, LABEL_FIX, LABEL_NO_FIX)


def sev_key(sev: Severity) -> int:
    """Sort key: most severe first, in the one order reports use (UNTRIAGED last)."""
    return sev.position


def _worse(a: Severity, b: Severity) -> Severity:
    return a if sev_key(a) <= sev_key(b) else b


@dataclass(frozen=True)
class GroupFindings:
    """The findings of one group: read this run, or carried over for images not scanned."""

    rows: tuple[FindingRow, ...]  # most severe first
    details: Mapping[str, Finding]  # ident -> finding (only for rows read this run)
    where: Mapping[str, tuple[str, ...]]  # ident -> images (display) that have it
    carried: frozenset[str]  # idents known only from the previous run (image not scanned now)
    slots: Mapping[str, tuple[int, ...]]  # image slot -> indexes into rows
    fp: str
    content: str
    all_known: bool
    none_known: bool
    # Running tasks still use an affected digest while the tag points at one without the findings.
    redeploy: bool = False

    @property
    def priority(self) -> Priority | None:
        """The ticket's priority: its most urgent finding read this run (None without any)."""
        return most_urgent(f.assessment.priority for f in self.details.values())

    @property
    def earliest_due(self) -> date | None:
        """The earliest due date of its findings (the SLA, or CISA's dateDue), if any."""
        dues = [f.assessment.due for f in self.details.values() if f.assessment.due is not None]
        return min(dues) if dues else None

    def signal_labels(self) -> tuple[str, ...]:
        """`kev`, `exploit-available`, and `fix-available` (some finding has a fix) or `no-fix`
        (Inspector says none has); a signal nobody knows (BASIC scanning) gives no label."""
        found = list(self.details.values())
        out = []
        if any(f.signals.kev is True for f in found):
            out.append(LABEL_KEV)
        if any(f.signals.exploit_available is True for f in found):
            out.append(LABEL_EXPLOIT)
        fixes = [f.signals.fix_available for f in found]
        if any(x in (FixAvailable.YES, FixAvailable.PARTIAL) for x in fixes):
            out.append(LABEL_FIX)
        elif fixes and all(x is FixAvailable.NO for x in fixes):
            out.append(LABEL_NO_FIX)
        return tuple(out)

    @property
    def worst(self) -> Severity | None:
        """The worst severity, or None without findings."""
        return self.rows[0].severity if self.rows else None

    def counts(self) -> dict[Severity, int]:
        """Findings per severity."""
        c = Counter(r.severity for r in self.rows)
        return {s: c[s] for s in SEVERITY_ORDER if c[s]}


def evaluate_group(group: Group, prev: TicketProperty | None) -> GroupFindings:
    """Merge the group's findings; images not scanned this run keep their last known findings."""
    by_ident: dict[str, FindingRow] = {}
    details: dict[str, Finding] = {}
    where: dict[str, list[str]] = {}
    carried: set[str] = set()
    per_image: dict[str, list[str]] = {}
    content: list[object] = []
    for img in group.images:
        slot = image_slot(img.ref.raw)
        # Made once per image, not per finding: a large plan holds every group's `where` at once.
        display = img.ref.display
        idents: list[str] = []
        if img in group.known:
            for f in img.findings:
                row = FindingRow(f.vulnerability_id, f.package, f.severity)
                ident = row.ident
                idents.append(ident)
                old = by_ident.get(ident)
                if old is None or _worse(row.severity, old.severity) is row.severity:
                    by_ident[ident] = row
                    details[ident] = f
                where.setdefault(ident, []).append(display)
        else:
            for row in prev.rows_of(slot) if prev else ():
                ident = row.ident
                idents.append(ident)
                if ident not in by_ident:
                    by_ident[ident] = row
                    carried.add(ident)
                where.setdefault(ident, []).append(display)
        per_image[slot] = sorted(set(idents))
        content.append(
            [
                img.ref.raw,
                img.digest or "",
                img in group.known,
                sorted({(u.family, u.container) for u in img.uses}),
                per_image[slot],
                *_runtime_content(img),
            ]
        )
    carried -= set(details)
    rows = tuple(
        sorted(by_ident.values(), key=lambda r: (sev_key(r.severity), r.vulnerability_id, r.package))
    )
    index = {r.ident: i for i, r in enumerate(rows)}
    slots = {s: tuple(sorted(index[i] for i in ids)) for s, ids in per_image.items()}
    # The signals are part of the text (priority line, columns): a change in them rewrites it.
    fixes = sorted(
        (
            k,
            f.installed_version,
            f.fixed_version,
            f.assessment.priority,
            str(f.assessment.due or ""),
            f.assessment.overdue,  # the day a finding turns overdue, the text says so
            repr((f.signals.kev, f.signals.exploit_available, f.signals.fix_available.value, f.signals.epss)),
        )
        for k, f in details.items()
    )
    return GroupFindings(
        rows=rows,
        details=details,
        where={k: tuple(sorted(set(v))) for k, v in where.items()},
        carried=frozenset(carried),
        slots=slots,
        fp=fingerprint(rows),
        content=content_fingerprint([content, fixes]),
        all_known=len(group.known) == len(group.images),
        none_known=not group.known,
        redeploy=any(i.redeploy_needed for i in group.images),
    )


def _runtime_content(img: ImageResult) -> list[object]:
    """What the description shows of the running view and that should rewrite it when it changes.

    Only the stable parts: where it runs, which digests, since when, and the two flags. The task
    count, "last seen" and Inspector's in-use figures move every run; rewriting the description
    for them would churn every ticket (they are shown as of the last rewrite). Empty without a
    running view (a runtime with Inspector's in-use figures only), so tickets of policies without
    one keep their fingerprint.
    """
    rt = img.runtime
    if rt is None or not rt.running_digests:  # no running view (perhaps Inspector's in-use figures)
        return [{"redeploy": True}] if img.redeploy_needed else []
    return [
        {
            "redeploy": img.redeploy_needed,
            "clusters": sorted(rt.clusters),
            "services": sorted(rt.services),
            "running": sorted(rt.running_digests),
            "tag": rt.tag_digest or "",
            "since": rt.first_seen_running.isoformat() if rt.first_seen_running else "",
            "atRisk": rt.coverage_at_risk,
        }
    ]
