"""A stateful Jira test server (stdlib http.server in a thread, 127.0.0.1, random port).

Flavours: `cloud` (serverInfo deploymentType Cloud, HTTP Basic email + API token, the enhanced
`/rest/api/{2,3}/search/jql` with nextPageToken; the old `/search` answers 410 Gone as Cloud
does since 2025) and `dc` (Data Center: deploymentType Server, PAT bearer auth, `/rest/api/2/search`
with startAt). Every request and response goes through the contract checker; violations are
collected for the fixture to assert on. Faults are injected on a share of requests with a seeded
RNG (429 with Retry-After, 500/502/503, dropping the connection before or after the request was
carried out), or scripted for the next matching request.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.jira_server import jql
from tests.jira_server.contract import ContractChecker
from tests.jira_server.state import (
    PRIORITIES,
    RESOLUTIONS,
    STATUSES,
    JiraFailure,
    JiraState,
)

FAULT_KINDS = ("429", "500", "502", "503", "drop_before", "drop_after")


@dataclass
class Record:
    """One request as the server saw it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    status: int | None  # None when the connection was dropped
    fault: str | None
    body: Any = None

    @property
    def write(self) -> bool:
        """A request that changes Jira (searches by POST are reads)."""
        return self.method in ("POST", "PUT", "DELETE") and not self.path.endswith(("/search", "/search/jql"))


@dataclass
class Faults:
    """Fault injection: a share of requests, seeded; plus scripted faults for the next matches."""

    rate: float = 0.0
    seed: int = 0
    kinds: Sequence[str] = FAULT_KINDS
    retry_after: int = 1
    scripted: deque[tuple[str, str, str]] = field(default_factory=deque)  # (method, path regex, kind)
    injected: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def pick(self, method: str, path: str) -> str | None:
        """The fault for this request, if any."""
        for i, (m, pattern, kind) in enumerate(self.scripted):
            if m == method and re.search(pattern, path):
                del self.scripted[i]
                self.injected.append((method, path, kind))
                return kind
        if self.rate and self.rng.random() < self.rate:
            kind = self.rng.choice(list(self.kinds))
            self.injected.append((method, path, kind))
            return kind
        return None


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


Route = tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]


