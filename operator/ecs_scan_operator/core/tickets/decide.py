"""What happens to one ticket: an explicit table from the facts of a run to a verdict. Pure.

Two tables, read top to bottom, the first matching row wins; a blank cell matches anything.
`GROUP_RULES` decides for the ticket of each group this run has (ticket state x findings x
coverage x what the `ecsscan` property recorded x routing -> verdict); `ORPHAN_RULES` for each
open ticket whose group is no longer in its route (moved to another route, or gone). The
verdicts are carried out by plan.py, which only builds the Jira fields for them. docs/
architecture.md ("Ticket decisions") shows both tables as `render_table` prints them, and a test
keeps the two equal.

Two rules the tables encode that matter most:
- a ticket is closed as fixed only when every image of the group was scanned and none has a
  finding left; an image that is not monitored or whose scan failed is never counted as fixed;
- a ticket is never closed while running tasks still use an affected digest (the running view,
  issue #12): a tag that moved to a clean digest is "redeploy needed", not fixed;
- a ticket a person closed as won't-do (or put in a won't-do status) is never reopened or edited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum

from ecs_scan_operator.core.tickets.model import Action


class Ticket(StrEnum):
    """The ticket that tracks the group, as the plan sees it."""

    NONE = "none"
    OPEN = "open"
    OPEN_WONT_DO = "open (won't-do status)"  # a status a person picks to say "we won't fix this"
    DONE_RECENT = "done (fixed, within reopenWithinDays)"
    DONE_LONG_AGO = "done (fixed, longer ago)"
    DONE_WONT_DO = "done (won't do)"  # resolved other than Done/Fixed, or in a won't-do status


class Findings(StrEnum):
    """Whether the group has findings at or above the threshold (read now or carried over)."""

    FOUND = "found"
    NONE = "none"


class Coverage(StrEnum):
    """How many of the group's images were scanned this run."""

    ALL = "all scanned"
    PARTIAL = "some not monitored"
    NONE = "none monitored"
    FAILED = "a scan failed"  # wins over the others: a failed scan says nothing about the image


class Record(StrEnum):
    """What the ticket's `ecsscan` property recorded, against this run."""

    NONE = "no property"
    CURRENT = "current"  # same findings, same description inputs, monitored
    STALE = "same findings, other content"  # images, digests, uses or fixed versions changed
    UNMONITORED_SAME = "unmonitored, same findings"
    CHANGED = "findings changed"
    UNMONITORED_CHANGED = "unmonitored, findings changed"
    RECORDED = "recorded"  # orphans: a property (its findings are not compared)
    RETIRED = "retired"  # orphans: a property marked as no longer deployed


class Redeploy(StrEnum):
    """Whether running tasks still use an affected digest the tag no longer points at.

    From the running view (`ImageResult.redeploy_needed`), against what the ticket's property
    recorded: "newly" the first run that sees it (the ticket says so once), "still" after that.
    """

    NO = "no"
    NEW = "newly needed"
    STILL = "still needed"


class Routing(StrEnum):
    """Where the group is, relative to the route the ticket was filed in."""

    STAYED = "stayed"
    MOVED_IN = "moved in"  # an open ticket of another route tracked it before
    # Orphans: the ticket's group left its route...
    MOVED_TRACKED = "moved, tracked there"  # ...and an open ticket tracks it in the new route
    MOVED_FILING = "moved, being filed"  # ...and this run creates or reopens its ticket there
    MOVED_DEFERRED = "moved, route not searched"  # ...but the new route could not be searched
    MOVED_QUIET = "moved, nothing to file"  # ...and the new route has nothing to file
    GONE = "gone"  # no selected task definition uses the images (every listing succeeded)
    GONE_UNSURE = "gone, listing incomplete"  # not in this run, but a listing failed


class Verdict(StrEnum):
    """What plan.py does; each verdict is one Jira action with its own text."""

    NOTHING = "nothing"  # no ticket and nothing to say
    KEEP = "keep"
    SKIP_WONT_DO = "skip, won't do"
    CREATE = "create"
    CREATE_MOVED = "create, linked to the old route's ticket"
    NEW_LINKED = "new ticket linked to the old one"
    REOPEN = "reopen"
    NOTE_UNMONITORED = "comment: not monitored"
    RESTORE_LABELS = "add missing labels"
    REWRITE = "rewrite description"
    UPDATE_FIXED = "rewrite: all fixed"
    CLOSE_FIXED = "close as fixed"
    CLOSE_MOVED = "close, moved"
    CLOSE_MOVING = "close after the new ticket"
    CLOSE_GONE = "close, not deployed"
    RETIRE = "comment: not deployed"

    @property
    def action(self) -> Action | None:
        """The Jira action (None: no action at all)."""
        return _ACTIONS[self]


