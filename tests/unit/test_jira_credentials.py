"""Jira credentials and the adapter's parsing helpers (no server needed)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from ecs_scan_operator.adapters.jira import (
    JiraCredentials,
    _parse_time,
    _pick_resolution,
    _pick_transition,
    _retry_after,
    _ticket,
)
from ecs_scan_operator.core.tickets import JiraWorkflow
from ecs_scan_operator.errors import AuthError

TOKEN = "s3cr3t-t0ken-value"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"email": "bot@example.com", "apiToken": TOKEN}, "basic_auth"),
        ({"token": TOKEN}, "token_auth"),
        ({"email": SecretStr("bot@example.com"), "apiToken": SecretStr(TOKEN)}, "basic_auth"),
        ({"token": TOKEN.encode()}, "token_auth"),
        ({"token": f"  {TOKEN}\n"}, "token_auth"),  # Secrets made with echo keep a newline
    ],
)
def test_credential_forms(data: dict[str, Any], kind: str) -> None:
    creds = JiraCredentials.from_mapping(data)
    auth = creds.client_auth()
    assert list(auth) == [kind]
    assert TOKEN in str(auth[kind])
    assert TOKEN not in repr(creds) and TOKEN not in str(creds)
    assert TOKEN in creds.secrets()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "no Jira credentials"),
        ({"email": "bot@example.com"}, "both email and apiToken"),
        ({"apiToken": TOKEN}, "both email and apiToken"),
        ({"email": "bot@example.com", "apiToken": TOKEN, "token": TOKEN}, "not both"),
        ({"token": "   "}, "no Jira credentials"),
    ],
)
def test_bad_credentials_say_which_keys_never_the_values(data: dict[str, Any], message: str) -> None:
    with pytest.raises(AuthError) as err:
        JiraCredentials.from_mapping(data)
    assert message in str(err.value)
    assert TOKEN not in str(err.value) and TOKEN not in repr(err.value)


def test_from_secret_data_decodes_base64() -> None:
    creds = JiraCredentials.from_secret_data({"email": _b64("bot@example.com"), "apiToken": _b64(TOKEN)})
    assert creds.client_auth() == {"basic_auth": ("bot@example.com", TOKEN)}
    with pytest.raises(AuthError, match="'token' is not valid base64"):
        JiraCredentials.from_secret_data({"token": "%%%"})


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({"JIRA_PAT": TOKEN}, "token_auth"),
        ({"JIRA_EMAIL": "bot@example.com", "JIRA_API_TOKEN": TOKEN}, "basic_auth"),
        ({"JIRA_PAT": TOKEN, "JIRA_EMAIL": "x@example.com"}, "token_auth"),
        ({}, None),
    ],
)
def test_from_env(env: dict[str, str], kind: str | None) -> None:
    creds = JiraCredentials.from_env(env)
    assert (None if creds is None else next(iter(creds.client_auth()))) == kind


def test_half_set_env_is_an_error() -> None:
    with pytest.raises(AuthError, match="both email and apiToken"):
        JiraCredentials.from_env({"JIRA_EMAIL": "bot@example.com"})


def test_secrets_include_the_basic_auth_header_value() -> None:
    creds = JiraCredentials.from_mapping({"email": "bot@example.com", "apiToken": TOKEN})
    assert _b64(f"bot@example.com:{TOKEN}") in creds.secrets()


TRANSITIONS = [
    {"id": "11", "to": {"name": "To Do", "statusCategory": {"key": "new"}}},
    {"id": "21", "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}},
    {"id": "41", "to": {"name": "Won't Fix", "statusCategory": {"key": "done"}}},
    {
        "id": "31",
        "to": {"name": "Done", "statusCategory": {"key": "done"}},
        "fields": {
            "resolution": {"allowedValues": [{"name": "Done"}, {"name": "Won't Do"}, {"name": "Fixed"}]}
        },
    },
]


@pytest.mark.parametrize(
    ("options", "which", "want"),
    [
        (TRANSITIONS, "close", "31"),
        (TRANSITIONS[2:3], "close", None),  # only a won't-fix target: never used to close as fixed
        (TRANSITIONS, "reopen", "11"),
        (TRANSITIONS[1:], "reopen", "21"),
        (TRANSITIONS[2:], "reopen", None),
    ],
)
def test_pick_transition(options: list[dict[str, Any]], which: str, want: str | None) -> None:
    got = _pick_transition(options, which, JiraWorkflow())
    assert (got["id"] if got else None) == want


@pytest.mark.parametrize(
    ("allowed", "preferred", "want"),
    [
        (["Done", "Won't Do", "Fixed"], "Fixed", "Fixed"),
        (["Done", "Won't Do"], "Fixed", "Done"),
        (["done", "fixed"], "Fixed", "fixed"),
        (["Won't Do"], "Fixed", None),
        (None, "Fixed", None),  # no resolution on the screen: none sent
    ],
)
def test_pick_resolution(allowed: list[str] | None, preferred: str, want: str | None) -> None:
    transition: dict[str, Any] = {"id": "31"}
    if allowed is not None:
        transition["fields"] = {"resolution": {"allowedValues": [{"name": n} for n in allowed]}}
    assert _pick_resolution(transition, preferred, JiraWorkflow()) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("2025-01-02T03:04:05.000+0000", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05.000+00:00", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05+0100", datetime(2025, 1, 2, 2, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("garbage", None),
        (None, None),
    ],
)
def test_parse_time(value: Any, want: datetime | None) -> None:
    assert _parse_time(value) == want


@pytest.mark.parametrize(("header", "want"), [("7", 7.0), ("0", 0.0), ("soon", None), (None, None)])
def test_retry_after(header: str | None, want: float | None) -> None:
    resp = requests.Response()
    if header is not None:
        resp.headers["Retry-After"] = header
    assert _retry_after(resp) == want


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    resp = requests.Response()
    resp.headers["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert _retry_after(resp) == 0.0


def test_ticket_from_a_search_hit() -> None:
    hit = {
        "id": "10001",
        "key": "SEC-1",
        "fields": {
            "labels": ["ecsscan-0123456789abcdef"],
            "status": {"name": "Done", "statusCategory": {"key": "done"}},
            "resolution": {"name": "Won't Do"},
            "resolutiondate": "2025-01-02T03:04:05.000+0000",
            "created": "2025-01-01T03:04:05.000+0000",
            "duedate": "2025-02-01",
            "project": {"key": "SEC"},
        },
        "properties": {"ecsscan": {"v": 99}},
    }
    t = _ticket(hit)
    assert (t.key, t.status, t.status_category, t.resolution, t.project) == (
        "SEC-1",
        "Done",
        "done",
        "Won't Do",
        "SEC",
    )
    assert t.done and t.duedate == date(2025, 2, 1) and t.resolved is not None
    assert t.prop is None  # a property of another version is not ours to trust
    bare = _ticket({"id": "1", "key": "SEC-2", "fields": {}})
    assert bare.status_category == "" and bare.prop is None and bare.resolution is None
