"""Jira adapter: the TicketSink that keeps one ticket per (route, group) in step, never twice.

It uses the PyPI `jira` client for what it does well (server detection through serverInfo, the
auth session: HTTP Basic email + API token on Cloud, PAT bearer on Data Center, URL building)
and sends every request through one method of its own, for four reasons:
- the create must carry the dedup label AND the `ecsscan` issue property in the same POST body
  (`properties` in IssueUpdateDetails), which the client's `create_issue` cannot send;
- a create is never retried blindly: the client's ResilientSession retries POSTs after a dropped
  connection and files the issue twice (pycontribs/jira#1484), so the client is built with
  `max_retries=0` and, after an ambiguous failure, the dedup label is searched before anything
  else; a create whose outcome stays unknown is left to the next run, which finds it by label;
- 429 `Retry-After` is honoured, 5xx and dropped connections are retried with a bounded backoff
  (reads and idempotent writes only), and every attempt counts against a per-run budget;
- foreign errors become our own (TransientError / PermanentError / AuthError) with messages that
  never carry the credentials.

Search: on Cloud `GET /rest/api/2/search/jql` with `nextPageToken` (the v2 twin of the enhanced
`/rest/api/3/search/jql`; the same path the client's `enhanced_search_issues` uses with REST v2);
on Data Center `GET /rest/api/2/search` with `startAt` (there `enhanced_search_issues` returns
None). Calling the path directly also avoids the client's extra `GET /field` per instance. The
issue property comes back inline (`properties=ecsscan`), so a steady-state run costs one search
page per route and nothing else. Text is wiki markup on REST v2, which Cloud and Data Center
both accept.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from jira import JIRA, JIRAError
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

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
    TicketProperty,
    TicketReport,
    TicketRequest,
    build_searches,
    group_images,
    plan_tickets,
)
from ecs_scan_operator.errors import AuthError, PermanentError, ScanError, TransientError

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
#: serverInfo.deploymentType per site URL, learnt once per process (sinks are often built per run).
_DEPLOYMENTS: dict[str, str] = {}


# ---------------------------------------------------------------------------------------------
# Credentials


class JiraCredentials(BaseModel):
    """Jira Cloud (email + API token) or Data Center (personal access token) credentials."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    email: str | None = None
    api_token: SecretStr | None = None
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _one_form(self) -> JiraCredentials:
        cloud = self.email is not None or self.api_token is not None
        if cloud and self.token is not None:
            raise ValueError("give either email + apiToken (Jira Cloud) or token (Data Center PAT), not both")
        if cloud and not (self.email and self.api_token and self.api_token.get_secret_value()):
            raise ValueError("Jira Cloud needs both email and apiToken")
        if not cloud and not (self.token and self.token.get_secret_value()):
            raise ValueError("no Jira credentials: set email + apiToken (Cloud) or token (Data Center PAT)")
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, str | bytes | SecretStr]) -> JiraCredentials:
        """From `email`/`apiToken` or `token` entries (plain text, bytes or SecretStr values)."""

        def text(key: str) -> str | None:
            value = data.get(key)
            if value is None:
                return None
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, bytes):
                value = value.decode()
            return value.strip() or None

        try:
            token = text("token")
            api_token = text("apiToken")
            return cls(
                email=text("email"),
                api_token=SecretStr(api_token) if api_token else None,
                token=SecretStr(token) if token else None,
            )
        except ValueError as exc:
            # pydantic's message could quote input values; say only which keys are wrong.
            raise AuthError(f"invalid Jira credentials: {_first_error(exc)}") from None

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> JiraCredentials:
        """From a Kubernetes Secret's `data` (base64 values): `email` + `apiToken`, or `token`."""
        decoded: dict[str, bytes] = {}
        for key in ("email", "apiToken", "token"):
            if key in data:
                try:
                    decoded[key] = base64.b64decode(data[key], validate=True)
                except (binascii.Error, ValueError):
                    raise AuthError(f"Secret key {key!r} is not valid base64") from None
        return cls.from_mapping(decoded)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JiraCredentials | None:
        """From JIRA_EMAIL + JIRA_API_TOKEN (Cloud) or JIRA_PAT (Data Center); None when unset."""
        env = os.environ if env is None else env
        if env.get("JIRA_PAT"):
            return cls.from_mapping({"token": env["JIRA_PAT"]})
        if env.get("JIRA_EMAIL") or env.get("JIRA_API_TOKEN"):
            return cls.from_mapping(
                {"email": env.get("JIRA_EMAIL", ""), "apiToken": env.get("JIRA_API_TOKEN", "")}
            )
        return None

    def client_auth(self) -> dict[str, Any]:
        """Keyword arguments for `jira.JIRA`: basic_auth (Cloud) or token_auth (Data Center)."""
        if self.token is not None:
            return {"token_auth": self.token.get_secret_value()}
        assert self.email is not None and self.api_token is not None  # checked by the validator
        return {"basic_auth": (self.email, self.api_token.get_secret_value())}

    def secrets(self) -> list[str]:
        """The secret values (to scrub them from any message that leaves the adapter)."""
        out = [s.get_secret_value() for s in (self.api_token, self.token) if s is not None]
        if self.email and self.api_token is not None:
            raw = f"{self.email}:{self.api_token.get_secret_value()}".encode()
            out.append(base64.b64encode(raw).decode())
        return [s for s in out if s]


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return "invalid"