_ACTIONS: Mapping[Verdict, Action | None] = {
    Verdict.NOTHING: None,
    Verdict.KEEP: Action.UNCHANGED,
    Verdict.SKIP_WONT_DO: Action.SKIP_WONTDO,
    Verdict.CREATE: Action.CREATE,
    Verdict.CREATE_MOVED: Action.CREATE,
    Verdict.NEW_LINKED: Action.NEW_LINKED,
    Verdict.REOPEN: Action.REOPEN,
    Verdict.NOTE_UNMONITORED: Action.UPDATE,
    Verdict.RESTORE_LABELS: Action.UPDATE,
    Verdict.REWRITE: Action.UPDATE,
    Verdict.UPDATE_FIXED: Action.UPDATE,
    Verdict.CLOSE_FIXED: Action.CLOSE,
    Verdict.CLOSE_MOVED: Action.CLOSE,
    Verdict.CLOSE_MOVING: Action.CLOSE,
    Verdict.CLOSE_GONE: Action.CLOSE,
    Verdict.RETIRE: Action.UPDATE,
}


@dataclass(frozen=True)
class Facts:
    """Everything a decision depends on, as enums and flags.

    For an orphan, `findings` and `coverage` describe its group in the new route (MOVED_QUIET);
    without one they are NONE and no row looks at them.
    """

    ticket: Ticket
    findings: Findings
    coverage: Coverage
    record: Record
    routing: Routing = Routing.STAYED
    close_when_fixed: bool = True
    labels_complete: bool = True
    redeploy: Redeploy = Redeploy.NO


_COLUMNS = tuple(f.name for f in fields(Facts))


@dataclass(frozen=True)
class Rule:
    """One row: the facts it matches (a missing column matches anything), its verdict and reason.

    The reason is a template; plan.py fills in `{why}`, `{status}`, `{days}`, `{key}`, `{where}`,
    `{old_route}` and `{old_key}`.
    """

    verdict: Verdict
    reason: str
    when: Mapping[str, frozenset[object]]

    def matches(self, facts: Facts) -> bool:
        """True when every column given matches."""
        return all(getattr(facts, name) in allowed for name, allowed in self.when.items())


def _row(verdict: Verdict, reason: str, **when: object) -> Rule:
    unknown = set(when) - set(_COLUMNS)
    if unknown:
        raise TypeError(f"unknown columns {sorted(unknown)}")
    return Rule(
        verdict,
        reason,
        {k: frozenset(v) if isinstance(v, set | frozenset) else frozenset({v}) for k, v in when.items()},
    )


_DONE_FIXED = {Ticket.DONE_RECENT, Ticket.DONE_LONG_AGO}
_REDEPLOY = {Redeploy.NEW, Redeploy.STILL}
_SAME_FINDINGS = {Record.CURRENT, Record.STALE, Record.UNMONITORED_SAME}
_UNMONITORED = {Record.UNMONITORED_SAME, Record.UNMONITORED_CHANGED}
_F, _C, _R, _T = Findings, Coverage, Record, Ticket

GROUP_RULES: tuple[Rule, ...] = (
    _row(Verdict.NOTHING, "", ticket=_T.NONE, findings=_F.NONE),
    _row(
        Verdict.CREATE_MOVED,
        "routing moved the group from route {old_route} ({old_key})",
        ticket=_T.NONE,
        routing=Routing.MOVED_IN,
    ),
    _row(Verdict.CREATE, "new findings", ticket=_T.NONE),
    _row(
        Verdict.SKIP_WONT_DO,
        "closed as {why} by a person; not reopened",
        ticket=_T.DONE_WONT_DO,
        findings=_F.FOUND,
    ),
    _row(Verdict.KEEP, "closed as {why}", ticket=_T.DONE_WONT_DO),
    _row(Verdict.KEEP, "done and still no findings", ticket=_DONE_FIXED, findings=_F.NONE),
    # Unreachable today (a done ticket carries no findings over), kept so the order reads right.
    _row(Verdict.KEEP, "done; its images are not monitored now", ticket=_DONE_FIXED, coverage=_C.NONE),
    _row(Verdict.REOPEN, "findings back within {days} days of the fix", ticket=_T.DONE_RECENT),
    _row(
        Verdict.NEW_LINKED,
        "findings back more than {days} days after {key} was resolved",
        ticket=_T.DONE_LONG_AGO,
    ),
    _row(Verdict.SKIP_WONT_DO, "status {status} set by a person", ticket=_T.OPEN_WONT_DO),
    # A scan that errored says nothing about the image: no note, no rewrite, no close. (A passing
    # outage would otherwise cost every ticket two comments.)
    _row(Verdict.KEEP, "a scan failed this run; ticket left as it was", ticket=_T.OPEN, coverage=_C.FAILED),
    _row(
        Verdict.KEEP,
        "images not monitored; last known findings kept",
        ticket=_T.OPEN,
        coverage=_C.NONE,
        record=_UNMONITORED,
    ),
    _row(
        Verdict.NOTE_UNMONITORED,
        "images no longer monitored; kept open with the last known findings",
        ticket=_T.OPEN,
        coverage=_C.NONE,
    ),
    # The running view says an affected digest still runs: whatever the scanned digests show, the
    # vulnerability is in production. Never a fix (the tag moving is not a deployment).
    _row(
        Verdict.KEEP,
        "no findings read, but running tasks still use an affected digest; not closed",
        ticket=_T.OPEN,
        findings=_F.NONE,
        redeploy=_REDEPLOY,
    ),
    _row(
        Verdict.KEEP,
        "no findings in scanned images, but some images are not monitored",
        ticket=_T.OPEN,
        findings=_F.NONE,
        coverage=_C.PARTIAL,
    ),
    _row(Verdict.CLOSE_FIXED, "all findings fixed", ticket=_T.OPEN, findings=_F.NONE, close_when_fixed=True),
    _row(
        Verdict.KEEP,
        "all fixed; closeWhenFixed is off",
        ticket=_T.OPEN,
        findings=_F.NONE,
        record=_SAME_FINDINGS,
    ),
    _row(
        Verdict.UPDATE_FIXED, "all findings fixed (closeWhenFixed is off)", ticket=_T.OPEN, findings=_F.NONE
    ),
    _row(
        Verdict.REWRITE,
        "redeploy needed: the tag moved to a digest without these findings, an affected digest still runs",
        ticket=_T.OPEN,
        redeploy=Redeploy.NEW,
    ),
    _row(Verdict.KEEP, "no change", ticket=_T.OPEN, record=_R.CURRENT, labels_complete=True),
    _row(Verdict.RESTORE_LABELS, "restoring its labels", ticket=_T.OPEN, record=_R.CURRENT),
    _row(Verdict.REWRITE, "no ecsscan property; rewriting", ticket=_T.OPEN, record=_R.NONE),
    _row(Verdict.REWRITE, "images or uses changed", ticket=_T.OPEN, record=_R.STALE),
    _row(Verdict.REWRITE, "monitored again", ticket=_T.OPEN, record=_R.UNMONITORED_SAME),
    _row(Verdict.REWRITE, "findings changed", ticket=_T.OPEN, record={_R.CHANGED, _R.UNMONITORED_CHANGED}),
)

