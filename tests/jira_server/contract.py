"""Contract checks: every request the Jira test server receives and every response it sends is
validated against Atlassian's OpenAPI description of the Jira Cloud platform REST API v3.

The spec lives in the sibling `shared/contracts` folder of the repository checkout (CI clones the
repository with `shared/` beside it); tests skip with a clear message only when it is absent.
Atlassian's file fails strict self-validation, so spec validation is off and only requests and
responses are checked. Where Jira (and the `jira` client) legitimately differ from that v3
document, the difference is tolerated explicitly below, one named tolerance each.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.validation.response.exceptions import MissingData
from werkzeug.datastructures import Headers, ImmutableMultiDict

#: tests/jira_server/contract.py -> parents[2] is the repository root; shared/ is its sibling.
CONTRACTS_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "contracts"
SPEC_FILE = CONTRACTS_DIR / "jira-cloud-platform-v3.json"
#: The spec names one server; requests are validated as if sent there.
SPEC_HOST = "https://your-domain.atlassian.net"


# -- The tolerated deviations, each on purpose --------------------------------------------------
#
# V2_AS_V3: `/rest/api/2/...` (what the operator and the `jira` client use, on Cloud and on Data
#   Center) is validated as its `/rest/api/3/...` twin: same paths, parameters and shapes, except
#   that v2 takes wiki-markup strings where v3 takes ADF documents (description, comment body).
#   The v3 document types those as free-form (`fields` has `additionalProperties: {}`, `Comment.body`
#   has no type), so nothing needs rewriting; the server itself enforces ADF on real v3 paths.
# DC_SEARCH: Data Center's only search is `GET/POST /rest/api/2/search` (startAt paging). Cloud
#   deprecated and removed `/rest/api/3/search`, but the document still describes it, so the DC
#   search is validated against that deprecated operation.
# TRANSITION_ID_INT: the `jira` client sends `transition.id` as an integer when given an id; Jira
#   accepts it, the document says string. Coerced to a string before validation.
# NULL_SEARCH_BODY: `enhanced_search_issues(use_post=True)` sends `"expand": null` and
#   `"properties": null`; Jira ignores them, the document's fields are not nullable. Dropped
#   before validation.
# EMPTY_SUCCESS_BODY: 204 (and the 201 of POST /issueLink) carry no body, while the document
#   declares `application/json` content for them. An empty body is accepted for those.
# UNDOCUMENTED_ERROR_STATUS: 429 and 5xx (injected faults), and the 410 Gone that Cloud answers on
#   the removed `/search`, are not listed per operation; their body is validated against the
#   document's `ErrorCollection` schema instead.
# VALIDATE_QUERY_BOOL: the `jira` client's Data Center search sends `validateQuery=True` (Python's
#   spelling of a boolean); Jira reads it case-insensitively, the document's enum is lowercase.
# NO_OAUTH2: operations accept `basicAuth`, `OAuth2` or nothing (`{}`). openapi-core cannot check
#   OAuth2 (it warns "Unsupported scheme type") and Data Center's PAT bearer is in neither scheme,
#   so the OAuth2 alternatives are dropped; the server enforces the flavour's auth itself.


# Not frozen: openapi-core's Request protocol declares `parameters` a settable attribute.
@dataclass
class _Request:
    method: str
    host_url: str
    path: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclass(frozen=True)
class _Response:
    status_code: int
    data: bytes | None
    content_type: str
    headers: Headers


class ContractChecker:
    """Validates requests and responses; violations are collected, never raised in the server."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        spec = _without_oauth2(spec)
        self._api = OpenAPI.from_dict(dict(spec), config=Config(spec_validator_cls=None))
        self._error_schema = Draft4Validator(spec["components"]["schemas"]["ErrorCollection"])
        self._lock = threading.Lock()
        self.checked = 0

    @classmethod
    def load(cls, path: Path = SPEC_FILE) -> ContractChecker:
        """Load the spec file (callers skip the tests when it does not exist)."""
        return cls(json.loads(path.read_text()))

    @staticmethod
    def spec_path(path: str) -> str:
        """V2_AS_V3 / DC_SEARCH: the v3 path a request is validated against."""
        if path.startswith("/rest/api/2/"):
            return "/rest/api/3/" + path[len("/rest/api/2/") :]
        return path

    def _request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None,
        content_type: str,
    ) -> _Request:
        spec_path = self.spec_path(path)
        query = [
            (k, v.lower())
            if k == "validateQuery" and v in ("True", "False")
            else (k, v)  # VALIDATE_QUERY_BOOL
            for k, v in query
        ]
        if body:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                doc = self._tolerate_request(method, spec_path, doc)
                body = json.dumps(doc).encode()
        return _Request(
            method=method.lower(),
            host_url=SPEC_HOST,
            path=spec_path,
            body=body or None,
            content_type=(content_type or "application/json").lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict(list(query)), header=Headers(dict(headers))
            ),
        )

    @staticmethod
    def _tolerate_request(method: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        if method == "POST" and path.endswith("/transitions"):
            tr = doc.get("transition")
            if isinstance(tr, dict) and isinstance(tr.get("id"), int):
                tr["id"] = str(tr["id"])  # TRANSITION_ID_INT
        if method == "POST" and path.endswith(("/search/jql", "/search")):
            for k in ("expand", "properties"):
                if k in doc and doc[k] is None:
                    del doc[k]  # NULL_SEARCH_BODY
        return doc

    def check_request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None,
        content_type: str,
    ) -> str | None:
        """None when the request conforms, else a description of the violation."""
        req = self._request(method, path, query, headers, body, content_type)
        try:
            with self._lock:
                self.checked += 1
                self._api.validate_request(req)
        except (PathNotFound, OperationNotFound):
            return f"{method} {path}: not an operation of the Jira REST API document"
        except Exception as exc:
            return f"{method} {path}: request: {_describe(exc)}"
        return None

    def check_response(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None,
        content_type: str,
        status: int,
        response_body: bytes,
        response_type: str,
    ) -> str | None:
        """None when the response conforms, else a description of the violation."""
        req = self._request(method, path, query, headers, body, content_type)
        if status in (410, 429) or status >= 500:
            # UNDOCUMENTED_ERROR_STATUS
            try:
                doc = json.loads(response_body or b"{}")
            except ValueError:
                return f"{method} {path}: {status} body is not JSON"
            errors = sorted(self._error_schema.iter_errors(doc), key=str)
            return f"{method} {path}: {status} body: {errors[0].message}" if errors else None
        resp = _Response(status, response_body or None, response_type or "application/json", Headers())
        try:
            with self._lock:
                self.checked += 1
                self._api.validate_response(req, resp)
        except MissingData:
            if status in (201, 204) and not response_body:
                return None  # EMPTY_SUCCESS_BODY
            return f"{method} {path}: {status} response has no body"
        except Exception as exc:
            return f"{method} {path}: {status} response: {_describe(exc)}"
        return None


def _without_oauth2(spec: Mapping[str, Any]) -> dict[str, Any]:
    """NO_OAUTH2: a copy of the document without OAuth2 security alternatives."""
    out = dict(spec)
    paths: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        new_item = dict(item)
        for method, op in item.items():
            if isinstance(op, dict) and "security" in op:
                new_op = dict(op)
                new_op["security"] = [req for req in op["security"] if "OAuth2" not in req]
                new_item[method] = new_op
        paths[path] = new_item
    out["paths"] = paths
    return out


def _describe(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None and len(parts) < 4:
        detail = getattr(cause, "schema_errors", None)
        if detail:
            parts.append("; ".join(str(getattr(e, "message", e))[:300] for e in detail[:3]))
        else:
            parts.append(f"{type(cause).__name__}: {str(cause)[:300]}")
        cause = cause.__cause__
    return " <- ".join(parts)
