"""How each verdict of decide.py becomes a `PlannedAction`: the fields, the comment, the property.

Pure. One builder per verdict about a group's ticket; the orphan verdicts are built in plan.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import TypeVar

from ecs_scan_operator.core.policy import JiraSpec, TicketLevel
from ecs_scan_operator.core.tickets.decide import Facts, Record, Redeploy, Verdict
from ecs_scan_operator.core.tickets.findings import SIGNAL_LABELS, GroupFindings
from ecs_scan_operator.core.tickets.grouping import Group
from ecs_scan_operator.core.tickets.identity import TicketIdentity
from ecs_scan_operator.core.tickets.model import (
    Action,
    ExistingTicket,
    JiraWorkflow,
    PlannedAction,
    TicketFields,
    TicketRequest,
)
from ecs_scan_operator.core.tickets.property import TicketProperty
from ecs_scan_operator.core.tickets.wiki import (
    esc,
    render_change_comment,
    render_description,
    render_redeploy_comment,
    render_summary,
    row_list,
)

T = TypeVar("T")


@dataclass
class Ctx:
    """One run's plan in the making: the request, the settings, the actions so far."""

    request: TicketRequest
    jira: JiraSpec
    workflow: JiraWorkflow
    defer_text: bool = False  # descriptions rendered when sent (TicketFields.describe), not now
    actions: list[PlannedAction] = field(default_factory=list)
    _ids: dict[tuple[str, str], TicketIdentity] = field(default_factory=dict)

    def ident(self, group: Group) -> TicketIdentity:
        """The group's identity, computed once per run."""
        k = (group.route.name, group.group_id)
        if k not in self._ids:
            self._ids[k] = TicketIdentity.of(self.request.policy, group.route.name, group.group_id)
        return self._ids[k]

    @property
    def run(self) -> str:
        """The run id, escaped for ticket text."""
        return esc(self.request.run_id)


def choose(tickets: Sequence[ExistingTicket]) -> tuple[ExistingTicket | None, list[ExistingTicket]]:
    """The ticket that tracks a group (oldest open, else newest) and any extra open duplicates."""

    def created(t: ExistingTicket) -> tuple[datetime, int, str]:
        num = re.sub(r"\D", "", t.key.rsplit("-", 1)[-1]) or "0"
        return (t.created or datetime.min, int(num), t.key)

    open_ = sorted((t for t in tickets if not t.done), key=created)
    if open_:
        return open_[0], open_[1:]
    done = sorted(tickets, key=created)
    return (done[-1] if done else None), []


def _level(mapping: Mapping[TicketLevel, T], gf: GroupFindings) -> T | None:
    """The value for the ticket's priority (P1..P4) if mapped, else for its worst severity."""
    for key in (gf.priority, gf.worst):
        if key is not None and TicketLevel(key.value) in mapping:
            return mapping[TicketLevel(key.value)]
    return None


def priority_of(jira: JiraSpec, gf: GroupFindings) -> str | None:
    """The Jira priority (priorityMap) of the ticket's priority, else of its worst severity."""
    return _level(jira.priority_map, gf)


def _due(jira: JiraSpec, gf: GroupFindings, now: datetime) -> date | None:
    """jira.dueDays from now, never later than the earliest due date of its findings (SLA, KEV)."""
    days = _level(jira.due_days, gf)
    dates = [d for d in (now.date() + timedelta(days=days) if days else None, gf.earliest_due) if d]
    return min(dates) if dates else None


