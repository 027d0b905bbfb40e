"""Send notifications over HTTPS: Slack and Teams incoming webhooks, generic signed webhooks.

The URL (and the webhook's signing key) come from the destination's Secret, read through
`secrets`; neither is ever logged or put in an error message (a Slack or Teams webhook URL *is*
the credential). Each send has a total deadline (connect, response and body together), at most
`attempts` tries (connection errors, 5xx and 429, with Retry-After honoured up to the deadline),
no redirects (one could lead to a private address), and the destination rules of
core/notify_destinations.py checked on the resolved addresses before connecting. The connection
then goes to the checked address (adapters/pinned_http.py), so a DNS answer that changes between
the check and the request cannot send the message elsewhere. In tenancy mode `grants`, the URL
must also be one the allowing ScanAccessGrant lists (notifications.destinations).

The generic webhook's body is signed: ``X-Ecsscan-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>">`` with ``X-Ecsscan-Timestamp: <unix seconds>``, so a receiver can check
both the origin and the freshness.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr

from ecs_scan_operator.adapters.pinned_http import PinnedHostAdapter, pinned
from ecs_scan_operator.core.notify_destinations import (
    DestinationRefused,
    check_addresses,
    check_granted,
    check_url,
)
from ecs_scan_operator.core.policy import NotifyDestination, NotifyType
from ecs_scan_operator.errors import PermanentError, ScanError, TransientError

log = logging.getLogger(__name__)

SecretReader = Callable[[str], Mapping[str, SecretStr]]
SIGNATURE_HEADER = "X-Ecsscan-Signature"
TIMESTAMP_HEADER = "X-Ecsscan-Timestamp"
MIN_SIGNING_KEY = 16
MAX_RESPONSE = 64 * 1024  # only the status matters; never read a large body


class NotifyError(ScanError):
    """A notification could not be sent (the message names the destination, never its URL)."""


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The X-Ecsscan-Signature value of a body sent at `timestamp`."""
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (TCP), in the resolver's order; [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HttpNotifier:
    """The Notifier port over requests."""

    def __init__(
        self,
        secrets: SecretReader,
        *,
        allow_private: bool = False,
        granted: tuple[str, ...] | None = None,
        deadline: float = 20.0,
        attempts: int = 3,
        backoff: float = 1.0,
        clock: Callable[[], float] = time.time,
        resolver: Resolver = system_resolver,
        verify: bool | str = True,
    ) -> None:
        """`granted`: the allowing grant's notifications.destinations (None: open mode, no grant)."""
        self._secrets = secrets
        self._allow_private = allow_private
        self._granted = granted
        self._resolver = resolver
        self._verify = verify
        self._deadline = deadline
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._clock = clock
        self.requests = 0

    def send(self, destination: NotifyDestination, payload: Mapping[str, Any]) -> None:
        """Post one message; raise NotifyError (permanent or after the last retry) when it did not go."""
        name = f"notify {destination.name}"
        try:
            values = self._secrets(destination.secret)
        except ScanError as exc:
            raise NotifyError(f"{name}: {exc}") from None
        url = values.get("url")
        if url is None or not url.get_secret_value().strip():
            raise NotifyError(f"{name}: Secret {destination.secret} has no key url")
        target = url.get_secret_value().strip()
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "ecs-scan-operator"}
        if destination.type is NotifyType.WEBHOOK:
            key = values.get("signingKey")
            raw = key.get_secret_value().encode() if key is not None else b""
            if len(raw) < MIN_SIGNING_KEY:
                raise NotifyError(
                    f"{name}: Secret {destination.secret} needs a key signingKey of at least "
                    f"{MIN_SIGNING_KEY} bytes"
                )
            stamp = str(int(self._clock()))
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = sign(raw, stamp, body)
        try:
            host = check_url(target, allow_private=self._allow_private)
            if self._granted is not None:
                check_granted(target, self._granted)
            parts = urlsplit(target)
            addresses = self._resolver(host, parts.port or (443 if parts.scheme == "https" else 80))
            check_addresses(host, addresses, allow_private=self._allow_private)
        except DestinationRefused as exc:
            raise NotifyError(f"{name}: refused: {exc}") from None
        pinned_url, headers["Host"] = pinned(target, addresses[0])
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment in front of the address check
        session.verify = self._verify
        session.mount(f"{parts.scheme}://", PinnedHostAdapter(host if parts.scheme == "https" else None))
        with session:
            self._post(session, name, pinned_url, body, headers)

    def _post(
        self, session: requests.Session, name: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        ends = time.monotonic() + self._deadline
        last = ""
        for attempt in range(1, self._attempts + 1):
            left = ends - time.monotonic()
            if left <= 0:
                last = last or "deadline reached"
                break
            wait = 0.0
            try:
                status, retry_after = self._once(session, url, body, headers, ends)
            except TransientError as exc:
                last, wait = str(exc), self._backoff * attempt
            else:
                if 200 <= status < 300:
                    return
                last = f"HTTP {status}"
                if status != 429 and status < 500:
                    raise NotifyError(f"{name}: {last} (not retried)")
                wait = retry_after if retry_after is not None else self._backoff * attempt
            if attempt < self._attempts:
                if time.monotonic() + wait >= ends:
                    last += "; retry would pass the deadline"
                    break
                time.sleep(wait)
        raise NotifyError(f"{name}: {last} after {attempt} attempt(s)")

    def _once(
        self, session: requests.Session, url: str, body: bytes, headers: Mapping[str, str], ends: float
    ) -> tuple[int, float | None]:
        left = max(0.1, ends - time.monotonic())
        self.requests += 1
        try:
            resp = session.post(
                url, data=body, headers=dict(headers), timeout=(min(left, 10.0), left),
                allow_redirects=False, stream=True,
            )  # fmt: skip
        except requests.RequestException as exc:
            # the exception text names the URL: keep only its kind
            raise TransientError(type(exc).__name__) from None
        try:
            read = 0
            for chunk in resp.iter_content(8192):
                read += len(chunk)
                if read > MAX_RESPONSE or time.monotonic() > ends:
                    break
        except requests.RequestException as exc:
            raise TransientError(type(exc).__name__) from None
        finally:
            resp.close()
        return resp.status_code, _retry_after(resp.headers.get("Retry-After"))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def secrets_from_env(environ: Mapping[str, str]) -> SecretReader:
    """For the CLI: Secret <name> is NOTIFY_<NAME>_URL and NOTIFY_<NAME>_SIGNING_KEY (name upper, - as _)."""

    def read(secret: str) -> Mapping[str, SecretStr]:
        stem = "NOTIFY_" + secret.upper().replace("-", "_").replace(".", "_")
        out = {}
        if environ.get(f"{stem}_URL"):
            out["url"] = SecretStr(environ[f"{stem}_URL"])
        if environ.get(f"{stem}_SIGNING_KEY"):
            out["signingKey"] = SecretStr(environ[f"{stem}_SIGNING_KEY"])
        if not out:
            raise PermanentError(f"no {stem}_URL in the environment (the CLI's stand-in for Secret {secret})")
        return out

    return read
