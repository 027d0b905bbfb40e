"""The Jira plan: given this run's groups and the tickets found by label, what to write. Pure.

The adapter searches (one JQL per route, built here), hands the hits back as
`ExistingTicket`s, and executes the `PlannedAction`s this module returns; in a dry run it only
reports them. Decisions, per (route, group):

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

Ticket text is Jira wiki markup (REST v2, accepted by Cloud and Data Center), kept within
Jira's 32,767-character field limit by summarizing and pointing to the full report.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from ecs_scan_operator.core.dedup import (
    FindingRow,
    TicketProperty,
    TicketState,
    content_fingerprint,
    dedup_key,
    dedup_label,
    fingerprint,
    image_slot,
    policy_label,
    route_label,
)
from ecs_scan_operator.core.grouping import DEFAULT_ROUTE, Group, group_images, resolve_routes
from ecs_scan_operator.core.model import SEVERITY_ORDER, Finding, ImageStatus, Severity
from ecs_scan_operator.core.policy import JiraSpec, PolicyRef
from ecs_scan_operator.core.tickets import TicketRequest

#: Jira's limit for a text area (description, comment body).
TEXT_LIMIT = 32_767
#: What we aim for: some room below the limit for Jira's own counting (line endings, entities).
TEXT_BUDGET = 32_000
SUMMARY_LIMIT = 255
LABELS_PER_SEARCH = 100
LIST_IN_COMMENT = 50


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


@dataclass(frozen=True)
class ExistingTicket:
    """A ticket found by label, as the plan needs it."""

    key: str
    id: str
    labels: tuple[str, ...]
    status: str
    status_category: str  # new | indeterminate | done
    project: str = ""
    resolution: str | None = None
    resolved: datetime | None = None
    created: datetime | None = None
    duedate: date | None = None
    prop: TicketProperty | None = None

    @property
    def done(self) -> bool:
        """In a status of the Done category."""
        return self.status_category == "done"


@dataclass(frozen=True)
class TicketFields:
    """Field values to write; None / empty means leave as is."""

    summary: str | None = None
    description: str | None = None
    priority: str | None = None
    duedate: date | None = None
    labels: tuple[str, ...] = ()  # on create: all labels; on update: labels to add
    components: tuple[str, ...] = ()
    assignee: str | None = None

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not (
            self.summary
            or self.description
            or self.priority
            or self.duedate
            or self.labels
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
    route_labels: tuple[str, ...] = ()  # policy + route labels (looked up after an ambiguous create)

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


@dataclass(frozen=True)
class RouteSearch:
    """One JQL search (one or more pages) for one route."""

    route: str
    jql: str


@dataclass
class TicketPlan:
    """All actions of one run, worst findings first within each kind."""

    actions: list[PlannedAction] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Actions by kind."""
        return dict(Counter(a.action.value for a in self.actions))


# ---------------------------------------------------------------------------------------------
# Searches


def _q(label: str) -> str:
    return '"' + label.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_searches(
    policy: PolicyRef, jira: JiraSpec, groups: Sequence[Group], *, batch: int = LABELS_PER_SEARCH
) -> list[RouteSearch]:
    """One JQL per route (more when it has over `batch` groups): its open tickets + its groups' labels.

    The default route's open part takes the policy label minus the named routes' labels, so it
    also finds open tickets of routes that were removed from the policy.
    """
    routes = resolve_routes(jira)
    named = [route_label(policy, r.name) for r in routes if r.name != DEFAULT_ROUTE]
    out: list[RouteSearch] = []
    for route in routes:
        if route.name == DEFAULT_ROUTE:
            open_part = f"labels = {_q(policy_label(policy))}"
            if named:
                open_part += f" AND labels not in ({', '.join(_q(n) for n in named)})"
        else:
            open_part = f"labels = {_q(route_label(policy, route.name))}"
        open_part = f"({open_part} AND statusCategory != Done)"
        labels = [dedup_label(dedup_key(policy, route.name, g.group_id)) for g in groups if g.route == route]
        chunks = [labels[i : i + batch] for i in range(0, len(labels), batch)] or [[]]
        for i, chunk in enumerate(chunks):
            parts = [open_part] if i == 0 else []
            if chunk:
                parts.append(f"labels in ({', '.join(_q(lb) for lb in chunk)})")
            out.append(RouteSearch(route.name, " OR ".join(parts) + " ORDER BY created ASC"))
    return out


