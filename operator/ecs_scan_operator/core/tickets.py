"""What the pipeline hands the ticket sink, and what it gets back. Pure data.

The Jira work itself lives beside it: routing and grouping (grouping.py), dedup keys and the
issue property (dedup.py), and the plan of writes with the ticket text (jira_plan.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ecs_scan_operator.core.model import ImageResult
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec


@dataclass(frozen=True)
class TicketRequest:
    """Everything needed to bring the tickets of one policy in step with one run."""

    policy: PolicyRef
    spec: PolicySpec
    images: list[ImageResult]  # every image of the run, with status and actionable findings
    run_id: str
    now: datetime
    report_links: dict[str, str] = field(default_factory=dict)  # image display -> URL of its report
    run_log_link: str = ""
    index_link: str = ""
    dry_run: bool = False
    # When the report links are presigned URLs: when they stop working (stated in the ticket).
    links_expire: datetime | None = None
    # False when listing task definitions failed somewhere this run: an image missing from
    # `images` may then still be deployed, so its ticket must not be closed as "no longer used".
    inventory_complete: bool = True


@dataclass
class TicketReport:
    """What the sink did (or, in a dry run, would do)."""

    actions: dict[str, int] = field(default_factory=dict)  # create/update/close/reopen/unchanged/... -> count
    planned: list[dict[str, str]] = field(default_factory=list)  # one entry per ticket: action, key, reason
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    synced: bool = True  # False when some work is left for the next run
    # CamelCase reason for the TicketsSynced condition: Synced, DryRun, PartialFailure,
    # JiraUnavailable, JiraAuthFailed, RequestBudgetExhausted, NotConfigured.
    reason: str = "Synced"
    searches: int = 0  # search pages read
    writes: int = 0  # requests that change Jira (create, edit, transition, link)
