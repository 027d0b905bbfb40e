"""The Jira plan: given this run's groups and the tickets found by label, what to write. Pure.

The adapter searches (one JQL per route, jql.py), hands the hits back as `ExistingTicket`s, and
executes the `PlannedAction`s this module returns; in a dry run it only reports them. The
decisions themselves are the tables of decide.py (written out in docs/architecture.md, "Ticket
decisions"); this module gathers the facts for them and builds each verdict's fields and text:

- no ticket and findings -> create (linked to the old ticket when routing moved the group);
- open ticket, same findings fingerprint and description inputs -> unchanged: no write at all;
- open ticket, findings changed -> update the description and add one comment (new / fixed);
- open ticket, no findings left in images Inspector still covers -> close (closeWhenFixed);
  an image that is merely no longer monitored keeps its last known findings and is never
  counted as fixed;
- done ticket and findings again -> reopen within reopenWithinDays of its resolution, else a new
  ticket linked to the old one; a ticket a person closed as won't-do is never reopened;
- an open ticket whose group left the route -> closed with a pointer to the ticket that now
  tracks it (routing changed), or closed as no longer deployed when no selected task definition
  uses the image (only when the run listed every task definition).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from ecs_scan_operator.core.model import ImageStatus
from ecs_scan_operator.core.tickets.build import (
    GROUP_BUILDERS,
    Case,
    Ctx,
    base_action,
    choose,
    labels_current,
)
from ecs_scan_operator.core.tickets.decide import (
    ORPHAN_RULES,
    Coverage,
    Facts,
    Findings,
    Record,
    Redeploy,
    Routing,
    Ticket,
    Verdict,
    decide,
)
from ecs_scan_operator.core.tickets.findings import GroupFindings, evaluate_group
from ecs_scan_operator.core.tickets.grouping import Group, group_images
from ecs_scan_operator.core.tickets.identity import find_dedup_label
from ecs_scan_operator.core.tickets.model import (
    Action,
    ExistingTicket,
    JiraWorkflow,
    PlannedAction,
    TicketPlan,
    TicketRequest,
)
from ecs_scan_operator.core.tickets.property import TicketProperty, TicketState
from ecs_scan_operator.core.tickets.wiki import esc

# ---------------------------------------------------------------------------------------------
# Facts


def _ticket_state(ctx: Ctx, ticket: ExistingTicket | None) -> Ticket:
    wf = ctx.workflow
    if ticket is None:
        return Ticket.NONE
    if not ticket.done:
        return Ticket.OPEN_WONT_DO if wf.is_wont_do_status(ticket.status) else Ticket.OPEN
    if not wf.is_fixed_resolution(ticket.resolution) or wf.is_wont_do_status(ticket.status):
        return Ticket.DONE_WONT_DO
    days = ctx.jira.reopen_within_days
    resolved = ticket.resolved or ticket.created
    if days > 0 and resolved is not None and ctx.request.now - resolved <= timedelta(days=days):
        return Ticket.DONE_RECENT
    return Ticket.DONE_LONG_AGO


def _coverage(group: Group, gf: GroupFindings) -> Coverage:
    if any(i.status is ImageStatus.FAILED for i in group.images):
        return Coverage.FAILED
    if gf.none_known:
        return Coverage.NONE
    return Coverage.ALL if gf.all_known else Coverage.PARTIAL


def _record(prev: TicketProperty | None, gf: GroupFindings) -> Record:
    if prev is None:
        return Record.NONE
    same = prev.fp == gf.fp
    if not prev.monitored:
        return Record.UNMONITORED_SAME if same else Record.UNMONITORED_CHANGED
    if same:
        return Record.CURRENT if prev.content == gf.content else Record.STALE
    return Record.CHANGED


def _redeploy(current: ExistingTicket | None, gf: GroupFindings) -> Redeploy:
    if not gf.redeploy:
        return Redeploy.NO
    said = current is not None and not current.done and current.prop is not None and current.prop.redeploy
    return Redeploy.STILL if said else Redeploy.NEW


def _plan_group(
    ctx: Ctx,
    group: Group,
    tickets: Sequence[ExistingTicket],
    moved_from: ExistingTicket | None,
) -> PlannedAction | None:
    current, dupes = choose(tickets)
    prev = current.prop if current else None
    # A done ticket's property still lists the findings from before it was closed (closing does
    # not rewrite it); those were fixed, so they are not carried over for unscanned images.
    carry = prev if current is None or not current.done else None
    if current is None and moved_from is not None:
        carry = moved_from.prop  # the same images: their last known findings move along
    gf = evaluate_group(group, carry)
    for d in dupes:
        why = (
            f"another open ticket {current.key if current else ''} "
            "tracks this group; left for a person to close"
        )
        ctx.actions.append(replace(base_action(ctx, group, gf, Action.DUPLICATE, why), ticket=d.key))
    facts = Facts(
        ticket=_ticket_state(ctx, current),
        findings=Findings.FOUND if gf.rows else Findings.NONE,
        coverage=_coverage(group, gf),
        record=_record(prev, gf),
        routing=Routing.MOVED_IN if moved_from is not None else Routing.STAYED,
        close_when_fixed=ctx.jira.close_when_fixed,
        labels_complete=current is None or labels_current(ctx, group, gf, current),
        redeploy=_redeploy(current, gf),
    )
    rule = decide(facts)
    if rule.verdict is Verdict.NOTHING:
        return None  # nothing to say and nobody to tell
    case = Case(ctx, group, gf, current, moved_from, facts)
    return GROUP_BUILDERS[rule.verdict](case, rule.reason.format(**case.reason_values()))


# ---------------------------------------------------------------------------------------------
# Tickets whose group left their route


@dataclass(frozen=True)
class _Target:
    """Where an orphan's group went: its group in the new route, and what this run does there."""

    group: Group
    action: PlannedAction | None  # the plan for it (None: no action, nothing to file)
    ticket: ExistingTicket | None  # its open ticket there, unless this run reopens it


