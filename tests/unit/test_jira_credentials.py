"""Jira credentials: the one way in, from a mapping, a Secret's data or the environment."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from ecs_scan_operator.adapters.jira_credentials import JiraCredentials
from ecs_scan_operator.errors import AuthError

TOKEN = "s3cr3t-t0ken-value"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _authorization(creds: JiraCredentials) -> str:
    """The Authorization header the credentials put on a request."""
    prepared = requests.Request("GET", "https://jira.example.com/rest/api/2/myself").prepare()
    return str(creds.auth()(prepared).headers["Authorization"])


@pytest.mark.parametrize(
    ("data", "header"),
    [
        ({"email": "bot@example.com", "apiToken": TOKEN}, "Basic " + _b64(f"bot@example.com:{TOKEN}")),
        ({"token": TOKEN}, f"Bearer {TOKEN}"),
        (
            {"email": SecretStr("bot@example.com"), "apiToken": SecretStr(TOKEN)},
            "Basic " + _b64(f"bot@example.com:{TOKEN}"),
        ),
        ({"token": TOKEN.encode()}, f"Bearer {TOKEN}"),
        ({"token": f"  {TOKEN}\n"}, f"Bearer {TOKEN}"),  # Secrets made with echo keep a newline
    ],
)
def test_credential_forms(data: dict[str, Any], header: str) -> None:
    creds = JiraCredentials.from_mapping(data)
    assert _authorization(creds) == header
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
        ({"token": b"\xff\xfe" + TOKEN.encode()}, "'token' is not UTF-8 text"),
    ],
)
def test_bad_credentials_say_which_keys_never_the_values(data: dict[str, Any], message: str) -> None:
    with pytest.raises(AuthError) as err:
        JiraCredentials.from_mapping(data)
    assert message in str(err.value)
    assert TOKEN not in str(err.value) and TOKEN not in repr(err.value)


def test_from_secret_data_decodes_base64() -> None:
    creds = JiraCredentials.from_secret_data({"email": _b64("bot@example.com"), "apiToken": _b64(TOKEN)})
    assert _authorization(creds) == "Basic " + _b64(f"bot@example.com:{TOKEN}")
    with pytest.raises(AuthError, match="'token' is not valid base64"):
        JiraCredentials.from_secret_data({"token": "%%%"})


@pytest.mark.parametrize(
    ("env", "scheme"),
    [
        ({"JIRA_PAT": TOKEN}, "Bearer"),
        ({"JIRA_EMAIL": "bot@example.com", "JIRA_API_TOKEN": TOKEN}, "Basic"),
        ({"JIRA_PAT": TOKEN, "JIRA_EMAIL": " "}, "Bearer"),  # blank counts as unset
        ({}, None),
    ],
)
def test_from_env(env: dict[str, str], scheme: str | None) -> None:
    creds = JiraCredentials.from_env(env)
    assert (None if creds is None else _authorization(creds).split()[0]) == scheme


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JIRA_EMAIL": "bot@example.com"}, "both email and apiToken"),
        ({"JIRA_API_TOKEN": TOKEN}, "both email and apiToken"),
        # One rule for the environment and the Secret: two forms at once is ambiguous, not guessed.
        ({"JIRA_PAT": TOKEN, "JIRA_EMAIL": "x@example.com"}, "not both"),
    ],
)
def test_incomplete_or_ambiguous_env_is_an_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(AuthError, match=message) as err:
        JiraCredentials.from_env(env)
    assert TOKEN not in str(err.value)


def test_the_secret_and_the_environment_follow_the_same_rules() -> None:
    both = {"email": "bot@example.com", "apiToken": TOKEN, "token": TOKEN}
    with pytest.raises(AuthError, match="not both"):
        JiraCredentials.from_secret_data({k: _b64(v) for k, v in both.items()})
    with pytest.raises(AuthError, match="not both"):
        JiraCredentials.from_env({"JIRA_EMAIL": both["email"], "JIRA_API_TOKEN": TOKEN, "JIRA_PAT": TOKEN})


def test_secrets_include_the_basic_auth_header_value() -> None:
    creds = JiraCredentials.from_mapping({"email": "bot@example.com", "apiToken": TOKEN})
    assert _b64(f"bot@example.com:{TOKEN}") in creds.secrets()