ORPHAN_RULES: tuple[Rule, ...] = (
    _row(Verdict.KEEP, "no ecsscan property; left alone", record=_R.NONE),
    _row(Verdict.SKIP_WONT_DO, "status {status} set by a person", ticket=_T.OPEN_WONT_DO),
    _row(Verdict.CLOSE_MOVED, "routing changed; now tracked in {key}", routing=Routing.MOVED_TRACKED),
    _row(Verdict.CLOSE_MOVING, "routing changed; moved to {where}", routing=Routing.MOVED_FILING),
    _row(Verdict.KEEP, "its new route could not be searched this run", routing=Routing.MOVED_DEFERRED),
    _row(
        Verdict.CLOSE_FIXED,
        "all findings fixed (routing changed too)",
        routing=Routing.MOVED_QUIET,
        findings=_F.NONE,
        coverage=_C.ALL,
        close_when_fixed=True,
    ),
    _row(Verdict.KEEP, "routing changed; the new route has nothing to file yet", routing=Routing.MOVED_QUIET),
    _row(
        Verdict.KEEP,
        "not in this run, but the task-definition listing was incomplete",
        routing=Routing.GONE_UNSURE,
    ),
    _row(
        Verdict.CLOSE_GONE,
        "no selected task definition uses the image any more",
        routing=Routing.GONE,
        close_when_fixed=True,
    ),
    _row(Verdict.KEEP, "no longer deployed (closeWhenFixed is off)", routing=Routing.GONE, record=_R.RETIRED),
    _row(Verdict.RETIRE, "no longer deployed (closeWhenFixed is off)", routing=Routing.GONE),
)


class NoRule(LookupError):
    """No row of a table matches: a gap in the table (a bug), never bad input."""


def decide(facts: Facts, rules: tuple[Rule, ...] = GROUP_RULES) -> Rule:
    """The first row of `rules` that matches `facts`."""
    for rule in rules:
        if rule.matches(facts):
            return rule
    raise NoRule(f"no ticket rule matches {facts}")


_HEADERS = {
    "close_when_fixed": "closeWhenFixed",
    "labels_complete": "labels complete",
    "redeploy": "redeploy needed",
}


def _cell(allowed: frozenset[object] | None) -> str:
    if allowed is None:
        return ""

    def order(v: object) -> tuple[int, str]:
        return (list(type(v)).index(v), "") if isinstance(v, StrEnum) else (0, str(v))

    return " / ".join(
        ("yes" if v else "no") if isinstance(v, bool) else str(v) for v in sorted(allowed, key=order)
    )


def render_table(rules: tuple[Rule, ...]) -> str:
    """The table as markdown (for docs/architecture.md): one row per rule, blank = any."""
    columns = [c for c in _COLUMNS if any(c in r.when for r in rules)]
    head = ["#", *(_HEADERS.get(c, c) for c in columns), "verdict", "Jira action", "reason"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, rule in enumerate(rules, 1):
        action = rule.verdict.action
        cells = [
            str(i),
            *(_cell(rule.when.get(c)) for c in columns),
            rule.verdict.value,
            action.value if action is not None else "(none)",
            rule.reason.replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