# ---------------------------------------------------------------------------------------------
# Options and errors


@dataclass(frozen=True)
class JiraSinkOptions:
    """Limits and knobs of the adapter (defaults suit a daily run against Jira Cloud)."""

    request_budget: int = 300  # HTTP requests per run, retries included
    max_attempts: int = 4  # per request, for retryable failures
    backoff_base: float = 1.0  # seconds; doubled per attempt, with jitter
    backoff_max: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After ends the run's Jira work (next run resumes)
    timeout: tuple[float, float] = (10.0, 60.0)  # connect, read
    page_size: int = 100
    labels_per_search: int = 100  # one page per batch; GET URLs stay under ~4 kB
    properties_on_edit: bool = True  # send the property inside the edit (atomic); else a separate PUT
    workflow: JiraWorkflow = field(default_factory=JiraWorkflow)


class _OutcomeUnknown(TransientError):
    """The request may or may not have been carried out (5xx or a lost connection on a write)."""


class _BudgetExhausted(PermanentError):
    """The per-run request budget is spent."""


class _NotFound(PermanentError):
    """404."""


@dataclass
class _Run:
    """Counters and findings of one sync."""

    requests: int = 0
    searches: int = 0
    writes: int = 0
    errors: list[str] = field(default_factory=list)
    errors_total: int = 0
    stopped: str = ""  # why the remaining work was abandoned (condition reason)

    def error(self, message: str) -> None:
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(clip(message))


# ---------------------------------------------------------------------------------------------
# The sink


