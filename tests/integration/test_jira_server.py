"""The Jira test server itself: the `jira` client's own calls work against it within the
contract (with the documented tolerances), and what breaks the contract is caught."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from jira import JIRA, JIRAError

from tests.jira_server.contract import ContractChecker
from tests.jira_server.server import JiraTestServer
from tests.jira_server.state import STATUSES

pytestmark = pytest.mark.integration


def _client(server: JiraTestServer) -> JIRA:
    auth: dict[str, Any] = (
        {"basic_auth": (server.EMAIL, server.API_TOKEN)} if server.cloud else {"token_auth": server.PAT}
    )
    return JIRA(server.url, max_retries=0, **auth)


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_the_jira_client_library_against_the_server(jira_server: JiraTestServer) -> None:
    j = _client(jira_server)
    assert j._is_cloud is jira_server.cloud
    issue = j.create_issue(
        fields={
            "project": {"key": "SEC"},
            "issuetype": {"name": "Bug"},
            "summary": "s",
            "description": "h3. wiki",
            "labels": ["a"],
        },
        prefetch=False,
    )
    j.add_comment(issue.key, "a *wiki* comment")
    j.add_issue_property(issue.key, "ecsscan", {"v": 1})
    assert j.issue_property(issue.key, "ecsscan").raw["value"] == {"v": 1}
    j.transition_issue(issue.key, "31")  # by id: the client sends the id as an int (TRANSITION_ID_INT)
    assert STATUSES[jira_server.state.issues[issue.key].status].category == "done"
    if jira_server.cloud:
        found = j.enhanced_search_issues('labels = "a"', fields=["status"], json_result=True, use_post=True)
        assert [i["key"] for i in found["issues"]] == [issue.key]  # NULL_SEARCH_BODY tolerated
        assert j.search_issues('labels = "a"', fields=["status"])[0].key == issue.key
    else:
        assert j.enhanced_search_issues('labels = "a"') is None  # Cloud only, as the client says
        assert j.search_issues('labels = "a"', fields=["status"])[0].key == issue.key
    j.close()


def test_cloud_refuses_the_removed_search_and_unbounded_queries(jira_server: JiraTestServer) -> None:
    j = _client(jira_server)
    with pytest.raises(JIRAError) as gone:
        j._get_json("search", params={"jql": "labels = a"})
    assert gone.value.status_code == 410
    with pytest.raises(JIRAError) as unbounded:
        j._get_json("search/jql", params={"jql": "ORDER BY created"})
    assert unbounded.value.status_code == 400
    j.close()


def test_v3_paths_take_adf_only(jira_server: JiraTestServer) -> None:
    auth = (jira_server.EMAIL, jira_server.API_TOKEN)
    base = {"project": {"key": "SEC"}, "issuetype": {"name": "Bug"}, "summary": "s"}
    plain = requests.post(
        f"{jira_server.url}/rest/api/3/issue",
        json={"fields": {**base, "description": "wiki"}},
        auth=auth,
        timeout=10,
    )
    assert plain.status_code == 400
    adf = {
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
    empty = ("PUT", "/rest/api/2/issue/A-1", [], h, b"{}", "application/json")
    assert jira_contract.check_response(*empty, 204, b"", "") is None  # EMPTY_SUCCESS_BODY
