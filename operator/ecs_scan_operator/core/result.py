"""The run result: a bounded summary of one run, whatever the fleet size. Pure.

It is what the CLI prints as JSON and what the operator copies into `.status.lastRun`, so it
holds counters and references to the full report, never per-image or per-finding lists.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ecs_scan_operator.core.model import SEVERITY_ORDER, ImageResult, ImageStatus

MAX_ERRORS = 10
PRIORITIES = ("P1", "P2", "P3", "P4")  # core/priority.py's order; a label set the metrics can bound
MAX_MESSAGE = 300
MAX_CAUSES = 10  # distinct error causes kept with their counts
SHOWN_CAUSES = 3  # named in one-line summaries, then "and N more"
MAX_ACCOUNTS = 10  # accounts named in per-account counts; the rest are summed as "other"
OTHER_ACCOUNTS = "other"


class Outcome(StrEnum):
    """How a run ended."""

    SUCCEEDED = "Succeeded"
    PARTIAL = "PartialFailure"
    FAILED = "Failed"


def causes_text(causes: dict[str, int], limit: int = SHOWN_CAUSES) -> str:
    """Distinct causes with counts, most frequent first, bounded: `a x2, b x1 and 3 more`."""
    ranked = sorted(causes.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{cause} x{n}" for cause, n in ranked[:limit])
    if len(ranked) > limit:
        text += f" and {len(ranked) - limit} more"
    return text


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """Bound a message's length (status and events must stay small)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class RunResult:
    """Bounded summary of a run."""

    run_id: str
    policy: str
    started: datetime
    completed: datetime | None = None
    outcome: Outcome = Outcome.SUCCEEDED
    dry_run: bool = False
    families_matched: int = 0
    task_definitions: int = 0
    images_total: int = 0
    images_by_status: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in ImageStatus})
    findings_by_severity: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in SEVERITY_ORDER})
    affected_images: int = 0
    # Actionable findings by priority, and those past their due date (issue #13); P1..P4 only.
    findings_by_priority: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRIORITIES, 0))
    overdue_by_priority: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRIORITIES, 0))
    kev_findings: int = 0
    suppressed_findings: int = 0
    expired_suppressions: int = 0
    report_uri: str = ""
    errors: list[str] = field(default_factory=list)
    errors_total: int = 0
    stage_failures: dict[str, str] = field(default_factory=dict)
    tickets: dict[str, int] = field(default_factory=dict)
    aws_calls: dict[str, int] = field(default_factory=dict)  # service:Operation -> calls
    aws_errors: dict[str, int] = field(default_factory=dict)  # service:Operation -> failed calls
    jira_requests: int = 0
    # "service:Operation ErrorCode" -> how many images or stages failed of it (bounded on output)
    error_causes: Counter[str] = field(default_factory=Counter)
    # Multi-account policies: images (and affected images) per account using them, all accounts;
    # bounded on output (`by_account`).
    account_images: Counter[str] = field(default_factory=Counter)
    account_affected: Counter[str] = field(default_factory=Counter)
    # Set when the run did not start at all (another run holds the policy's lease): why.
    refused: str = ""
    # The running view (issue #12): images whose affected digest still runs after the tag moved
    # on, images running past Inspector's re-scan window and the settings that say so, and why
    # a registry's setting could not be read.
    running_view: bool = False
    redeploy_needed: int = 0
    redeploy_images: list[str] = field(default_factory=list)  # the first MAX_ERRORS of them, for people
    coverage_at_risk: int = 0
    rescan_windows: list[str] = field(default_factory=list)
    coverage_unknown: str = ""

    def record_cause(self, cause: str, count: int = 1) -> None:
        """Count one failure of an outside call (empty causes are not counted)."""
        if cause and count > 0:
            self.error_causes[cause] += count

    def top_causes(self, limit: int = MAX_CAUSES) -> list[tuple[str, int]]:
        """The most frequent causes first (ties by name), at most `limit`."""
        return sorted(self.error_causes.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    def causes_text(self, limit: int = SHOWN_CAUSES) -> str:
        """`ecr:DescribeImages AccessDeniedException x2, ... and 3 more`; empty when none."""
        return causes_text(dict(self.error_causes), limit)

    def record_error(self, message: str) -> None:
        """Count an error; keep the first few messages, clipped."""
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(clip(message))

    def fail_stage(self, stage: str, message: str) -> None:
        """A whole stage failed: the run is at best partial."""
        self.stage_failures[stage] = clip(message)
        self.record_error(f"{stage}: {message}")

    def add_images(self, images: list[ImageResult]) -> None:
        """Fold per-image results into counters."""
        statuses: Counter[str] = Counter(i.status.value for i in images)
        self.images_total = len(images)
        self.images_by_status = {s.value: statuses.get(s.value, 0) for s in ImageStatus}
        sev: Counter[str] = Counter()
        prio: Counter[str] = Counter()
        overdue: Counter[str] = Counter()
        for img in images:
            sev.update(f.severity.value for f in img.findings)
            prio.update(f.assessment.priority for f in img.findings)
            overdue.update(f.assessment.priority for f in img.findings if f.assessment.overdue)
            self.kev_findings += sum(1 for f in img.findings if f.signals.kev is True)
            self.suppressed_findings += len(img.suppressed)
        self.findings_by_severity = {s.value: sev.get(s.value, 0) for s in SEVERITY_ORDER}
        self.findings_by_priority = {p: prio.get(p, 0) for p in PRIORITIES}
        self.overdue_by_priority = {p: overdue.get(p, 0) for p in PRIORITIES}
        self.affected_images = sum(1 for i in images if i.affected)
        self.redeploy_needed = sum(1 for i in images if i.redeploy_needed)
        self.redeploy_images = sorted(i.ref.display for i in images if i.redeploy_needed)[:MAX_ERRORS]
        self.coverage_at_risk = sum(1 for i in images if i.runtime is not None and i.runtime.coverage_at_risk)
        self.account_images, self.account_affected = Counter(), Counter()
        for img in images:
            self.account_images.update(img.accounts)
            if img.affected:
                self.account_affected.update(img.accounts)
        for img in images:
            if img.status is ImageStatus.FAILED:
                self.record_cause(img.cause)

    def finish(self, completed: datetime, *, fatal: bool = False) -> None:
        """Set the outcome from what was recorded."""
        self.completed = completed
        if fatal:
            self.outcome = Outcome.FAILED
        elif self.errors_total or self.stage_failures or self.images_by_status.get(ImageStatus.FAILED.value):
            self.outcome = Outcome.PARTIAL
        else:
            self.outcome = Outcome.SUCCEEDED

    def by_account(self, counts: Counter[str], limit: int = MAX_ACCOUNTS) -> dict[str, int]:
        """The `limit` accounts with the most images first (ties by ID), the rest summed as "other"."""
        order = sorted(self.account_images, key=lambda a: (-self.account_images[a], a))
        out = {a: counts.get(a, 0) for a in order[:limit]}
        rest = sum(counts.get(a, 0) for a in order[limit:])
        if len(order) > limit:
            out[OTHER_ACCOUNTS] = rest
        return out

    @property
    def overdue_findings(self) -> int:
        """Actionable findings past their due date."""
        return sum(self.overdue_by_priority.values())

    @property
    def findings_total(self) -> int:
        """Actionable findings of the run."""
        return sum(self.findings_by_severity.values())

    def to_dict(self) -> dict[str, Any]:
        """camelCase JSON form (CLI --format json, status.lastRun)."""
        return {
            "id": self.run_id,
            "policy": self.policy,
            "startTime": self.started.isoformat(),
            "completionTime": self.completed.isoformat() if self.completed else None,
            "result": self.outcome.value,
            "dryRun": self.dry_run,
            "familiesMatched": self.families_matched,
            "taskDefinitions": self.task_definitions,
            "images": self.images_total,
            "imagesByStatus": dict(self.images_by_status),
            "affectedImages": self.affected_images,
            "findings": self.findings_total,
            "findingsBySeverity": dict(self.findings_by_severity),
            "findingsByPriority": dict(self.findings_by_priority),
            "overdueFindings": self.overdue_findings,
            "overdueByPriority": dict(self.overdue_by_priority),
            "kevFindings": self.kev_findings,
            "suppressedFindings": self.suppressed_findings,
            "expiredSuppressions": self.expired_suppressions,
            "reportUri": self.report_uri,
            "errors": list(self.errors),
            "errorsTotal": self.errors_total,
            "stageFailures": dict(self.stage_failures),
            "tickets": dict(self.tickets),
            "awsCalls": dict(self.aws_calls),
            "awsErrors": dict(self.aws_errors),
            "jiraRequests": self.jira_requests,
            "errorCauses": dict(self.top_causes()),
            "redeployNeeded": self.redeploy_needed,
            "coverageAtRisk": self.coverage_at_risk,
            "rescanWindows": list(self.rescan_windows),
        } | (
            {
                "imagesByAccount": self.by_account(self.account_images),
                "affectedByAccount": self.by_account(self.account_affected),
            }
            if self.account_images
            else {}
        )
