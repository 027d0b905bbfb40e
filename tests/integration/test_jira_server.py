"""The Jira test server itself: our transport's calls work against it within the contract (with
the documented tolerances), and what breaks the contract is caught."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from ecs_scan_operator.adapters.jira_credentials import JiraCredentials
from ecs_scan_operator.adapters.jira_transport import JiraTransport
from ecs_scan_operator.adapters.jira_wire import Deployment
from ecs_scan_operator.core.destinations import AllowList
from ecs_scan_operator.errors import PermanentError
from tests.jira_server.contract import ContractChecker
from tests.jira_server.server import JiraTestServer
from tests.jira_server.state import STATUSES

pytestmark = pytest.mark.integration


def _transport(server: JiraTestServer) -> JiraTransport:
    creds = JiraCredentials.from_env(server.credentials_env())
    assert creds is not None
    return JiraTransport(server.url, creds, allow=AllowList.parse(["127.0.0.1"]), sleep=lambda _: None)


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_the_transport_against_the_server(jira_server: JiraTestServer) -> None:
    t = _transport(jira_server)
    t.begin_stage()
    assert t.deployment is (Deployment.CLOUD if jira_server.cloud else Deployment.DATA_CENTER)
    fields = {"project": {"key": "SEC"}, "issuetype": {"name": "Bug"}, "summary": "s", "labels": ["a"]}
    key = t.call("POST", "issue", idempotent=False, body={"fields": {**fields, "description": "h3. wiki"}})[
        "key"
    ]
    t.call("POST", f"issue/{key}/comment", idempotent=False, body={"body": "a *wiki* comment"})
    t.call("PUT", f"issue/{key}/properties/ecsscan", idempotent=True, body={"v": 1})
    assert t.call("GET", f"issue/{key}/properties/ecsscan", idempotent=True)["value"] == {"v": 1}
    t.call("POST", f"issue/{key}/transitions", idempotent=False, body={"transition": {"id": "31"}})
    assert STATUSES[jira_server.state.issues[key].status].category == "done"
    path = "search/jql" if jira_server.cloud else "search"
    found = t.call("GET", path, idempotent=True, params={"jql": 'labels = "a"', "fields": "status"})
    assert [i["key"] for i in found["issues"]] == [key]
    assert t.counters.requests == len(jira_server.log) == 7  # serverInfo once, one request per call
    t.close()


def test_cloud_refuses_the_removed_search_and_unbounded_queries(jira_server: JiraTestServer) -> None:
    t = _transport(jira_server)
    t.begin_stage()
    with pytest.raises(PermanentError, match=r"gone \(410\)"):
        t.call("GET", "search", idempotent=True, params={"jql": "labels = a"})
    with pytest.raises(PermanentError, match=r"\(400\)"):
        t.call("GET", "search/jql", idempotent=True, params={"jql": "ORDER BY created"})
    t.close()


def test_v3_paths_take_adf_only(jira_server: JiraTestServer) -> None:
    auth = (jira_server.EMAIL, jira_server.API_TOKEN)
    base: dict[str, Any] = {"project": {"key": "SEC"}, "issuetype": {"name": "Bug"}, "summary": "s"}
    plain = requests.post(
        f"{jira_server.url}/rest/api/3/issue",
        json={"fields": {**base, "description": "wiki"}},
        auth=auth,
        timeout=10,
    )
    assert plain.status_code == 400
    adf: dict[str, Any] = {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x"}]}],
    }
    ok = requests.post(
        f"{jira_server.url}/rest/api/3/issue",
        json={"fields": {**base, "description": adf}},
        auth=auth,
        timeout=10,
    )
    assert ok.status_code == 201


def test_the_checker_catches_broken_requests_and_responses(jira_contract: ContractChecker) -> None:
    h = {"Authorization": "Basic eDp5"}
    bad_create = json.dumps({"fields": {}, "properties": "not-a-list"}).encode()
    assert jira_contract.check_request("POST", "/rest/api/2/issue", [], h, bad_create, "application/json")
    assert jira_contract.check_request("GET", "/rest/api/2/nope", [], h, None, "")
    assert jira_contract.check_request("GET", "/rest/api/2/search/jql", [("maxResults", "many")], h, None, "")
    good = json.dumps({"transition": {"id": 31}}).encode()  # TRANSITION_ID_INT
    assert (
        jira_contract.check_request(
            "POST", "/rest/api/2/issue/A-1/transitions", [], h, good, "application/json"
        )
        is None
    )
    nulls = json.dumps({"jql": "labels = a", "expand": None, "properties": None}).encode()  # NULL_SEARCH_BODY
    assert (
        jira_contract.check_request("POST", "/rest/api/2/search/jql", [], h, nulls, "application/json")
        is None
    )
    req = ("GET", "/rest/api/2/search/jql", [("jql", "labels = a")], h, None, "")
    wrong_page = json.dumps({"issues": [{"key": 1}], "isLast": "yes"}).encode()
    assert jira_contract.check_response(*req, 200, wrong_page, "application/json")
    assert (
        jira_contract.check_response(*req, 429, b'{"errorMessages": ["slow down"]}', "application/json")
        is None
    )
    assert jira_contract.check_response(*req, 503, b'{"errorMessages": 3}', "application/json")
    empty: tuple[str, str, list[tuple[str, str]], dict[str, str], bytes, str] = (
        "PUT",
        "/rest/api/2/issue/A-1",
        [],
        h,
        b"{}",
        "application/json",
    )
    assert jira_contract.check_response(*empty, 204, b"", "") is None  # EMPTY_SUCCESS_BODY
