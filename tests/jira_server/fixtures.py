"""pytest fixtures of the Jira test server (registered in tests/conftest.py's pytest_plugins).

`jira_server` is a started server, Cloud by default; parametrize it indirectly with "cloud" or
"dc" for the other flavour. At teardown it fails the test if any request or response broke the
contract, so a test cannot pass while the client or the server drifts from Jira's API.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.jira_server.contract import SPEC_FILE, ContractChecker
from tests.jira_server.server import JiraTestServer


@pytest.fixture(scope="session")
def jira_contract() -> ContractChecker:
    """Atlassian's Jira Cloud platform v3 OpenAPI document, loaded once per session."""
    if not SPEC_FILE.is_file():
        message = (
            f"Jira contract tests need {SPEC_FILE.resolve()} (the repository's sibling shared/contracts "
            "folder); it is absent in this checkout"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # CI has shared/ beside the clone: never let the contract tests vanish there
        pytest.skip(message)
    return ContractChecker.load(SPEC_FILE)


@pytest.fixture
def jira_server(
    request: pytest.FixtureRequest, jira_contract: ContractChecker, monkeypatch: pytest.MonkeyPatch
) -> Iterator[JiraTestServer]:
    """A started Jira test server with project SEC (components team-a, team-b) and project OPS.

    It listens on 127.0.0.1, where credentials are not sent by default: the operator setting
    ECS_SCAN_JIRA_ALLOWED_HOSTS allows loopback for the test, as a person would for a Jira on a
    private address.
    """
    monkeypatch.setenv("ECS_SCAN_JIRA_ALLOWED_HOSTS", "127.0.0.1")
    flavour = getattr(request, "param", "cloud")
    server = JiraTestServer(flavour, contract=jira_contract).start()
    server.state.add_project("SEC", "Security", components=["team-a", "team-b"])
    server.state.add_project("OPS", "Operations", components=["platform"])
    try:
        yield server
    finally:
        server.stop()
    assert not server.violations, "Jira contract violations:\n" + "\n".join(server.violations[:20])