def _orphan_routing(ctx: Ctx, target: _Target | None) -> Routing:
    if target is None:
        return Routing.GONE if ctx.request.inventory_complete else Routing.GONE_UNSURE
    if target.ticket is not None and not target.ticket.done:
        return Routing.MOVED_TRACKED
    filing = (Action.CREATE, Action.NEW_LINKED, Action.REOPEN)
    if target.action is not None and target.action.action in filing:
        return Routing.MOVED_FILING
    if target.action is not None and target.action.action is Action.DEFERRED:
        return Routing.MOVED_DEFERRED
    return Routing.MOVED_QUIET


def _orphan_record(prop: TicketProperty | None) -> Record:
    if prop is None:
        return Record.NONE
    return Record.RETIRED if prop.state is TicketState.RETIRED else Record.RECORDED


def _plan_orphan(ctx: Ctx, ticket: ExistingTicket, target: _Target | None) -> PlannedAction:
    """An open ticket whose group is not (or no longer) in its route."""
    prop = ticket.prop
    gf = evaluate_group(target.group, prop) if target is not None else None
    facts = Facts(
        ticket=_ticket_state(ctx, ticket),
        findings=Findings.FOUND if gf is not None and gf.rows else Findings.NONE,
        coverage=_coverage(target.group, gf) if target is not None and gf is not None else Coverage.NONE,
        record=_orphan_record(prop),
        routing=_orphan_routing(ctx, target),
        close_when_fixed=ctx.jira.close_when_fixed,
    )
    rule = decide(facts, ORPHAN_RULES)
    where = (
        f"route {esc(target.group.route.name)} (project {esc(target.group.route.project)})" if target else ""
    )
    tkey = target.ticket.key if target is not None and target.ticket is not None else ""
    base = PlannedAction(
        action=Action.UNCHANGED,
        reason=rule.reason.format(status=ticket.status, key=tkey, where=where),
        route=prop.route if prop else "?",
        group=prop.group if prop else "?",
        label=find_dedup_label(ticket.labels),
        project=ticket.project,
        issue_type=ctx.jira.issue_type,
        ticket=ticket.key,
    )
    return replace(base, **_orphan_changes(ctx, rule.verdict, ticket, target, where))


def _orphan_changes(
    ctx: Ctx, verdict: Verdict, ticket: ExistingTicket, target: _Target | None, where: str
) -> dict[str, Any]:
    """The fields of an orphan's action, by verdict (none for KEEP)."""
    run = ctx.run
    gone = f"Scan {run}: no task definition selected by the policy uses these images any more."
    close: dict[str, Any] = {
        "action": Action.CLOSE,
        "transition": "close",
        "resolution": ctx.workflow.moved_resolution,
    }
    changes: dict[str, Any] = {}
    match verdict:
        case Verdict.SKIP_WONT_DO:
            changes = {"action": Action.SKIP_WONTDO}
        case Verdict.CLOSE_MOVED:
            tkey = target.ticket.key if target is not None and target.ticket is not None else ""
            comment = f"Scan {run}: routing changed; this group is now tracked in {esc(tkey)} under {where}."
            changes = {**close, "comment": comment}
        case Verdict.CLOSE_MOVING:
            taction = target.action if target is not None else None
            # A reopen needs no create first; a create must succeed before the old ticket closes.
            depends = taction.label if taction is not None and taction.action is not Action.REOPEN else None
            comment = (
                f"Scan {run}: routing changed; this group is now tracked under {where}, in the ticket "
                "linked to this one."
            )
            changes = {**close, "depends_on": depends, "comment": comment}
        case Verdict.CLOSE_FIXED:
            comment = f"Scan {run}: no finding is left in the scanned images. Closing."
            changes = {**close, "resolution": ctx.workflow.close_resolution, "comment": comment}
        case Verdict.CLOSE_GONE:
            changes = {**close, "comment": f"{gone[:-1]}. Closing."}
        case Verdict.RETIRE if ticket.prop is not None:
            prop = ticket.prop.evolve(state=TicketState.RETIRED, run_id=ctx.request.run_id)
            changes = {"action": Action.UPDATE, "comment": gone, "prop": prop}
    return changes


