"""The ticket types: what the pipeline hands the ticket sink, what the plan decides, what comes back.

Pure data. The Jira work itself lives beside it: routing and grouping (grouping.py), the ticket
identity and labels (identity.py), the issue property (property.py), the searches (jql.py), the
findings of a group (findings.py), the ticket text (wiki.py), the decisions (decide.py) and the
plan of writes (plan.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from ecs_scan_operator.core.model import ImageResult
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec
from ecs_scan_operator.core.tickets.property import TicketProperty


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


class Action(StrEnum):
    """What happens to one ticket."""

    CREATE = "create"
    UPDATE = "update"
    CLOSE = "close"
    REOPEN = "reopen"
    UNCHANGED = "unchanged"
    NEW_LINKED = "new-linked"  # findings back long after a fix: a new ticket linked to the old one
    SKIP_WONTDO = "skip-wontdo"  # a person closed it as won't-do: left alone
    DEFERRED = "deferred"  # its route could not be searched this run
    DUPLICATE = "duplicate"  # a second open ticket with the same dedup label: reported, not touched


#: Actions that write to Jira.
WRITING = frozenset({Action.CREATE, Action.UPDATE, Action.CLOSE, Action.REOPEN, Action.NEW_LINKED})


@dataclass(frozen=True)
class JiraWorkflow:
    """How the tool reads and drives the project workflow (defaults fit Jira's stock workflows)."""

    # Resolutions that mean "fixed": a ticket resolved otherwise was closed by a person as won't-do.
    fixed_resolutions: frozenset[str] = frozenset({"done", "fixed"})
    # Statuses a person picks to say "we won't fix this", whatever their category.
    wont_do_statuses: frozenset[str] = frozenset(
        {
            "won't do",
            "won't fix",
            "wont do",
            "wont fix",
            "rejected",
            "declined",
            "risk accepted",
            "accepted risk",
        }
    )
    close_resolution: str = "Fixed"  # used when the transition screen offers it, else "Done"
    moved_resolution: str = "Done"
    link_type: str = "Relates"

    def is_fixed_resolution(self, name: str | None) -> bool:
        """True for Done/Fixed (case-insensitive); a missing resolution counts as fixed."""
        return name is None or name.strip().lower() in self.fixed_resolutions

    def is_wont_do_status(self, name: str) -> bool:
        """True for a status that records a decision not to fix."""
        return name.strip().lower() in self.wont_do_statuses


class StatusCategory(StrEnum):
    """Jira's fixed status categories (`statusCategory.key`); every workflow status has one."""

    NEW = "new"
    INDETERMINATE = "indeterminate"
    DONE = "done"


@dataclass(frozen=True)
class ExistingTicket:
    """A ticket found by label, as the plan needs it."""

    key: str
    id: str
    labels: tuple[str, ...]
    status: str
    status_category: str  # a StatusCategory value ("" when Jira sent none)
    project: str = ""
    resolution: str | None = None
    resolved: datetime | None = None
    created: datetime | None = None
    duedate: date | None = None
    prop: TicketProperty | None = None

    @property
    def done(self) -> bool:
        """In a status of the Done category."""
        return self.status_category == StatusCategory.DONE


@dataclass(frozen=True)
class TicketFields:
    """Field values to write; None / empty means leave as is."""

    summary: str | None = None
    description: str | None = None
    # Or the description still to render (plan_tickets(defer_text=True)): on a large first run
    # the plan holds a thousand creates of ~25 KB of text each; rendered as each is sent, at most
    # one exists at a time. `text()` is the description either way.
    describe: Callable[[], str] | None = field(default=None, compare=False, repr=False)
    priority: str | None = None
    duedate: date | None = None
    labels: tuple[str, ...] = ()  # on create: all labels; on update: labels to add
    remove_labels: tuple[str, ...] = ()  # on update: signal labels that no longer apply
    components: tuple[str, ...] = ()
    assignee: str | None = None

    def text(self) -> str | None:
        """The description to write, rendered now when it was deferred."""
        if self.description is None and self.describe is not None:
            return self.describe()
        return self.description

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not (
            self.summary
            or self.description
            or self.describe is not None
            or self.priority
            or self.duedate
            or self.labels
            or self.remove_labels
            or self.components
        ) and (self.assignee is None)


@dataclass(frozen=True)
class PlannedAction:
    """One decision about one ticket, with everything the adapter needs to carry it out."""

    action: Action
    reason: str
    route: str
    group: str
    label: str  # the dedup label
    project: str
    issue_type: str = "Bug"
    ticket: str | None = None  # the existing ticket acted on
    link_to: str | None = None  # an older ticket the new one relates to
    fields: TicketFields = TicketFields()
    comment: str | None = None  # added with the edit or the transition
    prop: TicketProperty | None = None  # the property value to store (None: leave it)
    transition: str | None = None  # "close" | "reopen"
    resolution: str | None = None  # preferred resolution when closing
    depends_on: str | None = None  # a dedup label whose create must succeed first
    severity: int = -1  # rank of the worst finding, to do the worst first

    @property
    def writes(self) -> bool:
        """True when this action changes Jira."""
        return self.action in WRITING

    def summary(self) -> dict[str, str]:
        """The action as strings, for the report and the CLI (no secrets, bounded)."""
        out = {
            "action": self.action.value,
            "route": self.route,
            "group": self.group,
            "label": self.label,
            "project": self.project,
            "reason": self.reason,
        }
        if self.ticket:
            out["ticket"] = self.ticket
        if self.link_to:
            out["linkTo"] = self.link_to
        return out


@dataclass
class TicketPlan:
    """All actions of one run, worst findings first within each kind."""

    actions: list[PlannedAction] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Actions by kind."""
        return dict(Counter(a.action.value for a in self.actions))


@dataclass(frozen=True)
class RouteSearch:
    """One JQL search (one or more pages) for one route."""

    route: str
    jql: str