# ---------------------------------------------------------------------------------------------
# What a group holds this run


def _sev_key(sev: Severity) -> int:
    # Most severe first; UNTRIAGED sorts after INFORMATIONAL.
    return -sev.rank if sev is not Severity.UNTRIAGED else 1


def _worse(a: Severity, b: Severity) -> Severity:
    return a if _sev_key(a) <= _sev_key(b) else b


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
        idents: list[str] = []
        if img in group.known:
            for f in img.findings:
                row = FindingRow(f.vulnerability_id, f.package, f.severity)
                idents.append(row.ident)
                old = by_ident.get(row.ident)
                if old is None or _worse(row.severity, old.severity) is row.severity:
                    by_ident[row.ident] = row
                    details[row.ident] = f
                where.setdefault(row.ident, []).append(img.ref.display)
        else:
            for row in prev.rows_of(slot) if prev else ():
                idents.append(row.ident)
                if row.ident not in by_ident:
                    by_ident[row.ident] = row
                    carried.add(row.ident)
                where.setdefault(row.ident, []).append(img.ref.display)
        per_image[slot] = sorted(set(idents))
        content.append(
            [
                img.ref.raw,
                img.digest or "",
                img in group.known,
                sorted({(u.family, u.container) for u in img.uses}),
                per_image[slot],
            ]
        )
    carried -= set(details)
    rows = tuple(
        sorted(by_ident.values(), key=lambda r: (_sev_key(r.severity), r.vulnerability_id, r.package))
    )
    index = {r.ident: i for i, r in enumerate(rows)}
    slots = {s: tuple(sorted(index[i] for i in ids)) for s, ids in per_image.items()}
    fixes = sorted((k, f.installed_version, f.fixed_version) for k, f in details.items())
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
    )


# ---------------------------------------------------------------------------------------------
# Wiki markup

_WIKI_SPECIAL = re.compile(r"([\\|\[\]{}*_^~+!#])")


def esc(text: str) -> str:
    """Text safe inside Jira wiki markup: special characters escaped, one line."""
    return _WIKI_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def cell(text: str, limit: int = 200) -> str:
    """A table cell: escaped, bounded, never empty."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return esc(text) or " "


def link(text: str, url: str) -> str:
    """`[text|url]`, or the bare text when there is no usable URL."""
    if not url or not re.match(r"^(https?|s3|file)://", url):
        return esc(text)
    safe = quote(url, safe=":/?&=%#@+,;~*'()$!._-")
    return f"[{esc(text)}|{safe}]"


def advisory_url(f: Finding | FindingRow) -> str:
    """Where to read about a vulnerability: the finding's own link, else NVD or GitHub advisories."""
    url = f.url if isinstance(f, Finding) else ""
    vid = f.vulnerability_id
    if url:
        return url
    if vid.upper().startswith("CVE-"):
        return f"https://nvd.nist.gov/vuln/detail/{vid}"
    if vid.upper().startswith("GHSA-"):
        return f"https://github.com/advisories/{vid}"
    return ""


def _counts_text(counts: Mapping[Severity, int]) -> str:
    return ", ".join(f"{n} {s.value}" for s, n in counts.items()) or "no open findings"


def render_summary(group: Group, gf: GroupFindings) -> str:
    """`[ecs-scan] repository: 2 CRITICAL, 3 HIGH`, within Jira's 255 characters."""
    tail = f": {_counts_text(gf.counts())}"
    head = "[ecs-scan] "
    room = SUMMARY_LIMIT - len(head) - len(tail)
    title = group.title if len(group.title) <= room else group.title[: room - 1] + "…"
    return f"{head}{title}{tail}"


@dataclass(frozen=True)
class _Caps:
    rows: int
    images: int
    uses: int