# ---------------------------------------------------------------------------------------------
# The whole run

_ORDER = {
    Action.CREATE: 0,
    Action.NEW_LINKED: 0,
    Action.REOPEN: 1,
    Action.UPDATE: 2,
    Action.CLOSE: 3,
    Action.SKIP_WONTDO: 4,
    Action.DUPLICATE: 5,
    Action.DEFERRED: 6,
    Action.UNCHANGED: 7,
}


def _by_label(
    ctx: Ctx, tickets: Collection[ExistingTicket], groups: Sequence[Group]
) -> tuple[dict[str, list[ExistingTicket]], set[str]]:
    """The tickets under each label, and the keys of those that lost their dedup label (filed
    under it again)."""
    by_label: dict[str, list[ExistingTicket]] = {}
    for t in tickets:
        for lb in t.labels:
            by_label.setdefault(lb, []).append(t)
    by_key = {ctx.ident(g).key: ctx.ident(g).label for g in groups}
    claimed: set[str] = set()
    for t in tickets:
        # A person removed the dedup label but the route label found it, and the property says
        # whose it is: it still tracks its group (and gets the label back), rather than a new one.
        owner = by_key.get(t.prop.key) if t.prop is not None else None
        if owner is not None and owner not in t.labels and not t.done:
            by_label.setdefault(owner, []).append(t)
            claimed.add(t.key)
    return by_label, claimed


def _moves(
    ctx: Ctx, orphans: Sequence[ExistingTicket], groups: Sequence[Group]
) -> tuple[dict[str, Group], dict[str, ExistingTicket]]:
    """(orphan key -> the group that now covers it, dedup label -> the orphan it replaces)."""
    by_group_id: dict[str, list[Group]] = {}
    for g in groups:
        by_group_id.setdefault(g.group_id, []).append(g)
    moved_to: dict[str, Group] = {}
    moved_from: dict[str, ExistingTicket] = {}
    for o in orphans:
        if o.prop is None:
            continue
        candidates = [g for g in by_group_id.get(o.prop.group, []) if g.route.name != o.prop.route]
        if candidates:
            moved_to[o.key] = candidates[0]
            moved_from.setdefault(ctx.ident(candidates[0]).label, o)
    return moved_to, moved_from


def plan_tickets(
    request: TicketRequest,
    existing: Iterable[ExistingTicket],
    *,
    failed_routes: Iterable[str] = (),
    workflow: JiraWorkflow | None = None,
    groups: Sequence[Group] | None = None,
    defer_text: bool = False,
) -> TicketPlan:
    """Decide every ticket's action; creates first (they may be linked to), worst findings first.

    `defer_text`: descriptions are left to render when sent (`TicketFields.text()`), so a large
    plan never holds all of them at once; by default they are rendered here.
    """
    jira = request.spec.jira
    if jira is None:
        return TicketPlan()
    ctx = Ctx(request=request, jira=jira, workflow=workflow or JiraWorkflow(), defer_text=defer_text)
    groups = list(groups) if groups is not None else group_images(request.images, jira)
    failed = set(failed_routes)
    tickets = {t.key: t for t in existing}  # a ticket found by two searches counts once
    by_label, claimed = _by_label(ctx, tickets.values(), groups)
    desired = {ctx.ident(g).label: g for g in groups}
    # Open tickets that no desired group claims: their group moved to another route, or left.
    orphans = [
        t
        for t in sorted(tickets.values(), key=lambda t: t.key)
        if not t.done and t.key not in claimed and not any(lb in desired for lb in t.labels)
    ]
    moved_to, moved_from = _moves(ctx, orphans, groups)

    planned: dict[str, PlannedAction | None] = {}
    for label, g in desired.items():
        if g.route.name in failed:
            act: PlannedAction | None = base_action(
                ctx, g, None, Action.DEFERRED, "its route could not be searched"
            )
        else:
            act = _plan_group(ctx, g, by_label.get(label, []), moved_from.get(label))
        planned[label] = act
        if act is not None:
            ctx.actions.append(act)

    for o in orphans:
        if o.prop is not None and o.prop.route in failed:
            continue
        target = None
        if o.key in moved_to:
            tg = moved_to[o.key]
            tl = ctx.ident(tg).label
            current, _ = choose(by_label.get(tl, []))
            taction = planned.get(tl)
            tticket = current if taction is None or taction.action is not Action.REOPEN else None
            target = _Target(tg, taction, tticket)
        ctx.actions.append(_plan_orphan(ctx, o, target))

    ctx.actions.sort(key=lambda a: (_ORDER[a.action], -a.severity, a.route, a.group, a.ticket or ""))
    return TicketPlan(actions=ctx.actions)