def signal_label_changes(
    gf: GroupFindings, ticket: ExistingTicket
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The signal labels to add to `ticket` and those to remove (they no longer apply)."""
    if not gf.details:  # nothing read this run (images not scanned): the labels stay as they are
        return (), ()
    want = gf.signal_labels()
    add = tuple(lb for lb in want if lb not in ticket.labels)
    remove = tuple(lb for lb in SIGNAL_LABELS if lb in ticket.labels and lb not in want)
    return add, remove


def new_property(ctx: Ctx, group: Group, gf: GroupFindings, *, priority: str | None) -> TicketProperty:
    """The property to store after writing the ticket of `group` this run."""
    return TicketProperty(
        key=ctx.ident(group).key,
        route=group.route.name,
        group=group.group_id,
        fp=gf.fp,
        content=gf.content,
        findings=gf.rows,
        images=dict(gf.slots),
        monitored=not gf.none_known,
        priority=priority,
        run_id=ctx.request.run_id,
        redeploy=gf.redeploy,
    )


def missing_labels(ctx: Ctx, group: Group, ticket: ExistingTicket) -> tuple[str, ...]:
    """The machine labels of `group` a person removed from `ticket`."""
    return tuple(lb for lb in ctx.ident(group).labels if lb not in ticket.labels)


def labels_current(ctx: Ctx, group: Group, gf: GroupFindings, ticket: ExistingTicket) -> bool:
    """Every machine label is on the ticket and its signal labels are the findings' own."""
    add, remove = signal_label_changes(gf, ticket)
    return not (missing_labels(ctx, group, ticket) or add or remove)


def base_action(
    ctx: Ctx, group: Group, gf: GroupFindings | None, action: Action, reason: str
) -> PlannedAction:
    """An action on the ticket of `group`, with no fields yet."""
    return PlannedAction(
        action=action,
        reason=reason,
        route=group.route.name,
        group=group.group_id,
        label=ctx.ident(group).label,
        project=group.route.project,
        issue_type=ctx.jira.issue_type,
        severity=gf.worst.rank if gf is not None and gf.worst is not None else -1,
    )


def create_action(
    ctx: Ctx,
    group: Group,
    gf: GroupFindings,
    reason: str,
    *,
    action: Action = Action.CREATE,
    link_to: str | None = None,
    note: str | None = None,
) -> PlannedAction:
    """A new ticket for `group`: every field, all labels, the property."""
    priority = priority_of(ctx.jira, gf)
    text, describe = _description(ctx, group, gf, note)
    labels = tuple(dict.fromkeys([*group.route.labels, *ctx.ident(group).labels, *gf.signal_labels()]))
    return replace(
        base_action(ctx, group, gf, action, reason),
        link_to=link_to,
        fields=TicketFields(
            summary=render_summary(group, gf),
            description=text,
            describe=describe,
            priority=priority,
            duedate=_due(ctx.jira, gf, ctx.request.now),
            labels=labels,
            components=group.route.components,
            assignee=group.route.assignee,
        ),
        prop=new_property(ctx, group, gf, priority=priority),
    )


def _description(
    ctx: Ctx, group: Group, gf: GroupFindings, note: str | None
) -> tuple[str | None, Callable[[], str] | None]:
    """TicketFields' description, or (ctx.defer_text) the call that renders the same text later."""
    if ctx.defer_text:
        return None, functools.partial(render_description, ctx.request, group, gf, note=note)
    return render_description(ctx.request, group, gf, note=note), None


def update_fields(ctx: Ctx, group: Group, gf: GroupFindings, ticket: ExistingTicket) -> TicketFields:
    """The fields to edit on an open ticket: the text, and priority / due date only if the tool owns them."""
    prev = ticket.prop
    priority = priority_of(ctx.jira, gf)
    due = _due(ctx.jira, gf, ctx.request.now)
    add, remove = signal_label_changes(gf, ticket)
    text, describe = _description(ctx, group, gf, None)
    return TicketFields(
        summary=render_summary(group, gf),
        description=text,
        describe=describe,
        # Only what the tool itself last set is changed, so a person's choice is kept.
        priority=priority if priority and (prev is None or prev.priority != priority) else None,
        # SLA dates only ever get earlier (a worse finding arrived), never later.
        duedate=due if due and (ticket.duedate is None or due < ticket.duedate) else None,
        labels=missing_labels(ctx, group, ticket) + add,
        remove_labels=remove,
    )


@dataclass(frozen=True)
class Case:
    """One group's ticket with the facts about it: what a verdict's builder needs."""

    ctx: Ctx
    group: Group
    gf: GroupFindings
    current: ExistingTicket | None
    moved_from: ExistingTicket | None
    facts: Facts

    @property
    def prev(self) -> TicketProperty | None:
        """What the tool last recorded on the ticket."""
        return self.current.prop if self.current else None

    @property
    def ticket(self) -> ExistingTicket:
        """The existing ticket (only for verdicts about one)."""
        if self.current is None:
            raise AssertionError("verdict needs a ticket")
        return self.current

    def base(self, action: Action, reason: str) -> PlannedAction:
        """The action on the existing ticket, fields to be filled in."""
        return replace(base_action(self.ctx, self.group, self.gf, action, reason), ticket=self.ticket.key)

    def reason_values(self) -> dict[str, object]:
        """What a rule's reason template may name."""
        cur, old = self.current, self.moved_from
        return {
            "why": (cur.resolution or cur.status) if cur else "",
            "status": cur.status if cur else "",
            "key": cur.key if cur else "",
            "days": self.ctx.jira.reopen_within_days,
            "old_key": old.key if old else "",
            "old_route": old.prop.route if old and old.prop else "?",
        }


# ---------------------------------------------------------------------------------------------
# One builder per verdict about a group's ticket


def _keep(case: Case, reason: str) -> PlannedAction:
    return case.base(Action.UNCHANGED, reason)


def _skip(case: Case, reason: str) -> PlannedAction:
    return case.base(Action.SKIP_WONTDO, reason)


def _create_new(case: Case, reason: str) -> PlannedAction:
    return create_action(case.ctx, case.group, case.gf, reason)


def _create_moved(case: Case, reason: str) -> PlannedAction:
    old = case.moved_from
    assert old is not None  # the rule matched routing MOVED_IN
    old_route = old.prop.route if old.prop else "?"
    note = f"Routing changed: this group was tracked in {esc(old.key)} (route {esc(old_route)})."
    return create_action(case.ctx, case.group, case.gf, reason, link_to=old.key, note=note)


def _new_linked(case: Case, reason: str) -> PlannedAction:
    key = case.ticket.key
    note = f"Follows up {esc(key)}, resolved earlier: the findings came back."
    return create_action(
        case.ctx, case.group, case.gf, reason, action=Action.NEW_LINKED, link_to=key, note=note
    )


def _reopen(case: Case, reason: str) -> PlannedAction:
    ctx, group, gf, prev = case.ctx, case.group, case.gf, case.prev
    fields = update_fields(ctx, group, gf, case.ticket)
    same = prev is not None and prev.fp == gf.fp and prev.content == gf.content
    priority = priority_of(ctx.jira, gf) or (prev.priority if prev else None)
    headline = f"Scan {ctx.run}: findings are back; reopening."
    return replace(
        case.base(Action.REOPEN, reason),
        transition="reopen",
        comment=render_change_comment(ctx.request, gf, prev, headline=headline),
        # After a reopen the text is rewritten only when it is out of date.
        fields=TicketFields(
            priority=fields.priority,
            duedate=fields.duedate,
            labels=fields.labels,
            remove_labels=fields.remove_labels,
        )
        if same
        else fields,
        prop=None if same else new_property(ctx, group, gf, priority=priority),
    )


def _note_unmonitored(case: Case, reason: str) -> PlannedAction:
    ctx, group = case.ctx, case.group
    statuses = ", ".join(sorted({esc(i.status.value) for i in group.images}))
    return replace(
        case.base(Action.UPDATE, reason),
        comment=(
            f"Scan {ctx.run}: none of the images could be scanned this run ({statuses}). "
            "This is not a fix: the ticket stays open with the last known findings."
        ),
        prop=(case.prev or new_property(ctx, group, case.gf, priority=None)).evolve(
            monitored=False, run_id=ctx.request.run_id
        ),
    )


def _close_fixed(case: Case, reason: str) -> PlannedAction:
    ctx, prev = case.ctx, case.prev
    fixed_list = row_list(prev.findings) if prev and prev.findings else "all"
    return replace(
        case.base(Action.CLOSE, reason),
        transition="close",
        resolution=ctx.workflow.close_resolution,
        comment=(
            f"Scan {ctx.run}: no finding at or above {ctx.request.spec.severity_threshold} is left in "
            f"the scanned images. Fixed: {fixed_list}. "
            + (
                "The tasks were redeployed: no running task uses an affected digest any more. "
                if prev and prev.redeploy
                else ""
            )
            + "Closing."
        ),
    )


def _update_fixed(case: Case, reason: str) -> PlannedAction:
    ctx, prev = case.ctx, case.prev
    headline = f"Scan {ctx.run}: all findings are fixed."
    return replace(
        case.base(Action.UPDATE, reason),
        comment=render_change_comment(ctx.request, case.gf, prev, headline=headline),
        fields=update_fields(ctx, case.group, case.gf, case.ticket),
        prop=new_property(ctx, case.group, case.gf, priority=prev.priority if prev else None),
    )


def _restore_labels(case: Case, reason: str) -> PlannedAction:
    missing = missing_labels(case.ctx, case.group, case.ticket)
    add, remove = signal_label_changes(case.gf, case.ticket)
    return replace(
        case.base(Action.UPDATE, reason), fields=TicketFields(labels=missing + add, remove_labels=remove)
    )


def _rewrite(case: Case, reason: str) -> PlannedAction:
    ctx, prev = case.ctx, case.prev
    fields = update_fields(ctx, case.group, case.gf, case.ticket)
    comment: str | None
    match case.facts.record:
        case _ if case.facts.redeploy is Redeploy.NEW and case.facts.record is not Record.NONE:
            comment = render_redeploy_comment(ctx.request, case.group, case.gf, prev)
        case Record.NONE:
            comment = f"Scan {ctx.run}: ecs-scan-operator took over this ticket; description rewritten."
        case Record.STALE:
            comment = None  # only the description's inputs changed: nothing to tell people
        case Record.UNMONITORED_SAME:
            comment = f"Scan {ctx.run}: the images are monitored again."
        case _:
            comment = render_change_comment(ctx.request, case.gf, prev)
    priority = fields.priority or (prev.priority if prev else None)
    return replace(
        case.base(Action.UPDATE, reason),
        comment=comment,
        fields=fields,
        prop=new_property(ctx, case.group, case.gf, priority=priority),
    )


GROUP_BUILDERS: Mapping[Verdict, Callable[[Case, str], PlannedAction]] = {
    Verdict.KEEP: _keep,
    Verdict.SKIP_WONT_DO: _skip,
    Verdict.CREATE: _create_new,
    Verdict.CREATE_MOVED: _create_moved,
    Verdict.NEW_LINKED: _new_linked,
    Verdict.REOPEN: _reopen,
    Verdict.NOTE_UNMONITORED: _note_unmonitored,
    Verdict.CLOSE_FIXED: _close_fixed,
    Verdict.UPDATE_FIXED: _update_fixed,
    Verdict.RESTORE_LABELS: _restore_labels,
    Verdict.REWRITE: _rewrite,
}
