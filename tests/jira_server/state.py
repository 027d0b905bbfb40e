"""The state of the Jira test server: projects, issues, workflow, comments, properties, links.

Only what the operator's Jira adapter touches is modelled, but that part behaves like Jira:
a three-status workflow (To Do / In Progress / Done with their status categories), resolutions
(Done, Fixed, Won't Do) set when entering the Done category and cleared when leaving it, label
search across every status, issue properties, comments and issue links. Tests drive "people"
through the same methods (`transition`, `edit`), and read the state directly to assert on it.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.jira_server import jql

TEXT_LIMIT = 32_767
PROPERTY_LIMIT = 32_768
SUMMARY_LIMIT = 255

CATEGORIES: dict[str, dict[str, Any]] = {
    "new": {"id": 2, "key": "new", "name": "To Do", "colorName": "blue-gray"},
    "indeterminate": {"id": 4, "key": "indeterminate", "name": "In Progress", "colorName": "yellow"},
    "done": {"id": 3, "key": "done", "name": "Done", "colorName": "green"},
}


@dataclass(frozen=True)
class Status:
    """A workflow status."""

    id: str
    name: str
    category: str


@dataclass(frozen=True)
class Transition:
    """A global transition into `to` (Jira's simplified workflow: from any other status)."""

    id: str
    name: str
    to: str  # status id
    resolution_screen: bool = False


STATUSES = {
    "10000": Status("10000", "To Do", "new"),
    "3": Status("3", "In Progress", "indeterminate"),
    "10001": Status("10001", "Done", "done"),
}
TRANSITIONS = (
    Transition("11", "To Do", "10000"),
    Transition("21", "In Progress", "3"),
    Transition("31", "Done", "10001", resolution_screen=True),
)
RESOLUTIONS = {"10000": "Done", "10001": "Won't Do", "10002": "Fixed"}
PRIORITIES = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}
LINK_TYPES = {
    "10000": ("Relates", "relates to", "relates to"),
    "10001": ("Duplicate", "is duplicated by", "duplicates"),
    "10002": ("Blocks", "is blocked by", "blocks"),
}
ISSUE_TYPES = {"10001": "Bug", "10002": "Task"}