class JiraTestServer:
    """The server, its state, its request log and its contract violations."""

    EMAIL = "bot@example.com"
    API_TOKEN = "cloud-api-token-not-a-secret"
    PAT = "dc-personal-access-token-not-a-secret"

    def __init__(
        self,
        flavour: str = "cloud",
        *,
        contract: ContractChecker | None = None,
        page_size: int = 100,
    ) -> None:
        if flavour not in ("cloud", "dc"):
            raise ValueError(flavour)
        self.flavour = flavour
        self.cloud = flavour == "cloud"
        self.contract = contract
        self.page_size = page_size
        self.faults = Faults()
        # Seconds every search waits before it answers (a slow Jira, to widen race windows).
        self.search_delay = 0.0
        self.log: list[Record] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.state = JiraState(cloud=self.cloud, base_url=self.url)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="jira-test-server", daemon=True
        )
        self._routes = self._build_routes()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> JiraTestServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- test helpers -----------------------------------------------------------------------

    def mark(self) -> int:
        """A position in the request log (to count what one run sent)."""
        return len(self.log)

    def since(self, mark: int) -> list[Record]:
        """Requests logged after `mark`."""
        return self.log[mark:]

    def fail_next(self, method: str, path_regex: str, kind: str) -> None:
        """Script one fault for the next request matching method + path."""
        self.faults.scripted.append((method, path_regex, kind))

    def credentials_env(self) -> dict[str, str]:
        """The environment variables the CLI reads for this flavour."""
        if self.cloud:
            return {"JIRA_EMAIL": self.EMAIL, "JIRA_API_TOKEN": self.API_TOKEN}
        return {"JIRA_PAT": self.PAT}

    # -- HTTP plumbing ----------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stalls

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request log is kept in JiraTestServer.log

            def do_GET(self) -> None:
                server._serve(self)

            def do_POST(self) -> None:
                server._serve(self)

            def do_PUT(self) -> None:
                server._serve(self)

            def do_DELETE(self) -> None:
                server._serve(self)

        return Handler

    def _authorized(self, header: str) -> bool:
        if self.cloud:
            want = "Basic " + base64.b64encode(f"{self.EMAIL}:{self.API_TOKEN}".encode()).decode()
        else:
            want = f"Bearer {self.PAT}"
        return header == want

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        path = split.path
        query = parse_qsl(split.query, keep_blank_values=True)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        method = h.command
        headers = dict(h.headers.items())
        ctype = h.headers.get("Content-Type", "")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Record(method, path, query, None, None, body)
        with self._lock:
            self.log.append(rec)
            fault = self.faults.pick(method, path) if path.startswith("/rest/") else None
        rec.fault = fault

        if self.contract is not None and path.startswith("/rest/api/"):
            problem = self.contract.check_request(method, path, query, headers, raw, ctype)
            if problem:
                self.violations.append(problem)

        if self.search_delay and path.endswith(("/search", "/search/jql")):
            time.sleep(self.search_delay)
        if fault == "drop_before":
            h.close_connection = True
            return
        if fault in ("429", "500", "502", "503"):
            status = int(fault)
            extra: dict[str, str] = (
                {"Retry-After": str(self.faults.retry_after)} if status in (429, 503) else {}
            )
            msg = "Rate limit exceeded." if status == 429 else "Internal server error (injected)."
            self._send(
                h,
                rec,
                method,
                path,
                query,
                headers,
                raw,
                ctype,
                status,
                {"errorMessages": [msg], "errors": {}},
                extra,
            )
            return

        try:
            if not self._authorized(h.headers.get("Authorization", "")):
                raise _Reply(
                    401,
                    {
                        "errorMessages": [
                            "You are not authenticated. Authentication required to perform this operation."
                        ],
                        "errors": {},
                    },
                )
            status, payload = self._dispatch(method, path, dict(query), query, body)
            extra = {}
        except _Reply as r:
            status, payload, extra = r.status, r.body, r.headers
        except JiraFailure as f:
            status, payload, extra = f.status, f.body(), {}
        except jql.JqlError as e:
            status, payload, extra = 400, {"errorMessages": [str(e)], "errors": {}}, {}
        except Exception as e:  # a bug in the server: report it as a violation, answer 500
            self.violations.append(f"{method} {path}: server error {type(e).__name__}: {e}")
            status, payload, extra = 500, {"errorMessages": [f"server bug: {e}"], "errors": {}}, {}

        if fault == "drop_after":
            # The work is done (e.g. the issue is stored) but the client never hears of it.
            rec.status = None
            h.close_connection = True
            return
        self._send(h, rec, method, path, query, headers, raw, ctype, status, payload, extra)

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        rec: Record,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        raw: bytes,
        ctype: str,
        status: int,
        payload: Any,
        extra: dict[str, str],
    ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        if self.contract is not None and path.startswith("/rest/api/"):
            problem = self.contract.check_response(
                method, path, query, headers, raw, ctype, status, data, "application/json"
            )
            if problem:
                self.violations.append(problem)
        rec.status = status
        h.send_response(status)
        if data:
            h.send_header("Content-Type", "application/json;charset=UTF-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in extra.items():
            h.send_header(k, v)
        h.end_headers()
        if data:
            h.wfile.write(data)

    # -- routing ----------------------------------------------------------------------------

    def _build_routes(self) -> list[Route]:
        api = r"/rest/api/(?P<api>[23])"
        key = r"(?P<key>[A-Za-z0-9_-]+)"
        table: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("GET", rf"{api}/serverInfo", self._server_info),
            ("GET", rf"{api}/myself", self._myself),
            ("GET", rf"{api}/field", self._fields),
            ("GET", rf"{api}/project/(?P<project>[A-Za-z0-9_]+)", self._project),
            ("GET", rf"{api}/search/jql", self._search_jql),
            ("POST", rf"{api}/search/jql", self._search_jql),
            ("GET", rf"{api}/search", self._search_old),
            ("POST", rf"{api}/search", self._search_old),
            ("POST", rf"{api}/issue", self._create),
            ("POST", rf"{api}/issueLink", self._issue_link),
            ("GET", rf"{api}/issue/{key}/transitions", self._get_transitions),
            ("POST", rf"{api}/issue/{key}/transitions", self._do_transition),
            ("GET", rf"{api}/issue/{key}/comment", self._get_comments),
            ("POST", rf"{api}/issue/{key}/comment", self._add_comment),
            ("GET", rf"{api}/issue/{key}/properties", self._property_keys),
            ("GET", rf"{api}/issue/{key}/properties/(?P<prop>[^/]+)", self._get_property),
            ("PUT", rf"{api}/issue/{key}/properties/(?P<prop>[^/]+)", self._put_property),
            ("DELETE", rf"{api}/issue/{key}/properties/(?P<prop>[^/]+)", self._delete_property),
            ("GET", rf"{api}/issue/{key}", self._get_issue),
            ("PUT", rf"{api}/issue/{key}", self._edit_issue),
        ]
        return [(m, re.compile(p + "$"), fn) for m, p, fn in table]

    def _dispatch(
        self, method: str, path: str, q: dict[str, str], query: list[tuple[str, str]], body: Any
    ) -> tuple[int, Any]:
        for m, pattern, fn in self._routes:
            match = pattern.match(path)
            if match and m == method:
                return fn(q=q, query=query, body=body, **match.groupdict())
        self.violations.append(f"{method} {path}: the test server has no such route")
        raise _Reply(404, {"errorMessages": ["Not found"], "errors": {}})

    # -- handlers ---------------------------------------------------------------------------

    def _server_info(self, api: str, **_: Any) -> tuple[int, Any]:
        info = {
            "baseUrl": self.url,
            "version": "1001.0.0-SNAPSHOT" if self.cloud else "9.12.15",
            "versionNumbers": [1001, 0, 0] if self.cloud else [9, 12, 15],
            "deploymentType": "Cloud" if self.cloud else "Server",
            "buildNumber": 100_000 if self.cloud else 9_120_015,
            # RFC 3339 here, as the document's `date-time` format requires (issue fields are free-form).
            "buildDate": "2025-01-01T00:00:00.000+00:00",
            "serverTime": self.state.now.isoformat(timespec="milliseconds"),
            "scmInfo": "0" * 40,
            "serverTitle": "Jira test server",
        }
        return 200, info

    def _myself(self, api: str, **_: Any) -> tuple[int, Any]:
        if self.cloud:
            return 200, {"accountId": "ecsscan-bot", "displayName": "ECS scan bot", "active": True}
        return 200, {
            "name": "ecsscan-bot",
            "key": "ecsscan-bot",
            "displayName": "ECS scan bot",
            "active": True,
        }

    def _fields(self, api: str, **_: Any) -> tuple[int, Any]:
        names = [
            "summary",
            "description",
            "labels",
            "status",
            "resolution",
            "resolutiondate",
            "created",
            "duedate",
        ]
        return 200, [
            {"id": n, "key": n, "name": n.title(), "custom": False, "clauseNames": [n], "navigable": True}
            for n in names
        ]

    def _project(self, api: str, project: str, **_: Any) -> tuple[int, Any]:
        proj = self.state.projects.get(project)
        if proj is None:
            raise _Reply(
                404, {"errorMessages": [f"No project could be found with key '{project}'."], "errors": {}}
            )
        return 200, {
            "id": proj.id,
            "key": proj.key,
            "name": proj.name,
            "self": f"{self.url}/rest/api/{api}/project/{proj.id}",
            "components": [{"id": cid, "name": n} for cid, n in proj.components.items()],
        }

    @staticmethod
    def _list_param(query: list[tuple[str, str]], name: str) -> list[str] | None:
        values = [v for k, v in query if k == name]
        if not values:
            return None
        return [part.strip() for v in values for part in v.split(",") if part.strip()]

    def _search_args(
        self, query: list[tuple[str, str]], body: Any
    ) -> tuple[str, list[str] | None, list[str], int, str | None, int]:
        if isinstance(body, dict):
            fields = body.get("fields")
            props = body.get("properties") or []
            return (
                str(body.get("jql") or ""),
                list(fields) if fields is not None else None,
                list(props),
                int(body.get("maxResults") or 50),
                body.get("nextPageToken"),
                int(body.get("startAt") or 0),
            )
        q = dict(query)
        return (
            q.get("jql", ""),
            self._list_param(query, "fields"),
            self._list_param(query, "properties") or [],
            int(q.get("maxResults") or 50),
            q.get("nextPageToken"),
            int(q.get("startAt") or 0),
        )

    def _search_jql(self, api: str, query: list[tuple[str, str]], body: Any, **_: Any) -> tuple[int, Any]:
        if not self.cloud:
            raise _Reply(404, {"errorMessages": ["null for uri: /rest/api/2/search/jql"], "errors": {}})
        text, fields, props, max_results, token, _start = self._search_args(query, body)
        parsed = jql.parse(text)
        if not parsed.bounded:
            raise _Reply(
                400,
                {
                    "errorMessages": [
                        "Unbounded JQL queries are not allowed here. "
                        "Please add a search restriction to your query."
                    ],
                    "errors": {},
                },
            )
        offset = 0
        if token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(token.encode()))
                offset = int(tok["o"])
                if tok["q"] != text:
                    raise ValueError("token of another query")
            except (ValueError, KeyError) as exc:
                raise _Reply(
                    400, {"errorMessages": [f"Invalid nextPageToken: {exc}"], "errors": {}}
                ) from None
        hits = self.state.search(text)
        size = max(1, min(max_results, self.page_size))
        page = hits[offset : offset + size]
        # Cloud's enhanced search returns only `id` unless fields are asked for.
        wanted = fields if fields is not None else ["id"]
        out: dict[str, Any] = {
            "issues": [self.state.issue_json(i, fields=wanted, properties=props, api=api) for i in page],
            "isLast": offset + size >= len(hits),
        }
        if offset + size < len(hits):
            out["nextPageToken"] = base64.urlsafe_b64encode(
                json.dumps({"q": text, "o": offset + size}).encode()
            ).decode()
        return 200, out

    def _search_old(self, api: str, query: list[tuple[str, str]], body: Any, **_: Any) -> tuple[int, Any]:
        if self.cloud:
            raise _Reply(
                410,
                {
                    "errorMessages": [
                        "The requested API has been removed. "
                        "Please migrate to the /rest/api/3/search/jql API."
                    ],
                    "errors": {},
                },
            )
        text, fields, props, max_results, _token, start = self._search_args(query, body)
        hits = self.state.search(text)
        size = max(1, min(max_results, self.page_size))
        page = hits[start : start + size]
        return 200, {
            "startAt": start,
            "maxResults": size,
            "total": len(hits),
            "issues": [self.state.issue_json(i, fields=fields, properties=props, api=api) for i in page],
        }

    def _create(self, api: str, body: Any, **_: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise _Reply(400, {"errorMessages": ["Request body must be a JSON object"], "errors": {}})
        issue = self.state.create(body, v3=api == "3")
        return 201, {
            "id": str(issue.id),
            "key": issue.key,
            "self": f"{self.url}/rest/api/{api}/issue/{issue.id}",
        }

    def _issue_link(self, api: str, body: Any, **_: Any) -> tuple[int, Any]:
        self.state.link(
            body.get("type") or {},
            inward_key=str((body.get("inwardIssue") or {}).get("key")),
            outward_key=str((body.get("outwardIssue") or {}).get("key")),
        )
        return 201, None

    def _get_issue(self, api: str, key: str, query: list[tuple[str, str]], **_: Any) -> tuple[int, Any]:
        issue = self.state.get(key)
        return 200, self.state.issue_json(
            issue,
            fields=self._list_param(query, "fields"),
            properties=self._list_param(query, "properties") or [],
            api=api,
        )

    def _edit_issue(self, api: str, key: str, body: Any, **_: Any) -> tuple[int, Any]:
        self.state.edit(key, body or {}, v3=api == "3")
        return 204, None

    def _get_transitions(self, api: str, key: str, q: dict[str, str], **_: Any) -> tuple[int, Any]:
        expand_fields = "transitions.fields" in (q.get("expand") or "")
        out = []
        for t in self.state.transitions(key):
            item: dict[str, Any] = {
                "id": t.id,
                "name": t.name,
                "to": self.state.status_json(t.to),
                "hasScreen": t.resolution_screen,
                "isGlobal": True,
                "isInitial": False,
                "isAvailable": True,
                "isConditional": False,
            }
            if expand_fields:
                item["fields"] = (
                    {
                        "resolution": {
                            "key": "resolution",
                            "name": "Resolution",
                            "required": True,
                            "operations": ["set"],
                            "schema": {"type": "resolution", "system": "resolution"},
                            "allowedValues": [{"id": i, "name": n} for i, n in sorted(RESOLUTIONS.items())],
                        }
                    }
                    if t.resolution_screen
                    else {}
                )
            out.append(item)
        return 200, {"expand": "transitions", "transitions": out}

    def _do_transition(self, api: str, key: str, body: Any, **_: Any) -> tuple[int, Any]:
        tr = (body or {}).get("transition") or {}
        self.state.transition(key, str(tr.get("id")), body=body or {}, v3=api == "3")
        return 204, None

    def _get_comments(self, api: str, key: str, **_: Any) -> tuple[int, Any]:
        issue = self.state.get(key)
        comments = [self.state.comment_json(c, issue, api) for c in issue.comments]
        return 200, {"startAt": 0, "maxResults": len(comments), "total": len(comments), "comments": comments}

    def _add_comment(self, api: str, key: str, body: Any, **_: Any) -> tuple[int, Any]:
        issue = self.state.get(key)
        c = self.state.add_comment(key, body or {}, v3=api == "3")
        return 201, self.state.comment_json(c, issue, api)

    def _property_keys(self, api: str, key: str, **_: Any) -> tuple[int, Any]:
        issue = self.state.get(key)
        return 200, {
            "keys": [
                {"key": k, "self": f"{self.url}/rest/api/{api}/issue/{issue.id}/properties/{k}"}
                for k in issue.properties
            ]
        }

    def _get_property(self, api: str, key: str, prop: str, **_: Any) -> tuple[int, Any]:
        issue = self.state.get(key)
        if prop not in issue.properties:
            raise _Reply(404, {"errorMessages": [f"The property {prop} does not exist."], "errors": {}})
        return 200, {"key": prop, "value": issue.properties[prop]}

    def _put_property(self, api: str, key: str, prop: str, body: Any, **_: Any) -> tuple[int, Any]:
        with self.state.lock:
            issue = self.state.get(key)
            new = self.state.set_property(issue, prop, body)
        return (201 if new else 200), None

    def _delete_property(self, api: str, key: str, prop: str, **_: Any) -> tuple[int, Any]:
        with self.state.lock:
            issue = self.state.get(key)
            if prop not in issue.properties:
                raise _Reply(404, {"errorMessages": [f"The property {prop} does not exist."], "errors": {}})
            del issue.properties[prop]
        return 204, None

    # -- assertions helpers -----------------------------------------------------------------

    def issues_with_label(self, label: str) -> list[Any]:
        """Issues carrying a label (any status)."""
        return [i for i in self.state.issues.values() if label in i.labels]

    def snapshot(self, labels_prefix: str = "ecsscan-") -> dict[str, Any]:
        """A comparable picture of the tickets: per dedup label, status/resolution/property/text."""
        out: dict[str, Any] = {}
        for issue in sorted(self.state.issues.values(), key=lambda i: i.id):
            dedup = sorted(lb for lb in issue.labels if re.fullmatch(r"ecsscan-[0-9a-f]{16}", lb))
            prop = issue.properties.get("ecsscan") or {}
            out.setdefault(",".join(dedup), []).append(
                {
                    "project": issue.project,
                    "status": STATUSES[issue.status].name,
                    "resolution": issue.resolution,
                    "labels": sorted(issue.labels),
                    "fp": prop.get("fp"),
                    "findings": prop.get("findings"),
                    "summary": issue.summary,
                    "priority": PRIORITIES.get(issue.priority or ""),
                    "duedate": issue.duedate,
                    "links": sorted((lk.outward, lk.other) for lk in issue.links),
                }
            )
        return out
