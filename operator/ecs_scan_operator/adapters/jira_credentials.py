"""Jira credentials: the one way in, from a Kubernetes Secret's data, the environment or a mapping.

Jira Cloud takes an e-mail address and an API token (HTTP Basic); Data Center / Server a
personal access token (Bearer). One rule for every source: exactly one of the two forms, each
complete. Errors name the keys that are wrong, never a value; `secrets()` lists what the
adapter scrubs from every message.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

import requests
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator
from requests.auth import AuthBase, HTTPBasicAuth

from ecs_scan_operator.errors import AuthError


class JiraCredentials(BaseModel):
    """Jira Cloud (email + API token) or Data Center (personal access token) credentials."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    email: str | None = None
    api_token: SecretStr | None = None
    token: SecretStr | None = None
    # Hosts these credentials may be sent to although they resolve to a private address, granted
    # by the ScanAccessGrant that allowed the policy (on top of ECS_SCAN_JIRA_ALLOWED_HOSTS).
    allowed_hosts: tuple[str, ...] = ()

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
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    raise AuthError(f"invalid Jira credentials: {key!r} is not UTF-8 text") from None
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
            if data.get(key):
                try:
                    decoded[key] = base64.b64decode(data[key], validate=True)
                except (binascii.Error, ValueError):
                    raise AuthError(f"Secret key {key!r} is not valid base64") from None
        return cls.from_mapping(decoded)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JiraCredentials | None:
        """From JIRA_EMAIL + JIRA_API_TOKEN (Cloud) or JIRA_PAT (Data Center); None when none is set."""
        env = os.environ if env is None else env
        given = {
            key: env[var]
            for key, var in (("email", "JIRA_EMAIL"), ("apiToken", "JIRA_API_TOKEN"), ("token", "JIRA_PAT"))
            if env.get(var, "").strip()
        }
        return cls.from_mapping(given) if given else None

    def auth(self) -> AuthBase:
        """The requests auth: Basic (Cloud) or Bearer (Data Center PAT)."""
        if self.token is not None:
            return _Bearer(self.token)
        assert self.email is not None and self.api_token is not None  # checked by the validator
        return HTTPBasicAuth(self.email, self.api_token.get_secret_value())

    def secrets(self) -> list[str]:
        """The secret values (to scrub them from any message that leaves the adapter)."""
        out = [s.get_secret_value() for s in (self.api_token, self.token) if s is not None]
        if self.email and self.api_token is not None:
            raw = f"{self.email}:{self.api_token.get_secret_value()}".encode()
            out.append(base64.b64encode(raw).decode())
        return [s for s in out if s]


class _Bearer(AuthBase):
    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return r


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return "invalid"