def render_description(
    request: TicketRequest,
    group: Group,
    gf: GroupFindings,
    *,
    note: str | None = None,
    budget: int = TEXT_BUDGET,
) -> str:
    """The ticket description in wiki markup, summarized past `budget` characters."""
    n_uses = sum(len(i.uses) for i in group.images)
    caps = _Caps(rows=len(gf.rows), images=len(group.images), uses=n_uses)
    text = _description(request, group, gf, caps, note)
    # Too long: halve the findings table first (most severe rows stay), then images and uses.
    while len(text) > budget and (caps.rows > 10 or caps.images > 5 or caps.uses > 20):
        if caps.rows > 10:
            caps = replace(caps, rows=max(10, caps.rows // 2))
        else:
            caps = replace(caps, images=max(5, caps.images // 2), uses=max(20, caps.uses // 2))
        text = _description(request, group, gf, caps, note)
    if len(text) > budget:
        # Only pathological inputs get here (huge names); keep the head and say where the rest is.
        pointer = (
            f"\n\n_Description cut at {budget} characters. Full report: {link('index', request.index_link)}_"
        )
        text = text[: budget - len(pointer)] + pointer
    return text


def _description(
    request: TicketRequest, group: Group, gf: GroupFindings, caps: _Caps, note: str | None
) -> str:
    spec = request.spec
    threshold = spec.severity_threshold
    lines: list[str] = []
    where = "image" if len(group.images) == 1 else "images"
    lines.append(
        f"Amazon Inspector / ECR found vulnerabilities at or above *{threshold}* in the container "
        f"{where} of repository {{{{{esc(group.title)}}}}} used by Amazon ECS task definitions."
    )
    lines.append(
        f"Policy {{{{{esc(request.policy.key)}}}}}, route {{{{{esc(group.route.name)}}}}}, "
        f"run {{{{{esc(request.run_id)}}}}} at {request.now.strftime('%Y-%m-%d %H:%M UTC')}."
    )
    if note:
        lines.append(note)
    lines.append("")
    lines.append("h3. What to do")
    lines.append(
        f"# Rebuild {{{{{esc(group.title)}}}}} on a patched base image, or upgrade the packages below "
        "to their fixed versions."
    )
    fams = sorted({u.family for img in group.images for u in img.uses})
    lines.append(
        "# Push the image and roll out a new task-definition revision for "
        + (
            ", ".join(esc(f) for f in fams[:10]) + (" and more" if len(fams) > 10 else "")
            if fams
            else "its users"
        )
        + "."
    )
    lines.append(
        f"# The next scan updates this ticket, and closes it when nothing at or above {threshold} "
        "is left in images Inspector still covers."
    )
    lines.append("")
    lines.append("h3. Images")
    lines.append("||Image||Tag||Digest||Scan||Findings||")
    for img in group.images[: caps.images]:
        slot = image_slot(img.ref.raw)
        n = len(gf.slots.get(slot, ()))
        status = img.status.value if img in group.known else f"{img.status.value} (last known findings kept)"
        digest = img.digest or img.ref.digest or ""
        lines.append(
            f"|{cell(img.ref.repository)}|{cell(img.ref.tag or '')}|{cell(digest)}|{cell(status)}|{n}|"
        )
    if len(group.images) > caps.images:
        lines.append(f"_…and {len(group.images) - caps.images} more images; see the report._")
    lines.append("")
    lines.append("h3. Used by")
    lines.append("||Family||Container||Image||")
    uses = sorted({(u.family, u.container, img.ref.display) for img in group.images for u in img.uses})
    for fam, container, disp in uses[: caps.uses]:
        lines.append(f"|{cell(fam)}|{cell(container)}|{cell(disp)}|")
    if len(uses) > caps.uses:
        lines.append(f"_…and {len(uses) - caps.uses} more; see the report._")
    lines.append("")
    lines.append(f"h3. Findings at or above {threshold} ({len(gf.rows)})")
    if gf.rows:
        lines.append("||ID||Severity||Package||Installed → Fixed||Images||")
        for row in gf.rows[: caps.rows]:
            f = gf.details.get(row.ident)
            fixed = (f.fixed_version if f else "") or ("not yet" if f else "?")
            installed = (f.installed_version if f else "") or "?"
            sev = row.severity.value + (" (last known)" if row.ident in gf.carried else "")
            images = cell(", ".join(gf.where.get(row.ident, ())), 300)
            vid = link(row.vulnerability_id, advisory_url(f or row))
            lines.append(
                f"|{vid}|{cell(sev)}|{cell(row.package or '-')}|{cell(installed)} → {cell(fixed)}|{images}|"
            )
        if len(gf.rows) > caps.rows:
            lines.append(
                f"_Showing the {caps.rows} most severe of {len(gf.rows)} findings; the full list is in the "
                f"report ({link('run index', request.index_link)})._"
            )
    else:
        lines.append("None.")
    lines.append("")
    lines.append("h3. Reports")
    for img in group.images[: caps.images]:
        url = request.report_links.get(img.ref.display, "")
        if url:
            lines.append(f"* Image report {esc(img.ref.display)}: {link('open', url)}")
    if request.index_link:
        lines.append(f"* Run index: {link('index.html', request.index_link)}")
    if request.run_log_link:
        lines.append(f"* Run log: {link('run.log.jsonl', request.run_log_link)}")
    if request.links_expire is not None:
        lines.append(f"_Report links are presigned and expire at {request.links_expire.isoformat()}._")
    lines.append("")
    lines.append(
        "_Filed by ecs-scan-operator. The labels starting with ecsscan- keep this ticket unique: "
        "please keep them._"
    )
    return "\n".join(lines)


def _bounded(lines: Sequence[str]) -> str:
    text = "\n".join(lines)
    if len(text) <= TEXT_BUDGET:
        return text
    return text[: TEXT_BUDGET - 40] + "\n_…cut; see the report._"


def _row_list(rows: Sequence[FindingRow]) -> str:
    shown = [esc(r.label()) for r in rows[:LIST_IN_COMMENT]]
    more = f" and {len(rows) - LIST_IN_COMMENT} more" if len(rows) > LIST_IN_COMMENT else ""
    return ", ".join(shown) + more


def render_change_comment(
    request: TicketRequest, gf: GroupFindings, prev: TicketProperty | None, *, headline: str = ""
) -> str:
    """One comment: new, fixed and re-rated findings since the ticket was last written."""
    before = {r.ident: r for r in prev.findings} if prev else {}
    now = {r.ident: r for r in gf.rows}
    new = [r for k, r in now.items() if k not in before]
    fixed = [r for k, r in before.items() if k not in now]
    rerated = [r for k, r in now.items() if k in before and before[k].severity is not r.severity]
    lines = [headline or f"Scan {esc(request.run_id)} found changes."]
    if new:
        lines.append(f"*New ({len(new)}):* {_row_list(new)}")
    if fixed:
        lines.append(f"*Fixed ({len(fixed)}):* {_row_list(fixed)}")
    if rerated:
        lines.append(f"*Severity changed ({len(rerated)}):* {_row_list(rerated)}")
    if prev is not None and prev.truncated:
        lines.append("_The previous list was too long to keep in full; this comparison is approximate._")
    if not (new or fixed or rerated):
        lines.append("The images or their uses changed; the description is up to date.")
    lines.append(f"Now: {_counts_text(gf.counts())}. Report: {link('run index', request.index_link)}")
    return _bounded(lines)


# ---------------------------------------------------------------------------------------------
# The plan


def _choose(tickets: Sequence[ExistingTicket]) -> tuple[ExistingTicket | None, list[ExistingTicket]]:
    """The ticket that tracks a group (oldest open, else newest) and any extra open duplicates."""

    def created(t: ExistingTicket) -> tuple[datetime, int, str]:
        num = re.sub(r"\D", "", t.key.rsplit("-", 1)[-1]) or "0"
        return (t.created or datetime.min, int(num), t.key)

    open_ = sorted((t for t in tickets if not t.done), key=created)
    if open_:
        return open_[0], open_[1:]
    done = sorted(tickets, key=created)
    return (done[-1] if done else None), []


@dataclass
class _Ctx:
    request: TicketRequest
    jira: JiraSpec
    workflow: JiraWorkflow
    actions: list[PlannedAction] = field(default_factory=list)


def _priority(jira: JiraSpec, gf: GroupFindings) -> str | None:
    return jira.priority_map.get(gf.worst) if gf.worst is not None else None


def _due(jira: JiraSpec, gf: GroupFindings, now: datetime) -> date | None:
    if gf.worst is None or gf.worst not in jira.due_days:
        return None
    return now.date() + timedelta(days=jira.due_days[gf.worst])


def _prop(
    ctx: _Ctx, group: Group, gf: GroupFindings, *, priority: str | None, **extra: object
) -> TicketProperty:
    key = dedup_key(ctx.request.policy, group.route.name, group.group_id)
    base = TicketProperty(
        key=key,
        route=group.route.name,
        group=group.group_id,
        fp=gf.fp,
        content=gf.content,
        findings=gf.rows,
        images=dict(gf.slots),
        monitored=not gf.none_known,
        priority=priority,
        run_id=ctx.request.run_id,
    )
    return base.evolve(**extra) if extra else base


def _machine_labels(policy: PolicyRef, group: Group) -> tuple[str, ...]:
    key = dedup_key(policy, group.route.name, group.group_id)
    return (dedup_label(key), route_label(policy, group.route.name), policy_label(policy))


def _base(ctx: _Ctx, group: Group, gf: GroupFindings | None, action: Action, reason: str) -> PlannedAction:
    policy = ctx.request.policy
    return PlannedAction(
        action=action,
        reason=reason,
        route=group.route.name,
        group=group.group_id,
        label=dedup_label(dedup_key(policy, group.route.name, group.group_id)),
        project=group.route.project,
        issue_type=ctx.jira.issue_type,
        severity=gf.worst.rank if gf is not None and gf.worst is not None else -1,
        route_labels=(policy_label(policy), route_label(policy, group.route.name)),
    )


def _create(
    ctx: _Ctx,
    group: Group,
    gf: GroupFindings,
    reason: str,
    *,
    action: Action = Action.CREATE,
    link_to: str | None = None,
    note: str | None = None,
) -> PlannedAction:
    priority = _priority(ctx.jira, gf)
    labels = tuple(dict.fromkeys([*group.route.labels, *_machine_labels(ctx.request.policy, group)]))
    return replace(
        _base(ctx, group, gf, action, reason),
        link_to=link_to,
        fields=TicketFields(
            summary=render_summary(group, gf),
            description=render_description(ctx.request, group, gf, note=note),
            priority=priority,
            duedate=_due(ctx.jira, gf, ctx.request.now),
            labels=labels,
            components=group.route.components,
            assignee=group.route.assignee,
        ),
        prop=_prop(ctx, group, gf, priority=priority),
    )


def _with(planned: PlannedAction, /, **changes: Any) -> PlannedAction:
    return replace(planned, **changes)


def _update_fields(
    ctx: _Ctx, group: Group, gf: GroupFindings, ticket: ExistingTicket, *, describe: bool
) -> TicketFields:
    prev = ticket.prop
    priority = _priority(ctx.jira, gf)
    due = _due(ctx.jira, gf, ctx.request.now)
    missing = tuple(lb for lb in _machine_labels(ctx.request.policy, group) if lb not in ticket.labels)
    return TicketFields(
        summary=render_summary(group, gf) if describe else None,
        description=render_description(ctx.request, group, gf) if describe else None,
        # Only what the tool itself last set is changed, so a person's choice is kept.
        priority=priority if priority and (prev is None or prev.priority != priority) else None,
        # SLA dates only ever get earlier (a worse finding arrived), never later.
        duedate=due if due and (ticket.duedate is None or due < ticket.duedate) else None,
        labels=missing,
    )


def _plan_group(
    ctx: _Ctx,
    group: Group,
    tickets: Sequence[ExistingTicket],
    moved_from: ExistingTicket | None,
) -> PlannedAction | None:
    wf = ctx.workflow
    current, dupes = _choose(tickets)
    prev = current.prop if current else None
    # A done ticket's property still lists the findings from before it was closed (closing does
    # not rewrite it); those were fixed, so they are not carried over for unscanned images.
    carry = prev if current is None or not current.done else None
    if current is None and moved_from is not None:
        carry = moved_from.prop  # the same images: their last known findings move along
    gf = evaluate_group(group, carry)
    for d in dupes:
        ctx.actions.append(
            _with(
                _base(
                    ctx,
                    group,
                    gf,
                    Action.DUPLICATE,
                    f"another open ticket {current.key if current else ''} "
                    "tracks this group; left for a person to close",
                ),
                ticket=d.key,
            )
        )
    if current is None:
        if not gf.rows:
            return None  # nothing to say and nobody to tell
        if moved_from is not None:
            old_route = moved_from.prop.route if moved_from.prop else "?"
            return _create(
                ctx,
                group,
                gf,
                f"routing moved the group from route {old_route} ({moved_from.key})",
                link_to=moved_from.key,
                note=f"Routing changed: this group was tracked in {esc(moved_from.key)} "
                f"(route {esc(old_route)}).",
            )
        return _create(ctx, group, gf, "new findings")

    base = _with(_base(ctx, group, gf, Action.UNCHANGED, ""), ticket=current.key)
    if current.done:
        if not wf.is_fixed_resolution(current.resolution) or wf.is_wont_do_status(current.status):
            why = current.resolution or current.status
            if gf.rows:
                return _with(
                    base, action=Action.SKIP_WONTDO, reason=f"closed as {why} by a person; not reopened"
                )
            return _with(base, reason=f"closed as {why}")
        if not gf.rows:
            return _with(base, reason="done and still no findings")
        if gf.none_known:
            return _with(base, reason="done; its images are not monitored now")
        resolved = current.resolved or current.created
        window = timedelta(days=ctx.jira.reopen_within_days)
        if resolved is not None and ctx.request.now - resolved <= window and ctx.jira.reopen_within_days > 0:
            fields = _update_fields(ctx, group, gf, current, describe=True)
            same = prev is not None and prev.fp == gf.fp and prev.content == gf.content
            priority = _priority(ctx.jira, gf)
            return _with(
                base,
                action=Action.REOPEN,
                reason=f"findings back within {ctx.jira.reopen_within_days} days of the fix",
                transition="reopen",
                comment=render_change_comment(
                    ctx.request,
                    gf,
                    prev,
                    headline=f"Scan {esc(ctx.request.run_id)}: findings are back; reopening.",
                ),
                # After a reopen the text is rewritten only when it is out of date.
                fields=TicketFields(priority=fields.priority, duedate=fields.duedate, labels=fields.labels)
                if same
                else fields,
                prop=None
                if same
                else _prop(ctx, group, gf, priority=priority or (prev.priority if prev else None)),
            )
        return _create(
            ctx,
            group,
            gf,
            f"findings back more than {ctx.jira.reopen_within_days} days after {current.key} was resolved",
            action=Action.NEW_LINKED,
            link_to=current.key,
            note=f"Follows up {esc(current.key)}, resolved earlier: the findings came back.",
        )

    # Open ticket.
    if wf.is_wont_do_status(current.status):
        return _with(base, action=Action.SKIP_WONTDO, reason=f"status {current.status} set by a person")
    if any(i.status is ImageStatus.FAILED for i in group.images):
        # A scan that errored says nothing about the image: no note, no rewrite, no close. (A
        # passing outage would otherwise cost every ticket two comments.)
        return _with(base, reason="a scan failed this run; ticket left as it was")
    if gf.none_known:
        if prev is None or prev.monitored:
            return _with(
                base,
                action=Action.UPDATE,
                reason="images no longer monitored; kept open with the last known findings",
                comment=(
                    f"Scan {esc(ctx.request.run_id)}: none of the images could be scanned this run ("
                    + ", ".join(sorted({esc(i.status.value) for i in group.images}))
                    + "). This is not a fix: the ticket stays open with the last known findings."
                ),
                prop=(prev or _prop(ctx, group, gf, priority=None)).evolve(
                    monitored=False, run_id=ctx.request.run_id
                ),
            )
        return _with(base, reason="images not monitored; last known findings kept")
    if not gf.rows:
        if not gf.all_known:
            return _with(base, reason="no findings in scanned images, but some images are not monitored")
        fixed_list = _row_list(prev.findings) if prev and prev.findings else "all"
        if ctx.jira.close_when_fixed:
            return _with(
                base,
                action=Action.CLOSE,
                reason="all findings fixed",
                transition="close",
                resolution=wf.close_resolution,
                comment=(
                    f"Scan {esc(ctx.request.run_id)}: no finding at or above "
                    f"{ctx.request.spec.severity_threshold} is left in the scanned images. "
                    f"Fixed: {fixed_list}. Closing."
                ),
            )
        if prev is not None and prev.fp == gf.fp:
            return _with(base, reason="all fixed; closeWhenFixed is off")
        return _with(
            base,
            action=Action.UPDATE,
            reason="all findings fixed (closeWhenFixed is off)",
            comment=render_change_comment(
                ctx.request, gf, prev, headline=f"Scan {esc(ctx.request.run_id)}: all findings are fixed."
            ),
            fields=_update_fields(ctx, group, gf, current, describe=True),
            prop=_prop(ctx, group, gf, priority=prev.priority if prev else None),
        )
    if prev is not None and prev.fp == gf.fp and prev.content == gf.content and prev.monitored:
        missing = tuple(lb for lb in _machine_labels(ctx.request.policy, group) if lb not in current.labels)
        if not missing:
            return _with(base, reason="no change")
        return _with(
            base, action=Action.UPDATE, reason="restoring its labels", fields=TicketFields(labels=missing)
        )
    fields = _update_fields(ctx, group, gf, current, describe=True)
    priority = fields.priority or (prev.priority if prev else None)
    comment: str | None
    if prev is None:
        comment = (
            f"Scan {esc(ctx.request.run_id)}: ecs-scan-operator took over this ticket; description rewritten."
        )
        reason = "no ecsscan property; rewriting"
    elif prev.fp == gf.fp:
        comment = (
            None if prev.monitored else f"Scan {esc(ctx.request.run_id)}: the images are monitored again."
        )
        reason = "images or uses changed" if prev.monitored else "monitored again"
    else:
        comment = render_change_comment(ctx.request, gf, prev)
        reason = "findings changed"
    return _with(
        base,
        action=Action.UPDATE,
        reason=reason,
        comment=comment,
        fields=fields,
        prop=_prop(ctx, group, gf, priority=priority),
    )


def _plan_orphan(
    ctx: _Ctx,
    ticket: ExistingTicket,
    target: tuple[Group, PlannedAction | None, ExistingTicket | None] | None,
) -> PlannedAction:
    """An open ticket whose group is not (or no longer) in its route."""
    prop = ticket.prop
    route = prop.route if prop else "?"
    group = prop.group if prop else "?"
    base = PlannedAction(
        action=Action.UNCHANGED,
        reason="",
        route=route,
        group=group,
        label=next((lb for lb in ticket.labels if re.fullmatch(r"ecsscan-[0-9a-f]{16}", lb)), ""),
        project=ticket.project,
        issue_type=ctx.jira.issue_type,
        ticket=ticket.key,
    )
    if prop is None:
        return _with(base, reason="no ecsscan property; left alone")
    if ctx.workflow.is_wont_do_status(ticket.status):
        return _with(base, action=Action.SKIP_WONTDO, reason=f"status {ticket.status} set by a person")
    run = esc(ctx.request.run_id)
    if target is not None:
        tgroup, taction, tticket = target
        where = f"route {esc(tgroup.route.name)} (project {esc(tgroup.route.project)})"
        if tticket is not None and not tticket.done:
            return _with(
                base,
                action=Action.CLOSE,
                reason=f"routing changed; now tracked in {tticket.key}",
                transition="close",
                resolution=ctx.workflow.moved_resolution,
                comment=f"Scan {run}: routing changed; this group is now tracked in {esc(tticket.key)} "
                f"under {where}.",
            )
        if taction is not None and taction.action in (Action.CREATE, Action.NEW_LINKED, Action.REOPEN):
            return _with(
                base,
                action=Action.CLOSE,
                reason=f"routing changed; moved to {where}",
                transition="close",
                resolution=ctx.workflow.moved_resolution,
                depends_on=taction.label if taction.action is not Action.REOPEN else None,
                comment=(
                    f"Scan {run}: routing changed; this group is now tracked under {where}, in the ticket "
                    "linked to this one."
                ),
            )
        if taction is not None and taction.action is Action.DEFERRED:
            return _with(base, reason="its new route could not be searched this run")
        gf = evaluate_group(tgroup, prop)
        if gf.all_known and not gf.rows and ctx.jira.close_when_fixed:
            return _with(
                base,
                action=Action.CLOSE,
                reason="all findings fixed (routing changed too)",
                transition="close",
                resolution=ctx.workflow.close_resolution,
                comment=f"Scan {run}: no finding is left in the scanned images. Closing.",
            )
        return _with(base, reason="routing changed; the new route has nothing to file yet")
    if not ctx.request.inventory_complete:
        return _with(base, reason="not in this run, but the task-definition listing was incomplete")
    if ctx.jira.close_when_fixed:
        return _with(
            base,
            action=Action.CLOSE,
            reason="no selected task definition uses the image any more",
            transition="close",
            resolution=ctx.workflow.moved_resolution,
            comment=f"Scan {run}: no task definition selected by the policy uses these images any more. "
            "Closing.",
        )
    if prop.state == TicketState.RETIRED:
        return _with(base, reason="no longer deployed (closeWhenFixed is off)")
    return _with(
        base,
        action=Action.UPDATE,
        reason="no longer deployed (closeWhenFixed is off)",
        comment=f"Scan {run}: no task definition selected by the policy uses these images any more.",
        prop=prop.evolve(state=TicketState.RETIRED, run_id=ctx.request.run_id),
    )


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


def plan_tickets(
    request: TicketRequest,
    existing: Iterable[ExistingTicket],
    *,
    failed_routes: Iterable[str] = (),
    workflow: JiraWorkflow | None = None,
    groups: Sequence[Group] | None = None,
) -> TicketPlan:
    """Decide every ticket's action; creates first (they may be linked to), worst findings first."""
    jira = request.spec.jira
    if jira is None:
        return TicketPlan()
    ctx = _Ctx(request=request, jira=jira, workflow=workflow or JiraWorkflow())
    groups = list(groups) if groups is not None else group_images(request.images, jira)
    failed = set(failed_routes)
    tickets = {t.key: t for t in existing}  # a ticket found by two searches counts once
    by_label: dict[str, list[ExistingTicket]] = {}
    for t in tickets.values():
        for lb in t.labels:
            by_label.setdefault(lb, []).append(t)
    desired = {dedup_label(dedup_key(request.policy, g.route.name, g.group_id)): g for g in groups}
    by_key = {dedup_key(request.policy, g.route.name, g.group_id): lb for lb, g in desired.items()}
    claimed: set[str] = set()
    for t in tickets.values():
        # A person removed the dedup label but the route label found it, and the property says
        # whose it is: it still tracks its group (and gets the label back), rather than a new one.
        owner = by_key.get(t.prop.key) if t.prop is not None else None
        if owner is not None and owner not in t.labels and not t.done:
            by_label.setdefault(owner, []).append(t)
            claimed.add(t.key)

    # Open tickets that no desired group claims: their group moved to another route, or left.
    orphans = [
        t
        for t in sorted(tickets.values(), key=lambda t: t.key)
        if not t.done and t.key not in claimed and not any(lb in desired for lb in t.labels)
    ]
    by_group_id: dict[str, list[Group]] = {}
    for g in groups:
        by_group_id.setdefault(g.group_id, []).append(g)
    moved_to: dict[str, Group] = {}  # orphan key -> the group that now covers it
    moved_from: dict[str, ExistingTicket] = {}  # dedup label -> orphan it replaces
    for o in orphans:
        if o.prop is None:
            continue
        candidates = [g for g in by_group_id.get(o.prop.group, []) if g.route.name != o.prop.route]
        if candidates:
            moved_to[o.key] = candidates[0]
            lb = dedup_label(dedup_key(request.policy, candidates[0].route.name, candidates[0].group_id))
            moved_from.setdefault(lb, o)

    planned: dict[str, PlannedAction | None] = {}
    for label, g in desired.items():
        if g.route.name in failed:
            act: PlannedAction | None = _base(
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
            tl = dedup_label(dedup_key(request.policy, tg.route.name, tg.group_id))
            current, _ = _choose(by_label.get(tl, []))
            taction = planned.get(tl)
            tticket = current if taction is None or taction.action not in (Action.REOPEN,) else None
            target = (tg, taction, tticket)
        ctx.actions.append(_plan_orphan(ctx, o, target))

    ctx.actions.sort(key=lambda a: (_ORDER[a.action], -a.severity, a.route, a.group, a.ticket or ""))
    return TicketPlan(actions=ctx.actions)