class JiraTicketSink:
    """TicketSink backed by Jira Cloud or Data Center (detected through serverInfo)."""

    def __init__(
        self,
        url: str,
        credentials: JiraCredentials,
        *,
        options: JiraSinkOptions | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        client_factory: Callable[..., JIRA] = JIRA,
        plan_only: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self._credentials = credentials
        self.options = options or JiraSinkOptions()
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._client_factory = client_factory
        self._client: JIRA | None = None
        self._plan_only = plan_only
        self._run = _Run()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    def close(self) -> None:
        """Close the HTTP session (the next sync reconnects)."""
        client: Any = self._client  # JIRA.close() is not annotated
        if client is not None:
            client.close()
            self._client = None

    @classmethod
    def from_spec(cls, jira: JiraSpec, credentials: JiraCredentials, **kwargs: Any) -> JiraTicketSink:
        """The sink for a policy's `jira` section (its URL; routes etc. come with each request)."""
        return cls(jira.url, credentials, **kwargs)

    # -- the port ---------------------------------------------------------------------------

    def sync(self, request: TicketRequest) -> TicketReport:
        """Plan against the tickets found by label, then carry the plan out (reads only in a dry run)."""
        self._run = run = _Run()
        jira = request.spec.jira
        if jira is None:
            return TicketReport(reason="NotConfigured")
        dry = request.dry_run or self._plan_only
        groups = group_images(request.images, jira)
        plan = TicketPlan()
        results: dict[int, str] = {}  # filled as actions complete, so an abort keeps what was done
        try:
            self._connect()
            existing, failed = self._find(request, jira, groups)
            plan = plan_tickets(
                request, existing, failed_routes=failed, workflow=self.options.workflow, groups=groups
            )
            for r in sorted(failed):
                run.error(f"route {r}: search failed; its tickets wait for the next run")
            if not dry:
                self._execute(plan, existing, results)
        except AuthError as exc:
            run.stopped = "JiraAuthFailed"
            run.error(self._scrub(str(exc)))
        except _BudgetExhausted as exc:
            run.stopped = "RequestBudgetExhausted"
            run.error(self._scrub(str(exc)))
        except ScanError as exc:
            run.stopped = "JiraUnavailable"
            run.error(self._scrub(str(exc)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # An answer of an unexpected shape (a proxy's HTML page, another API version): stop
            # here rather than guess; the next run starts over from the label search.
            run.stopped = "JiraUnavailable"
            run.error(f"unexpected answer from Jira ({type(exc).__name__})")
        return self._report(plan, results, dry)

    # -- reading ----------------------------------------------------------------------------

    def _connect(self) -> JIRA:
        if self._client is not None:
            return self._client
        known = _DEPLOYMENTS.get(self.url)
        attempt = 0
        while True:
            if known is None:
                self._spend()  # the constructor's GET serverInfo
            try:
                self._client = self._client_factory(
                    self.url,
                    options={"rest_api_version": "2", "check_update": False},
                    # serverInfo.deploymentType tells Cloud from Data Center; asked once per process and site.
                    get_server_info=known is None,
                    max_retries=0,  # we retry ourselves, and never a create (see the module docstring)
                    timeout=self.options.timeout,
                    **self._credentials.client_auth(),
                )
                break
            except (JIRAError, requests.RequestException) as exc:
                mapped = self._map(exc, "GET serverInfo")
                attempt += 1
                if isinstance(mapped, TransientError) and attempt < self.options.max_attempts:
                    self._sleep(self._delay(attempt, mapped.retry_after))
                    continue
                raise mapped from None
        if known is None:
            _DEPLOYMENTS[self.url] = str(self._client.deploymentType or "")
        else:
            # What the constructor would have read; keeps the client's own Cloud checks right too.
            self._client.deploymentType = known
        log.info("jira: connected to %s (%s)", self.url, "Cloud" if self.cloud else "Data Center")
        return self._client

    @property
    def cloud(self) -> bool:
        """True on Jira Cloud (serverInfo.deploymentType == Cloud)."""
        return bool(self._client is not None and self._client.deploymentType == "Cloud")

    def _find(
        self, request: TicketRequest, jira: JiraSpec, groups: Any
    ) -> tuple[list[ExistingTicket], set[str]]:
        existing: list[ExistingTicket] = []
        failed: set[str] = set()
        for search in build_searches(request.policy, jira, groups, batch=self.options.labels_per_search):
            if search.route in failed:
                continue
            try:
                existing.extend(self._search(search.jql))
            except (AuthError, _BudgetExhausted):
                raise
            except ScanError as exc:
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
                page = self._send(
                    "GET",
                    "search/jql",
                    params={**params, **({"nextPageToken": token} if token else {})},
                    kind="search",
                )
                out.extend(_ticket(i) for i in page.get("issues") or [])
                token = page.get("nextPageToken")
                if not token or page.get("isLast"):
                    break
        else:
            start = 0
            while True:
                page = self._send("GET", "search", params={**params, "startAt": start}, kind="search")
                issues = page.get("issues") or []
                out.extend(_ticket(i) for i in issues)
                start += len(issues)
                if not issues or start >= int(page.get("total") or 0):
                    break
        return out

    # -- writing ----------------------------------------------------------------------------

    def _execute(self, plan: TicketPlan, existing: list[ExistingTicket], results: dict[int, str]) -> None:
        """Carry out the writing actions in order, recording each outcome in `results` (by index)."""
        tickets = {t.key: t for t in existing}
        created: dict[str, str] = {}  # dedup label -> key of the ticket created this run
        transitions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for i, action in enumerate(plan.actions):
            if not action.writes:
                continue
            if action.depends_on and action.depends_on not in created:
                results[i] = "deferred"
                self._run.error(f"{action.ticket}: close waits until the ticket it moves to exists")
                continue
            try:
                if action.action in (Action.CREATE, Action.NEW_LINKED):
                    key = self._create(action)
                    if key is None:
                        results[i] = "unknown"
                        continue
                    created[action.label] = key
                    results[i] = f"done:{key}"
                elif action.action is Action.UPDATE:
                    self._edit(action)
                    results[i] = "done"
                elif action.action is Action.CLOSE:
                    self._transition(action, tickets.get(action.ticket or ""), "close", transitions)
                    results[i] = "done"
                elif action.action is Action.REOPEN:
                    self._transition(action, tickets.get(action.ticket or ""), "reopen", transitions)
                    if not action.fields.empty or action.prop is not None:
                        self._edit(action, with_comment=False)
                    results[i] = "done"
            except (AuthError, _BudgetExhausted):
                raise
            except ScanError as exc:
                results[i] = "failed"
                self._run.error(
                    f"{action.action.value} {action.ticket or action.label}: {self._scrub(str(exc))}"
                )
            else:
                log.info(
                    "jira: %s %s (%s)",
                    action.action.value,
                    action.ticket or created.get(action.label, ""),
                    action.reason,
                )

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
        if fields.description is not None:
            out["description"] = fields.description
        if fields.priority:
            out["priority"] = {"name": fields.priority}
        if fields.duedate:
            out["duedate"] = fields.duedate.isoformat()
        return out

    def _create(self, action: PlannedAction) -> str | None:
        """POST /issue with labels and property together; None when the outcome stays unknown."""
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
            created = self._send("POST", "issue", body=body, kind="write", idempotent=False)
            if not isinstance(created, Mapping) or not created.get("key"):
                raise _OutcomeUnknown("POST /rest/api/2/issue: the answer names no issue key")
            return str(created["key"])
        except _OutcomeUnknown as exc:
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
        if action.fields.labels:
            update["labels"] = [{"add": lb} for lb in action.fields.labels]
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
            self._send(
                "PUT",
                f"issue/{action.ticket}",
                params={"notifyUsers": "true"},
                body=body,
                kind="write",
                idempotent=comment is None,
            )
        if prop is not None and not self.options.properties_on_edit:
            self._send("PUT", f"issue/{action.ticket}/properties/{PROPERTY_KEY}", body=prop, kind="write")

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
            got = self._send(
                "GET", f"issue/{key}/transitions", params={"expand": "transitions.fields"}, kind="read"
            )
            cache[cache_key] = list((got or {}).get("transitions") or [])
        chosen = _pick_transition(cache[cache_key], which, self.options.workflow)
        if chosen is None:
            target = "Done" if which == "close" else "an open status"
            raise PermanentError(f"{key}: the workflow offers no transition to {target}")
        body: dict[str, Any] = {"transition": {"id": str(chosen["id"])}}
        if which == "close":
            resolution = _pick_resolution(chosen, action.resolution, self.options.workflow)
            if resolution:
                body["fields"] = {"resolution": {"name": resolution}}
        if action.comment and (which == "close" or action.action is Action.REOPEN):
            body["update"] = {"comment": [{"add": {"body": action.comment}}]}
        self._send("POST", f"issue/{key}/transitions", body=body, kind="write", idempotent=False)

    # -- HTTP -------------------------------------------------------------------------------

    def _spend(self) -> None:
        if self._run.requests >= self.options.request_budget:
            raise _BudgetExhausted(
                f"request budget of {self.options.request_budget} spent; the next run completes the work"
            )
        self._run.requests += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        base = min(self.options.backoff_max, self.options.backoff_base * 2.0 ** (attempt - 1))
        return float(base * self._rng.uniform(0.5, 1.0))

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        kind: str = "read",
        idempotent: bool = True,
    ) -> Any:
        """One Jira REST v2 call with our retry policy; the parsed JSON body (or None)."""
        client = self._connect()
        url = client._get_url(path)  # the client's own URL builder (server + REST v2)
        what = f"{method} /rest/api/2/{path}"
        attempt = 0
        while True:
            attempt += 1
            self._spend()
            if kind == "search":
                self._run.searches += 1
            elif kind == "write":
                self._run.writes += 1
            try:
                resp = client._session.request(  # the client's auth session (max_retries=0)
                    method,
                    url,
                    params=dict(params or {}),
                    data=json.dumps(body) if body is not None else None,
                )
            except (JIRAError, requests.RequestException) as exc:
                mapped = self._map(exc, what)
                # 429 is refused before any work is done, so even a create may repeat it.
                throttled = isinstance(mapped, TransientError) and not isinstance(mapped, _OutcomeUnknown)
                retryable = throttled or (isinstance(mapped, _OutcomeUnknown) and idempotent)
                if retryable and attempt < self.options.max_attempts:
                    assert isinstance(mapped, TransientError)
                    if mapped.retry_after is not None and mapped.retry_after > self.options.max_retry_after:
                        raise mapped from None
                    self._sleep(self._delay(attempt, mapped.retry_after))
                    continue
                raise mapped from None
            if not resp.content:
                return None
            try:
                return resp.json()
            except ValueError:
                raise TransientError(f"{what}: the answer is not JSON") from None

    def _map(self, exc: Exception, what: str) -> ScanError:
        """A foreign error as ours; the message names the call and Jira's reason, never a secret."""
        if isinstance(exc, JIRAError):
            status = exc.status_code
            reason = self._scrub(clip(_jira_reason(exc), 200))
            if status == 429:
                return TransientError(f"{what}: throttled (429)", retry_after=_retry_after(exc.response))
            if status is None or status >= 500:
                return _OutcomeUnknown(f"{what}: Jira answered {status}: {reason}", retry_after=None)
            if status == 401:
                return AuthError(f"{what}: Jira refused the credentials (401)")
            if status == 403:
                return PermanentError(f"{what}: forbidden (403): {reason}")
            if status == 404:
                return _NotFound(f"{what}: not found (404): {reason}")
            if status == 410:
                return PermanentError(f"{what}: gone (410): {reason}")
            return PermanentError(f"{what}: Jira refused the request ({status}): {reason}")
        if isinstance(exc, requests.Timeout | requests.ConnectionError | requests.RequestException):
            return _OutcomeUnknown(f"{what}: {type(exc).__name__} (no answer from Jira)")
        return TransientError(f"{what}: {type(exc).__name__}")

    def _scrub(self, text: str) -> str:
        for secret in self._credentials.secrets():
            text = text.replace(secret, "***")
        return text

    # -- the report -------------------------------------------------------------------------

    def _report(self, plan: TicketPlan, results: Mapping[int, str], dry: bool) -> TicketReport:
        run = self._run
        counts: dict[str, int] = {}
        planned: list[dict[str, str]] = []
        for i, action in enumerate(plan.actions):
            entry = action.summary()
            outcome = results.get(i)
            if dry:
                entry["result"] = "planned"
                name = action.action.value
            elif not action.writes:
                entry["result"] = "none"
                name = action.action.value
            elif outcome is None:
                entry["result"] = "not-attempted"
                name = "deferred"
            elif outcome.startswith("done"):
                entry["result"] = "done"
                if ":" in outcome:
                    entry["ticket"] = outcome.split(":", 1)[1]
                name = action.action.value
            else:
                entry["result"] = outcome
                name = "failed" if outcome == "failed" else "deferred"
            counts[name] = counts.get(name, 0) + 1
            planned.append(entry)
        pending = any(p["result"] in ("failed", "unknown", "deferred", "not-attempted") for p in planned)
        deferred_routes = any(a.action is Action.DEFERRED for a in plan.actions)
        # A dry run is "synced" when the plan is complete; a real run when all of it was carried out.
        synced = not (run.stopped or run.errors_total or deferred_routes or (pending and not dry))
        if run.stopped:
            reason = run.stopped
        elif dry:
            reason = "DryRun"
        elif not synced:
            reason = "PartialFailure"
        else:
            reason = "Synced"
        return TicketReport(
            actions=counts,
            planned=planned,
            errors=list(run.errors),
            requests=run.requests,
            synced=synced,
            reason=reason,
            searches=run.searches,
            writes=run.writes,
        )


class PlanOnlyTicketSink(JiraTicketSink):
    """A dry-run sink: reads Jira (serverInfo, label searches) and reports the plan; never writes."""

    def __init__(self, url: str, credentials: JiraCredentials, **kwargs: Any) -> None:
        kwargs["plan_only"] = True
        super().__init__(url, credentials, **kwargs)


def build_ticket_sink(
    spec: PolicySpec, credentials: Mapping[str, str | bytes | SecretStr]
) -> JiraTicketSink | None:
    """The sink for a policy (the composition root's hook); None when the policy has no Jira."""
    if spec.jira is None:
        return None
    creds = JiraCredentials.from_mapping(credentials)
    sink_cls = PlanOnlyTicketSink if spec.dry_run else JiraTicketSink
    return sink_cls(spec.jira.url, creds)


def forget_deployments() -> None:
    """Forget what serverInfo said about each site (tests reuse ports for other flavours)."""
    _DEPLOYMENTS.clear()


# ---------------------------------------------------------------------------------------------
# Parsing Jira's answers


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _ticket(issue: Mapping[str, Any]) -> ExistingTicket:
    """An ExistingTicket from one search hit."""
    f = issue.get("fields") or {}
    status = f.get("status") or {}
    resolution = f.get("resolution") or {}
    props = issue.get("properties") or {}
    return ExistingTicket(
        key=str(issue.get("key")),
        id=str(issue.get("id")),
        labels=tuple(str(x) for x in f.get("labels") or ()),
        status=str(status.get("name") or ""),
        status_category=str((status.get("statusCategory") or {}).get("key") or ""),
        project=str((f.get("project") or {}).get("key") or ""),
        resolution=str(resolution["name"]) if resolution.get("name") else None,
        resolved=_parse_time(f.get("resolutiondate")),
        created=_parse_time(f.get("created")),
        duedate=_parse_date(f.get("duedate")),
        prop=TicketProperty.from_json(props.get(PROPERTY_KEY)),
    )


def _pick_transition(options: list[dict[str, Any]], which: str, wf: JiraWorkflow) -> dict[str, Any] | None:
    """Close: a transition into the Done category (not a won't-do status), `Done` preferred.
    Reopen: into the To Do category first, else In Progress."""

    def category(t: dict[str, Any]) -> str:
        return str(((t.get("to") or {}).get("statusCategory") or {}).get("key") or "")

    def name(t: dict[str, Any]) -> str:
        return str((t.get("to") or {}).get("name") or "")

    if which == "close":
        done = [t for t in options if category(t) == "done" and not wf.is_wont_do_status(name(t))]
        done.sort(key=lambda t: (name(t).lower() != "done", str(t.get("id"))))
        return done[0] if done else None
    for cat in ("new", "indeterminate"):
        found = [t for t in options if category(t) == cat and not wf.is_wont_do_status(name(t))]
        if found:
            return found[0]
    return None


def _pick_resolution(transition: Mapping[str, Any], preferred: str | None, wf: JiraWorkflow) -> str | None:
    """A resolution the transition screen offers (preferred, else Fixed/Done); None without the field."""
    meta = (transition.get("fields") or {}).get("resolution")
    if not meta:
        return None
    allowed = [str(v.get("name")) for v in meta.get("allowedValues") or [] if v.get("name")]
    if not allowed:
        return preferred
    for want in (preferred, "Fixed", "Done"):
        for name in allowed:
            if want and name.lower() == want.lower():
                return name
    fixed = [n for n in allowed if wf.is_fixed_resolution(n)]
    return fixed[0] if fixed else None


def _jira_reason(exc: JIRAError) -> str:
    """Jira's own error text (errorMessages / errors), not the client's dump of headers."""
    resp = exc.response
    if resp is not None:
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if isinstance(doc, Mapping):
            parts = [str(m) for m in doc.get("errorMessages") or []]
            parts += [f"{k}: {v}" for k, v in (doc.get("errors") or {}).items()]
            if parts:
                return "; ".join(parts)
    return str(exc.text or "")


def _retry_after(resp: requests.Response | None) -> float | None:
    """Retry-After in seconds (number or HTTP date), or None."""
    if resp is None:
        return None
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