class JiraFailure(Exception):
    """A request Jira refuses: status code, messages and per-field errors (an ErrorCollection)."""

    def __init__(self, status: int, *messages: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {'; '.join(messages)} {dict(errors or {})}")
        self.status = status
        self.messages = list(messages)
        self.errors = dict(errors or {})

    def body(self) -> dict[str, Any]:
        """The ErrorCollection JSON."""
        return {"errorMessages": self.messages, "errors": self.errors}


def jira_time(when: datetime) -> str:
    """Jira's timestamp format: 2024-05-01T10:00:00.000+0000."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


@dataclass
class Comment:
    """One comment."""

    id: str
    body: Any
    created: datetime
    author: str


@dataclass
class Link:
    """One issue link as seen from an issue."""

    id: str
    type_id: str
    outward: bool  # True: this issue --outward--> other
    other: str  # issue key


@dataclass
class Issue:
    """One issue."""

    id: int
    key: str
    project: str
    issuetype: str
    summary: str
    created: datetime
    updated: datetime
    status: str = "10000"
    description: Any = None
    resolution: str | None = None
    resolutiondate: datetime | None = None
    labels: list[str] = field(default_factory=list)
    priority: str | None = "3"
    duedate: str | None = None
    components: list[str] = field(default_factory=list)
    assignee: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    @property
    def status_category(self) -> str:
        """new | indeterminate | done."""
        return STATUSES[self.status].category


@dataclass
class Project:
    """A project with its components (which must exist to be set on an issue)."""

    id: str
    key: str
    name: str
    components: dict[str, str] = field(default_factory=dict)  # id -> name
    counter: int = 0


class JiraState:
    """Everything the server knows; every public method takes the lock (the server is threaded)."""

    def __init__(self, *, cloud: bool, now: datetime | None = None, base_url: str = "") -> None:
        self.cloud = cloud
        self.now = now or datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
        self.base_url = base_url
        self.lock = threading.RLock()
        self.projects: dict[str, Project] = {}
        self.issues: dict[str, Issue] = {}  # key -> issue
        self.users = {"alice", "bob", "ecsscan-bot"}
        self._ids = 10_000

    # -- setup ------------------------------------------------------------------------------

    def add_project(self, key: str, name: str | None = None, components: Iterable[str] = ()) -> Project:
        """Create a project (and its components)."""
        with self.lock:
            pid = str(10_000 + len(self.projects))
            comps = {str(20_000 + 10 * len(self.projects) + i): c for i, c in enumerate(components)}
            proj = Project(pid, key, name or key.title(), comps)
            self.projects[key] = proj
            return proj

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # -- lookups ----------------------------------------------------------------------------

    def get(self, id_or_key: str) -> Issue:
        """An issue by key or id; 404 when absent."""
        with self.lock:
            if id_or_key in self.issues:
                return self.issues[id_or_key]
            for issue in self.issues.values():
                if str(issue.id) == id_or_key:
                    return issue
        raise JiraFailure(404, "Issue does not exist or you do not have permission to see it.")

    def _project(self, ref: Any) -> Project:
        if isinstance(ref, Mapping):
            for p in self.projects.values():
                if ref.get("key") == p.key or str(ref.get("id")) == p.id:
                    return p
        raise JiraFailure(400, errors={"project": "valid project is required"})

    def search(self, query: str) -> list[Issue]:
        """Issues matching a JQL query, in its order (default: by key)."""
        parsed = jql.parse(query)
        with self.lock:
            hits = [
                i
                for i in self.issues.values()
                if parsed.predicate is None or parsed.predicate(self._jql_view(i))
            ]
        hits.sort(key=lambda i: i.id)
        for name, desc in reversed(parsed.order):
            if name in ("created", "key", "id"):
                hits.sort(key=lambda i: (i.created, i.id) if name == "created" else i.id, reverse=desc)
            elif name == "updated":
                hits.sort(key=lambda i: (i.updated, i.id), reverse=desc)
            else:
                raise jql.JqlError(f"cannot order by {name}")
        return hits

    def _jql_view(self, issue: Issue) -> dict[str, Any]:
        st = STATUSES[issue.status]
        cat = CATEGORIES[st.category]
        proj = self.projects[issue.project]
        return {
            "labels": issue.labels,
            "project": [proj.key, proj.id, proj.name],
            "status": [st.name, st.id],
            "statuscategory": [cat["key"], cat["name"], str(cat["id"])],
            "resolution": [RESOLUTIONS[issue.resolution]] if issue.resolution else [],
            "key": [issue.key, str(issue.id)],
            "issuetype": [ISSUE_TYPES[issue.issuetype], issue.issuetype],
        }

    # -- field validation -------------------------------------------------------------------

    def _text(self, name: str, value: Any, *, v3: bool) -> Any:
        if value is None:
            return None
        if v3:
            # REST v3 takes Atlassian Document Format for rich-text fields, never a plain string.
            if not (isinstance(value, Mapping) and value.get("type") == "doc" and value.get("version") == 1):
                raise JiraFailure(400, errors={name: "Operation value must be an Atlassian Document"})
            size = len(json.dumps(value))
        else:
            if not isinstance(value, str):
                raise JiraFailure(400, errors={name: "Operation value must be a string"})
            size = len(value)
        if size > TEXT_LIMIT:
            raise JiraFailure(
                400,
                errors={
                    name: "The entered text is too long. "
                    f"It exceeds the allowed limit of {TEXT_LIMIT} characters."
                },
            )
        return value

    @staticmethod
    def _label(value: Any) -> str:
        if not isinstance(value, str) or not value or " " in value or len(value) > 255:
            raise JiraFailure(400, errors={"labels": "The label can't contain spaces."})
        return value

    def _priority(self, value: Any) -> str:
        if isinstance(value, Mapping):
            for pid, name in PRIORITIES.items():
                if value.get("name") == name or str(value.get("id")) == pid:
                    return pid
        raise JiraFailure(400, errors={"priority": "Specify a valid priority"})

    def _components(self, proj: Project, value: Any) -> list[str]:
        out = []
        for comp in value or []:
            match = [
                cid
                for cid, name in proj.components.items()
                if comp.get("name") == name or str(comp.get("id")) == cid
            ]
            if not match:
                raise JiraFailure(
                    400, errors={"components": f"Component name '{comp.get('name')}' is not valid"}
                )
            out.append(match[0])
        return out

    def _assignee(self, value: Any) -> str | None:
        if value is None:
            return None
        # Cloud names people by accountId only (GDPR); Data Center by user name.
        key = "accountId" if self.cloud else "name"
        if not isinstance(value, Mapping) or key not in value:
            raise JiraFailure(400, errors={"assignee": f"assignee must be given by {key}"})
        if value[key] not in self.users:
            raise JiraFailure(400, errors={"assignee": f"User '{value[key]}' does not exist."})
        return str(value[key])

    @staticmethod
    def _duedate(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise JiraFailure(400, errors={"duedate": "Error parsing date string: " + str(value)})
        return value

    def _properties(self, issue: Issue, props: Any) -> None:
        for prop in props or []:
            self.set_property(issue, str(prop["key"]), prop.get("value"))

    def set_property(self, issue: Issue, key: str, value: Any) -> bool:
        """Store an issue property; True when it was new."""
        if value is None or value == "" or len(json.dumps(value)) > PROPERTY_LIMIT:
            raise JiraFailure(
                400, f"The property value must be non-empty JSON of at most {PROPERTY_LIMIT} characters."
            )
        if not key or len(key) > 255:
            raise JiraFailure(400, "The property key must be 1 to 255 characters.")
        new = key not in issue.properties
        issue.properties[key] = copy.deepcopy(value)
        return new

    def _links(self, issue: Issue, ops: Any) -> None:
        for op in ops or []:
            add = op.get("add") if isinstance(op, Mapping) else None
            if not isinstance(add, Mapping):
                raise JiraFailure(400, errors={"issuelinks": "only add is supported"})
            outward = add.get("outwardIssue")
            inward = add.get("inwardIssue")
            if outward:
                self.link(
                    add.get("type") or {},
                    inward_key=issue.key,
                    outward_key=self.get(str(outward.get("key") or outward.get("id"))).key,
                )
            elif inward:
                self.link(
                    add.get("type") or {},
                    inward_key=self.get(str(inward.get("key") or inward.get("id"))).key,
                    outward_key=issue.key,
                )

    def link(self, link_type: Mapping[str, Any], *, inward_key: str, outward_key: str) -> None:
        """Link two issues: `inward_key` --type--> `outward_key` (as POST /issueLink names them)."""
        with self.lock:
            tid = next(
                (
                    i
                    for i, (name, _, _) in LINK_TYPES.items()
                    if link_type.get("name") == name or str(link_type.get("id")) == i
                ),
                None,
            )
            if tid is None:
                raise JiraFailure(404, f"No issue link type with name '{link_type.get('name')}' found.")
            a, b = self.get(inward_key), self.get(outward_key)
            lid = str(self._next_id())
            a.links.append(Link(lid, tid, True, b.key))
            b.links.append(Link(lid, tid, False, a.key))

    # -- writes -----------------------------------------------------------------------------

    def create(self, body: Mapping[str, Any], *, v3: bool) -> Issue:
        """POST /issue: fields (+ update.issuelinks, + properties), validated like Jira."""
        with self.lock:
            fields = body.get("fields") or {}
            proj = self._project(fields.get("project"))
            itype = fields.get("issuetype") or {}
            tid = next(
                (i for i, n in ISSUE_TYPES.items() if itype.get("name") == n or str(itype.get("id")) == i),
                None,
            )
            if tid is None:
                raise JiraFailure(400, errors={"issuetype": "Specify an issue type"})
            summary = fields.get("summary")
            if not isinstance(summary, str) or not summary.strip():
                raise JiraFailure(400, errors={"summary": "You must specify a summary of the issue."})
            if len(summary) > SUMMARY_LIMIT or "\n" in summary:
                raise JiraFailure(400, errors={"summary": "Summary must be less than 255 characters."})
            unknown = set(fields) - {
                "project",
                "issuetype",
                "summary",
                "description",
                "labels",
                "priority",
                "duedate",
                "components",
                "assignee",
            }
            if unknown:
                raise JiraFailure(
                    400,
                    errors={
                        k: f"Field '{k}' cannot be set. It is not on the appropriate screen, or unknown."
                        for k in unknown
                    },
                )
            proj.counter += 1
            issue = Issue(
                id=self._next_id(),
                key=f"{proj.key}-{proj.counter}",
                project=proj.key,
                issuetype=tid,
                summary=summary,
                created=self.now,
                updated=self.now,
                description=self._text("description", fields.get("description"), v3=v3),
                labels=[self._label(x) for x in fields.get("labels") or []],
                priority=self._priority(fields["priority"]) if fields.get("priority") else "3",
                duedate=self._duedate(fields.get("duedate")),
                components=self._components(proj, fields.get("components")),
                assignee=self._assignee(fields.get("assignee")),
            )
            # Validate everything before storing: a refused create leaves nothing behind.
            probe = Issue(
                id=0, key="", project=proj.key, issuetype=tid, summary="", created=self.now, updated=self.now
            )
            self._properties(probe, body.get("properties"))
            self.issues[issue.key] = issue
            issue.properties = probe.properties
            update = body.get("update") or {}
            self._links(issue, update.get("issuelinks"))
            for op in update.get("labels") or []:
                if "add" in op and op["add"] not in issue.labels:
                    issue.labels.append(self._label(op["add"]))
            return issue

    def edit(self, key: str, body: Mapping[str, Any], *, v3: bool = False) -> None:
        """PUT /issue/{key}: fields, update (labels, comment, issuelinks) and properties."""
        with self.lock:
            issue = self.get(key)
            proj = self.projects[issue.project]
            fields = dict(body.get("fields") or {})
            update = body.get("update") or {}
            clash = set(fields) & set(update)
            if clash:
                raise JiraFailure(
                    400, errors=dict.fromkeys(clash, "Field cannot be set in both fields and update")
                )
            allowed = {"summary", "description", "labels", "priority", "duedate", "components", "assignee"}
            bad = (set(fields) | set(update)) - allowed - {"comment", "issuelinks"}
            if bad:
                raise JiraFailure(
                    400,
                    errors={
                        k: f"Field '{k}' cannot be set. It is not on the appropriate screen, or unknown."
                        for k in bad
                    },
                )
            new = copy.deepcopy(issue)
            if "summary" in fields:
                s = fields["summary"]
                if not isinstance(s, str) or not s.strip() or len(s) > SUMMARY_LIMIT:
                    raise JiraFailure(400, errors={"summary": "You must specify a summary of the issue."})
                new.summary = s
            if "description" in fields:
                new.description = self._text("description", fields["description"], v3=v3)
            if "labels" in fields:
                new.labels = [self._label(x) for x in fields["labels"] or []]
            if "priority" in fields:
                new.priority = self._priority(fields["priority"])
            if "duedate" in fields:
                new.duedate = self._duedate(fields["duedate"])
            if "components" in fields:
                new.components = self._components(proj, fields["components"])
            if "assignee" in fields:
                new.assignee = self._assignee(fields["assignee"])
            for op in update.get("labels") or []:
                if "add" in op and op["add"] not in new.labels:
                    new.labels.append(self._label(op["add"]))
                if "remove" in op and op["remove"] in new.labels:
                    new.labels.remove(op["remove"])
                if "set" in op:
                    new.labels = [self._label(x) for x in op["set"]]
            comments = [self._comment_body(op.get("add") or {}, v3=v3) for op in update.get("comment") or []]
            self._properties(new, body.get("properties"))
            # All validated: apply at once (Jira edits are atomic).
            new.updated = self.now
            for c in comments:
                new.comments.append(Comment(str(self._next_id()), c, self.now, "ecsscan-bot"))
            self.issues[key if key in self.issues else new.key] = new
            self._links(new, update.get("issuelinks"))

    def _comment_body(self, comment: Mapping[str, Any], *, v3: bool) -> Any:
        body = comment.get("body")
        if body is None or body == "":
            raise JiraFailure(400, errors={"comment": "Comment body can not be empty!"})
        return self._text("comment", body, v3=v3)

    def add_comment(
        self, key: str, body: Mapping[str, Any], *, v3: bool = False, author: str = "ecsscan-bot"
    ) -> Comment:
        """POST /issue/{key}/comment."""
        with self.lock:
            issue = self.get(key)
            c = Comment(str(self._next_id()), self._comment_body(body, v3=v3), self.now, author)
            issue.comments.append(c)
            issue.updated = self.now
            return c

    def transitions(self, key: str) -> list[Transition]:
        """Transitions available from the issue's status (every other status)."""
        with self.lock:
            issue = self.get(key)
            return [t for t in TRANSITIONS if t.to != issue.status]

    def transition(
        self,
        key: str,
        transition_id: str | None = None,
        *,
        to: str | None = None,
        resolution: str | None = None,
        body: Mapping[str, Any] | None = None,
        v3: bool = False,
    ) -> None:
        """Do a transition (by id, or by target status name for tests acting as people)."""
        with self.lock:
            issue = self.get(key)
            body = body or {}
            if to is not None:
                match = [t for t in TRANSITIONS if STATUSES[t.to].name == to]
                transition_id = match[0].id if match else None
            available = {t.id: t for t in self.transitions(key)}
            if transition_id not in available:
                raise JiraFailure(400, f"Transition id '{transition_id}' is not valid for this issue.")
            t = available[transition_id]
            fields = body.get("fields") or {}
            if set(fields) - {"resolution"}:
                raise JiraFailure(
                    400,
                    errors=dict.fromkeys(
                        set(fields) - {"resolution"}, "Field cannot be set on this transition"
                    ),
                )
            target = STATUSES[t.to]
            res_name: str | None = resolution
            if "resolution" in fields:
                if not t.resolution_screen:
                    raise JiraFailure(
                        400,
                        errors={
                            "resolution": "Field 'resolution' cannot be set. "
                            "It is not on the appropriate screen, or unknown."
                        },
                    )
                res_name = (fields["resolution"] or {}).get("name")
                if res_name is None:
                    rid = str((fields["resolution"] or {}).get("id"))
                    res_name = RESOLUTIONS.get(rid)
            comments = [
                self._comment_body(op.get("add") or {}, v3=v3)
                for op in (body.get("update") or {}).get("comment") or []
            ]
            if target.category == "done":
                done_id = next((i for i, n in RESOLUTIONS.items() if n == (res_name or "Done")), None)
                if done_id is None:
                    raise JiraFailure(400, errors={"resolution": f"Resolution '{res_name}' does not exist"})
                issue.resolution = done_id
                issue.resolutiondate = self.now
            else:
                issue.resolution = None
                issue.resolutiondate = None
            issue.status = target.id
            issue.updated = self.now
            for c in comments:
                issue.comments.append(Comment(str(self._next_id()), c, self.now, "ecsscan-bot"))

    # -- JSON views -------------------------------------------------------------------------

    def status_json(self, status_id: str) -> dict[str, Any]:
        """StatusDetails."""
        st = STATUSES[status_id]
        return {
            "self": f"{self.base_url}/rest/api/2/status/{st.id}",
            "id": st.id,
            "name": st.name,
            "statusCategory": dict(CATEGORIES[st.category]),
        }

    def issue_json(
        self, issue: Issue, *, fields: Iterable[str] | None, properties: Iterable[str] = (), api: str = "2"
    ) -> dict[str, Any]:
        """IssueBean with the requested fields (None: all) and properties."""
        proj = self.projects[issue.project]
        everything: dict[str, Any] = {
            "summary": issue.summary,
            "description": issue.description,
            "issuetype": {"id": issue.issuetype, "name": ISSUE_TYPES[issue.issuetype]},
            "project": {"id": proj.id, "key": proj.key, "name": proj.name},
            "status": self.status_json(issue.status),
            "resolution": (
                {"id": issue.resolution, "name": RESOLUTIONS[issue.resolution]} if issue.resolution else None
            ),
            "resolutiondate": jira_time(issue.resolutiondate) if issue.resolutiondate else None,
            "created": jira_time(issue.created),
            "updated": jira_time(issue.updated),
            "labels": list(issue.labels),
            "priority": {"id": issue.priority, "name": PRIORITIES[issue.priority]}
            if issue.priority
            else None,
            "duedate": issue.duedate,
            "components": [{"id": c, "name": proj.components[c]} for c in issue.components],
            "assignee": (
                ({"accountId": issue.assignee} if self.cloud else {"name": issue.assignee})
                if issue.assignee
                else None
            ),
            "issuelinks": [self._link_json(lk) for lk in issue.links],
        }
        wanted = None if fields is None else set(fields)
        if wanted is not None and ("*all" in wanted or "*navigable" in wanted):
            wanted = None
        out: dict[str, Any] = {
            "id": str(issue.id),
            "key": issue.key,
            "self": f"{self.base_url}/rest/api/{api}/issue/{issue.id}",
            "fields": {k: v for k, v in everything.items() if wanted is None or k in wanted},
        }
        props = {k: copy.deepcopy(issue.properties[k]) for k in properties if k in issue.properties}
        if props:
            out["properties"] = props
        return out

    def _link_json(self, lk: Link) -> dict[str, Any]:
        name, inward, outward = LINK_TYPES[lk.type_id]
        other = self.issues.get(lk.other, None)
        ref = {"id": str(other.id) if other else "0", "key": lk.other}
        out = {"id": lk.id, "type": {"id": lk.type_id, "name": name, "inward": inward, "outward": outward}}
        out["outwardIssue" if lk.outward else "inwardIssue"] = ref
        return out

    def comment_json(self, c: Comment, issue: Issue, api: str = "2") -> dict[str, Any]:
        """Comment."""
        return {
            "id": c.id,
            "self": f"{self.base_url}/rest/api/{api}/issue/{issue.id}/comment/{c.id}",
            "body": c.body,
            # Comment timestamps are typed `date-time` in the document: RFC 3339 here.
            "created": c.created.isoformat(timespec="milliseconds"),
            "updated": c.created.isoformat(timespec="milliseconds"),
        }
