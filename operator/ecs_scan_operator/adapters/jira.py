"""Jira adapter: the TicketSink that keeps one ticket per (route, group) in step, never twice.

The HTTP side is `jira_transport.JiraTransport` (auth, checked destination, bounded waits, the
one retry loop) and the reading of answers is `jira_wire`; this module plans against the tickets
found by label and carries the plan out:
- the create carries the dedup label AND the `ecsscan` issue property in the same POST body
  (`properties` in IssueUpdateDetails), so a ticket never exists without what identifies it;
- a create is never retried blindly: a POST whose answer is lost may have filed the issue (the
  `jira` client's ResilientSession retried such POSTs and filed issues twice, pycontribs/jira#1484),
  so the transport repeats it only after a 429 (refused before any work), and after an ambiguous
  failure the dedup label is searched before anything else; a create whose outcome stays unknown
  is left to the next run, which finds it by label;
- every outcome is typed (`ActionResult`), and a failure that makes further work pointless
  (refused credentials, a spent budget, a refused destination, a too slow or too large answer)
  stops the stage with a condition reason; the next run starts over from the label search;
- messages never carry the credentials (the transport scrubs them).

Search: on Cloud `GET /rest/api/2/search/jql` with `nextPageToken` (the v2 twin of the enhanced
`/rest/api/3/search/jql`); on Data Center `GET /rest/api/2/search` with `startAt`. The issue
property comes back inline (`properties=ecsscan`), so a steady-state run costs serverInfo plus
one search page per route and nothing else. Text is wiki markup on REST v2, which Cloud and
Data Center both accept.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import SecretStr

from ecs_scan_operator.adapters.jira_credentials import JiraCredentials
from ecs_scan_operator.adapters.jira_transport import (
    JiraTransport,
    OutcomeUnknown,
    RequestKind,
    Resolver,
    TransportLimits,
    stop_reason,
    system_resolver,
)
from ecs_scan_operator.adapters.jira_wire import (
    UnexpectedAnswer,
    parse_created_key,
    parse_search_page,
    parse_transitions,
    pick_resolution,
    pick_transition,
)
from ecs_scan_operator.core.destinations import AllowList
from ecs_scan_operator.core.policy import JiraSpec, PolicySpec
from ecs_scan_operator.core.result import clip
from ecs_scan_operator.core.tickets import (
    PROPERTY_KEY,
    Action,
    ExistingTicket,
    JiraWorkflow,
    PlannedAction,
    TicketFields,
    TicketPlan,
    TicketReport,
    TicketRequest,
    build_searches,
    group_images,
    plan_tickets,
)
from ecs_scan_operator.errors import PermanentError, ScanError

__all__ = [
    "ActionOutcome",
    "ActionResult",
    "JiraCredentials",
    "JiraSinkOptions",
    "JiraTicketSink",
    "PlanOnlyTicketSink",
    "TransportLimits",
    "build_ticket_sink",
]

log = logging.getLogger(__name__)

SEARCH_FIELDS = (
    "summary",
    "status",
    "resolution",
    "resolutiondate",
    "created",
    "labels",
    "duedate",
    "project",
)
MAX_ERRORS = 20
WRITE = RequestKind.WRITE


@dataclass(frozen=True)
class JiraSinkOptions:
    """Knobs of the adapter (defaults suit a daily run against Jira Cloud); HTTP limits in `limits`."""

    limits: TransportLimits = field(default_factory=TransportLimits)
    page_size: int = 100
    labels_per_search: int = 100  # one page per batch; GET URLs stay under ~4 kB
    properties_on_edit: bool = True  # send the property inside the edit (atomic); else a separate PUT
    workflow: JiraWorkflow = field(default_factory=JiraWorkflow)


class ActionResult(StrEnum):
    """What became of one writing action (the report's `result`)."""

    DONE = "done"
    FAILED = "failed"  # Jira refused it; the error says why
    UNKNOWN = "unknown"  # a create whose outcome could not be learnt; the next run looks by label
    DEFERRED = "deferred"  # it waits for another action (a close waiting for its successor)


@dataclass(frozen=True)
class ActionOutcome:
    """The result of one action and, for a create, the key of the new ticket."""

    result: ActionResult
    ticket: str | None = None


@dataclass
class _Run:
    """Findings of one sync."""

    errors: list[str] = field(default_factory=list)
    errors_total: int = 0
    stopped: str = ""  # why the remaining work was abandoned (condition reason)

    def error(self, message: str) -> None:
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(clip(message))


def _allow_list_from_settings() -> AllowList:
    from ecs_scan_operator.settings import load_settings

    return load_settings().jira_allow_list


class JiraTicketSink:
    """TicketSink backed by Jira Cloud or Data Center (detected through serverInfo)."""

    def __init__(
        self,
        url: str,
        credentials: JiraCredentials,
        *,
        options: JiraSinkOptions | None = None,
        allow: AllowList | None = None,
        enforce_destination: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        resolver: Resolver = system_resolver,
        plan_only: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.options = options or JiraSinkOptions()
        self._transport = JiraTransport(
            self.url,
            credentials,
            limits=self.options.limits,
            # None: the operator setting ECS_SCAN_JIRA_ALLOWED_HOSTS decides; a grant may add hosts.
            allow=(allow if allow is not None else _allow_list_from_settings()).extended(
                credentials.allowed_hosts
            ),
            enforce_destination=enforce_destination,
            sleep=sleep,
            rng=rng,
            resolver=resolver,
        )
        self._plan_only = plan_only
        self._run = _Run()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    def close(self) -> None:
        """Close the HTTP session (the next sync reconnects)."""
        self._transport.close()

    @property
    def cloud(self) -> bool:
        """True on Jira Cloud (serverInfo.deploymentType == Cloud)."""
        return self._transport.cloud

    # -- the port ---------------------------------------------------------------------------

    def sync(self, request: TicketRequest) -> TicketReport:
        """Plan against the tickets found by label, then carry the plan out (reads only in a dry run)."""
        self._run = run = _Run()
        self._transport.begin_stage()
        jira = request.spec.jira
        if jira is None:
            return TicketReport(reason="NotConfigured")
        dry = request.dry_run or self._plan_only
        groups = group_images(request.images, jira)
        plan = TicketPlan()
        outcomes: dict[int, ActionOutcome] = {}  # filled as actions complete; an abort keeps them
        try:
            existing, failed = self._find(request, jira, groups)
            plan = plan_tickets(
                request,
                existing,
                failed_routes=failed,
                workflow=self.options.workflow,
                groups=groups,
                # Each description rendered as its write is sent: a large first run plans a
                # thousand creates, and their texts would all be held at once (tens of MiB).
                defer_text=True,
            )
            for r in sorted(failed):
                run.error(f"route {r}: search failed; its tickets wait for the next run")
            if not dry:
                self._execute(plan, existing, outcomes)
        except UnexpectedAnswer as exc:
            # A proxy's HTML page, another API version: stop rather than guess; the next run
            # starts over from the label search.
            run.stopped = "JiraUnavailable"
            run.error(f"unexpected answer from Jira: {self._scrub(str(exc))}")
        except ScanError as exc:
            run.stopped = stop_reason(exc) or "JiraUnavailable"
            run.error(self._scrub(str(exc)))
        return self._report(plan, outcomes, dry)

    def _scrub(self, text: str) -> str:
        return self._transport.scrub(text)

    # -- reading ----------------------------------------------------------------------------

    def _find(
        self, request: TicketRequest, jira: JiraSpec, groups: Any
    ) -> tuple[list[ExistingTicket], set[str]]:
        existing: list[ExistingTicket] = []
        failed: set[str] = set()
        self._transport.connect()  # first: a refused or dead site fails the stage, not each route
        for search in build_searches(request.policy, jira, groups, batch=self.options.labels_per_search):
            if search.route in failed:
                continue
            try:
                existing.extend(self._search(search.jql))
            except ScanError as exc:
                if stop_reason(exc):
                    raise
                log.warning("jira: search for route %s failed: %s", search.route, self._scrub(str(exc)))
                failed.add(search.route)
        return existing, failed

    def _search(self, jql: str) -> list[ExistingTicket]:
        """Every page of one JQL search, as ExistingTickets (property included)."""
        params: dict[str, Any] = {
            "jql": jql,
            "fields": list(SEARCH_FIELDS),
            "properties": PROPERTY_KEY,
            "maxResults": self.options.page_size,
        }
        out: list[ExistingTicket] = []
        if self.cloud:
            token: str | None = None
            while True:
                page = parse_search_page(
                    self._transport.call(
                        "GET",
                        "search/jql",
                        idempotent=True,
                        params={**params, **({"nextPageToken": token} if token else {})},
                        kind=RequestKind.SEARCH,
                    )
                )
                out.extend(page.tickets)
                if not page.more:
                    break
                token = page.next_page_token
        else:
            start = 0
            while True:
                page = parse_search_page(
                    self._transport.call(
                        "GET",
                        "search",
                        idempotent=True,
                        params={**params, "startAt": start},
                        kind=RequestKind.SEARCH,
                    )
                )
                out.extend(page.tickets)
                start += len(page.tickets)
                if not page.tickets or start >= (page.total or 0):
                    break
        return out

    # -- writing ----------------------------------------------------------------------------

    def _execute(
        self, plan: TicketPlan, existing: list[ExistingTicket], outcomes: dict[int, ActionOutcome]
    ) -> None:
        """Carry out the writing actions in order, recording each outcome in `outcomes` (by index)."""
        tickets = {t.key: t for t in existing}
        created: dict[str, str] = {}  # dedup label -> key of the ticket created this run
        transitions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for i, action in enumerate(plan.actions):
            if not action.writes:
                continue
            if action.depends_on and action.depends_on not in created:
                outcomes[i] = ActionOutcome(ActionResult.DEFERRED)
                self._run.error(f"{action.ticket}: close waits until the ticket it moves to exists")
                continue
            try:
                outcomes[i] = self._carry_out(action, tickets.get(action.ticket or ""), transitions)
            except ScanError as exc:
                if stop_reason(exc):
                    raise
                outcomes[i] = ActionOutcome(ActionResult.FAILED)
                self._run.error(
                    f"{action.action.value} {action.ticket or action.label}: {self._scrub(str(exc))}"
                )
                continue
            if outcomes[i].ticket:
                created[action.label] = outcomes[i].ticket or ""
            if outcomes[i].result is ActionResult.DONE:
                key = action.ticket or outcomes[i].ticket
                log.info("jira: %s %s (%s)", action.action.value, key, action.reason)

    def _carry_out(
        self,
        action: PlannedAction,
        ticket: ExistingTicket | None,
        transitions: dict[tuple[str, str], list[dict[str, Any]]],
    ) -> ActionOutcome:
        """One writing action; raise ScanError when Jira refuses it."""
        if action.action in (Action.CREATE, Action.NEW_LINKED):
            key = self._create(action)
            if key is None:
                return ActionOutcome(ActionResult.UNKNOWN)
            return ActionOutcome(ActionResult.DONE, key)
        if action.action is Action.UPDATE:
            self._edit(action)
        elif action.action is Action.CLOSE:
            self._transition(action, ticket, "close", transitions)
        elif action.action is Action.REOPEN:
            self._transition(action, ticket, "reopen", transitions)
            if not action.fields.empty or action.prop is not None:
                self._edit(action, with_comment=False)
        return ActionOutcome(ActionResult.DONE)

    def _fields_json(self, fields: TicketFields, action: PlannedAction, *, create: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if create:
            out["project"] = {"key": action.project}
            out["issuetype"] = {"name": action.issue_type}
            out["labels"] = list(fields.labels)
            if fields.components:
                out["components"] = [{"name": c} for c in fields.components]
            if fields.assignee:
                # Cloud names people by accountId, Data Center by user name.
                out["assignee"] = {"accountId": fields.assignee} if self.cloud else {"name": fields.assignee}
        if fields.summary is not None:
            out["summary"] = fields.summary
        text = fields.text()
        if text is not None:
            out["description"] = text
        if fields.priority:
            out["priority"] = {"name": fields.priority}
        if fields.duedate:
            out["duedate"] = fields.duedate.isoformat()
        return out

    def _create(self, action: PlannedAction) -> str | None:
        """POST /issue with labels and property together; None when the outcome stays unknown.

        Never retried blindly: a create whose answer is lost (5xx, a dropped connection, no key
        in the answer) may have filed the issue, and a second POST would file it twice. So the
        transport repeats a create only after a 429, which Jira sends before doing any work;
        after an ambiguous failure the dedup label is searched first, and a ticket found there
        is the one this create made. When it is not visible (yet), nothing more is tried: the
        next run's label search finds it, or creates it then.
        """
        assert action.prop is not None
        body: dict[str, Any] = {
            "fields": self._fields_json(action.fields, action, create=True),
            "properties": [{"key": PROPERTY_KEY, "value": action.prop.to_json()}],
        }
        if action.link_to:
            body["update"] = {
                "issuelinks": [
                    {
                        "add": {
                            "type": {"name": self.options.workflow.link_type},
                            "outwardIssue": {"key": action.link_to},
                        }
                    }
                ]
            }
        try:
            answer = self._transport.call(
                "POST", "issue", idempotent=False, body=body, kind=RequestKind.WRITE
            )
            key = parse_created_key(answer)
            if key is None:
                raise OutcomeUnknown("POST /rest/api/2/issue: the answer names no issue key")
            return key
        except OutcomeUnknown as exc:
            # The issue may exist although we never heard back: look for it by label first.
            log.warning("jira: create of %s ended ambiguously (%s); searching its label", action.label, exc)
            hits = [
                t
                for t in self._search(
                    f'labels = "{action.label}" AND statusCategory != Done ORDER BY created ASC'
                )
                if not t.done
            ]
            if hits:
                log.info("jira: the lost create of %s did happen: %s", action.label, hits[0].key)
                return hits[0].key
            # Not visible (yet): search results can lag right after a create on Cloud, so a second
            # create now could duplicate it. The next run looks again and creates only if absent.
            self._run.error(
                f"create {action.label}: outcome unknown ({exc}); the next run checks its label first"
            )
            return None

    def _edit(self, action: PlannedAction, *, with_comment: bool = True) -> None:
        fields = self._fields_json(action.fields, action, create=False)
        update: dict[str, Any] = {}
        if action.fields.labels or action.fields.remove_labels:
            update["labels"] = [{"add": lb} for lb in action.fields.labels] + [
                {"remove": lb} for lb in action.fields.remove_labels
            ]
        comment = action.comment if with_comment else None
        if comment:
            update["comment"] = [{"add": {"body": comment}}]
        body: dict[str, Any] = {}
        if fields:
            body["fields"] = fields
        if update:
            body["update"] = update
        prop = action.prop.to_json() if action.prop is not None else None
        if prop is not None and self.options.properties_on_edit:
            # In the same request as the comment: the property then says exactly what was told.
            body["properties"] = [{"key": PROPERTY_KEY, "value": prop}]
        if body:
            # An edit that adds a comment is not idempotent: it is not retried after a lost answer.
            self._transport.call(
                "PUT",
                f"issue/{action.ticket}",
                idempotent=comment is None,
                params={"notifyUsers": "true"},
                body=body,
                kind=RequestKind.WRITE,
            )
        if prop is not None and not self.options.properties_on_edit:
            self._transport.call(
                "PUT",
                f"issue/{action.ticket}/properties/{PROPERTY_KEY}",
                idempotent=True,
                body=prop,
                kind=RequestKind.WRITE,
            )

    def _transition(
        self,
        action: PlannedAction,
        ticket: ExistingTicket | None,
        which: str,
        cache: dict[tuple[str, str], list[dict[str, Any]]],
    ) -> None:
        key = action.ticket or ""
        cache_key = (ticket.project if ticket else action.project, ticket.status if ticket else "?")
        if cache_key not in cache:
            got = self._transport.call(
                "GET", f"issue/{key}/transitions", idempotent=True, params={"expand": "transitions.fields"}
            )
            cache[cache_key] = parse_transitions(got)
        chosen = pick_transition(cache[cache_key], which, self.options.workflow)
        if chosen is None:
            target = "Done" if which == "close" else "an open status"
            raise PermanentError(f"{key}: the workflow offers no transition to {target}")
        body: dict[str, Any] = {"transition": {"id": str(chosen["id"])}}
        if which == "close":
            resolution = pick_resolution(chosen, action.resolution, self.options.workflow)
            if resolution:
                body["fields"] = {"resolution": {"name": resolution}}
        if action.comment and (which == "close" or action.action is Action.REOPEN):
            body["update"] = {"comment": [{"add": {"body": action.comment}}]}
        # Not idempotent (it carries a comment, and a repeated transition may be refused): no retry.
        self._transport.call(
            "POST", f"issue/{key}/transitions", idempotent=False, body=body, kind=RequestKind.WRITE
        )

    # -- the report -------------------------------------------------------------------------

    def _report(self, plan: TicketPlan, outcomes: Mapping[int, ActionOutcome], dry: bool) -> TicketReport:
        run = self._run
        counts: dict[str, int] = {}
        planned: list[dict[str, str]] = []
        for i, action in enumerate(plan.actions):
            entry = action.summary()
            outcome = outcomes.get(i)
            name = action.action.value
            if dry:
                entry["result"] = "planned"
            elif not action.writes:
                entry["result"] = "none"
            elif outcome is None:
                entry["result"] = "not-attempted"
                name = "deferred"
            elif outcome.result is ActionResult.DONE:
                entry["result"] = outcome.result.value
                if outcome.ticket:
                    entry["ticket"] = outcome.ticket
            else:
                entry["result"] = outcome.result.value
                name = "failed" if outcome.result is ActionResult.FAILED else "deferred"
            counts[name] = counts.get(name, 0) + 1
            planned.append(entry)
        pending = not dry and any(
            action.writes and (outcomes.get(i) is None or outcomes[i].result is not ActionResult.DONE)
            for i, action in enumerate(plan.actions)
        )
        deferred_routes = any(a.action is Action.DEFERRED for a in plan.actions)
        # A dry run is "synced" when the plan is complete; a real run when all of it was carried out.
        synced = not (run.stopped or run.errors_total or deferred_routes or pending)
        if run.stopped:
            reason = run.stopped
        elif dry:
            reason = "DryRun"
        elif not synced:
            reason = "PartialFailure"
        else:
            reason = "Synced"
        counters = self._transport.counters
        return TicketReport(
            actions=counts,
            planned=planned,
            errors=list(run.errors),
            requests=counters.requests,
            synced=synced,
            reason=reason,
            searches=counters.searches,
            writes=counters.writes,
        )


class PlanOnlyTicketSink(JiraTicketSink):
    """A dry-run sink: reads Jira (serverInfo, label searches) and reports the plan; never writes."""

    def __init__(self, url: str, credentials: JiraCredentials, **kwargs: Any) -> None:
        kwargs["plan_only"] = True
        super().__init__(url, credentials, **kwargs)


def build_ticket_sink(
    spec: PolicySpec,
    credentials: JiraCredentials | Mapping[str, str | bytes | SecretStr],
    *,
    allowed_hosts: Sequence[str] | None = None,
    enforce_destination: bool = True,
) -> JiraTicketSink | None:
    """The sink for a policy (the composition root's hook); None when the policy has no Jira.

    `allowed_hosts` None reads the operator setting ECS_SCAN_JIRA_ALLOWED_HOSTS;
    `enforce_destination` False (the CLI) only warns about a refused destination.
    """
    if spec.jira is None:
        return None
    if isinstance(credentials, JiraCredentials):
        creds = credentials
    else:
        creds = JiraCredentials.from_mapping(credentials)
    sink_cls = PlanOnlyTicketSink if spec.dry_run else JiraTicketSink
    allow = AllowList.parse(allowed_hosts) if allowed_hosts is not None else None
    return sink_cls(spec.jira.url, creds, allow=allow, enforce_destination=enforce_destination)
