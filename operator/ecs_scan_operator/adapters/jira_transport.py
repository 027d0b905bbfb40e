"""A thin, typed Jira REST v2 transport over a `requests.Session`: auth, limits, one retry loop.

- Auth: HTTP Basic with email + API token (Cloud) or a Bearer personal access token (Data Center).
- Where: before the first request the site's host is resolved and every address checked
  (core.destinations: no loopback, link-local / metadata, private ... unless the operator's
  allow-list names the host). The connection then goes to a checked address, never to what a
  second lookup might say (DNS rebinding): the URL carries the checked IP, the Host header and
  the TLS server name (SNI and certificate check) carry the name. Redirects are not followed,
  so an answer cannot send the credentials elsewhere either.
- serverInfo is read once per transport (one per sink) to tell Cloud from Data Center.
- Bounded waits: a connect timeout, a read timeout per socket read, a deadline for the whole
  exchange (a watchdog shuts the socket down when a server trickles its status line, headers
  or body), a cap on the body size, a deadline for the whole stage (one sync), and a budget of
  requests per stage.
- `call()` holds the only retry loop: 429 and 5xx / lost connections on idempotent requests are
  retried with exponential backoff and jitter, Retry-After honoured up to a cap; a request that
  may have been carried out is never repeated unless the caller says it is idempotent.
- Foreign errors (requests, urllib3, socket) become ours; messages never carry a secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from ecs_scan_operator.adapters.jira_credentials import JiraCredentials
from ecs_scan_operator.adapters.jira_wire import (
    Deployment,
    UnexpectedAnswer,
    error_reason,
    parse_server_info,
    retry_after,
)
from ecs_scan_operator.adapters.pinned_http import PinnedHostAdapter, host_literal
from ecs_scan_operator.core.destinations import Allowed, AllowList, Refused, decide
from ecs_scan_operator.core.result import clip
from ecs_scan_operator.errors import AuthError, NotFoundError, PermanentError, ScanError, TransientError

log = logging.getLogger(__name__)

MiB = 1024 * 1024
Resolver = Callable[[str, int], Sequence[str]]

# ---------------------------------------------------------------------------------------------
# Limits and errors


@dataclass(frozen=True)
class TransportLimits:
    """Every wait and size is bounded; docs/operations.md ("Jira: timeouts and limits") explains them."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0  # per socket read
    request_deadline: float = 60.0  # one exchange, from connecting to the last byte of the body
    max_body: int = 8 * MiB
    max_attempts: int = 4  # per request, for retryable failures
    backoff_base: float = 1.0  # seconds; doubled per attempt, with jitter (0.5-1.0 of the step)
    backoff_max: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After ends the stage (the next run resumes)
    retry_window: float = 180.0  # no retry of one call starts later than this after its first try
    request_budget: int = 300  # HTTP requests per stage, retries included
    stage_deadline: float = 900.0  # one sync; then the stage ends and the next run resumes


class RequestKind(StrEnum):
    """What a request is, for the stage's counters."""

    READ = "read"
    SEARCH = "search"  # a page of a JQL search
    WRITE = "write"  # changes Jira: create, edit, transition, property


class OutcomeUnknown(TransientError):
    """The request may or may not have been carried out (5xx or a lost connection on a write)."""


class BudgetExhausted(PermanentError):
    """The per-stage request budget is spent."""


class TooSlow(TransientError):
    """An answer did not arrive complete within the request deadline, or the stage's time is up."""


class ResponseTooLarge(PermanentError):
    """The answer is larger than the body cap."""


class DestinationRefused(PermanentError):
    """The Jira URL points at an address credentials must not be sent to."""


class Throttled(TransientError):
    """429: refused before any work, so even a create may repeat it."""


#: Failures after which the stage stops (each names a condition reason); others fail one action.
STOP_REASONS: tuple[tuple[type[ScanError], str], ...] = (
    (AuthError, "JiraAuthFailed"),
    (BudgetExhausted, "RequestBudgetExhausted"),
    (DestinationRefused, "JiraDestinationRefused"),
    (TooSlow, "JiraTooSlow"),
    (ResponseTooLarge, "JiraUnavailable"),
    (UnexpectedAnswer, "JiraUnavailable"),  # a proxy's page, another API version: do not guess
)


def stop_reason(exc: ScanError) -> str | None:
    """The condition reason when this failure must stop the whole stage, else None."""
    for cls, reason in STOP_REASONS:
        if isinstance(exc, cls):
            return reason
    return None


@dataclass
class Counters:
    """Requests of one stage."""

    requests: int = 0
    searches: int = 0
    writes: int = 0


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (TCP); an empty list when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


# ---------------------------------------------------------------------------------------------
# The transport


@dataclass
class _Site:
    """The checked destination: the base URL to connect to (a checked IP) and the Host header."""

    base: str
    host_header: str
    deployment: Deployment
    adapter: HTTPAdapter = field(repr=False)
    proxies: dict[str, str | None] = field(default_factory=dict)


class _Watch:
    """The sockets one attempt uses; the watchdog shuts them down when its deadline passes.

    A read timeout bounds each socket read only: a server that sends its status line, headers
    or body a byte at a time never trips it. Shutting the socket down from the watchdog thread
    ends the blocked read at once, wherever the exchange is.
    """

    current = threading.local()  # the attempt running in this thread, if any

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.expired = False

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to interrupt
        sock.shutdown(socket.SHUT_RDWR)


def _watched(conn: urllib3.connection.HTTPConnection) -> None:
    watch: _Watch | None = getattr(_Watch.current, "watch", None)
    if watch is not None:
        watch.add(conn.sock)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        """Send the request (connecting if needed), then put its socket under the watchdog."""
        super().request(*args, **kwargs)
        _watched(self)


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        """Send the request (connecting if needed), then put its socket under the watchdog."""
        super().request(*args, **kwargs)
        _watched(self)


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Adapter(PinnedHostAdapter):
    """Connections under the watchdog; for HTTPS to a checked IP, SNI and the certificate
    check use the host name (PinnedHostAdapter)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The pinned pool manager, with watched connections."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


class JiraTransport:
    """One Jira site: checked destination, auth session, bounded requests, the one retry loop."""

    def __init__(
        self,
        url: str,
        credentials: JiraCredentials,
        *,
        limits: TransportLimits | None = None,
        allow: AllowList | None = None,
        enforce_destination: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.url = url.rstrip("/")
        self._credentials = credentials
        self.limits = limits or TransportLimits()
        self._allow = allow or AllowList()
        self._enforce = enforce_destination
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._resolver = resolver
        self._session: requests.Session | None = None
        self._site: _Site | None = None
        self.counters = Counters()
        self._stage_ends = float("inf")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    # -- lifecycle --------------------------------------------------------------------------

    def begin_stage(self) -> None:
        """Start a stage (one sync): fresh counters, a fresh stage deadline."""
        self.counters = Counters()
        self._stage_ends = self._monotonic() + self.limits.stage_deadline

    def close(self) -> None:
        """Close the HTTP session (the next stage reconnects and reads serverInfo again)."""
        if self._session is not None:
            self._session.close()
        self._session = None
        self._site = None

    def connect(self) -> Deployment:
        """Check the destination and read serverInfo, once per transport: Cloud or Data Center."""
        return self._connect().deployment

    @property
    def deployment(self) -> Deployment:
        """Cloud or Data Center, from serverInfo (read on first use)."""
        return self.connect()

    @property
    def cloud(self) -> bool:
        """True on Jira Cloud."""
        return self.deployment is Deployment.CLOUD

    def scrub(self, text: str) -> str:
        """`text` with every secret value replaced by ***."""
        for secret in self._credentials.secrets():
            text = text.replace(secret, "***")
        return text

    # -- where the credentials go -----------------------------------------------------------

    def _connect(self) -> _Site:
        if self._site is not None:
            return self._site
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DestinationRefused(
                f"the Jira URL must be http(s)://host[/path], not {clip(self.url, 100)!r}"
            )
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = list(self._resolver(host, port))
        decision = decide(host, addresses, self._allow)
        if isinstance(decision, Refused):
            if self._enforce:
                raise DestinationRefused(f"Jira host refused, no request sent: {decision}")
            # The CLI's choice: a person runs it and sees the warning on stderr.
            log.warning("jira: sending credentials to %s although %s", decision.host, decision.reason)
            pinned = addresses[0] if addresses else host
        else:
            assert isinstance(decision, Allowed)
            pinned = decision.addresses[0]
        literal = host_literal(pinned)
        base = f"{parts.scheme}://{literal}:{port}{parts.path.rstrip('/')}"
        adapter = _Adapter(host if parts.scheme == "https" else None)
        session = requests.Session()
        session.auth = self._credentials.auth()
        session.mount(f"{parts.scheme}://", adapter)
        session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
        self._session = session
        host_header = parts.netloc.rsplit("@", 1)[-1]
        # Proxies are chosen for the name (NO_PROXY lists names), not for the pinned address.
        proxies: dict[str, str | None] = dict(get_environ_proxies(self.url)) or {"http": None, "https": None}
        self._site = site = _Site(base, host_header, Deployment.CLOUD, adapter, proxies)
        try:
            # serverInfo.deploymentType tells Cloud from Data Center; asked once per transport.
            site.deployment = parse_server_info(self.call("GET", "serverInfo", idempotent=True))
        except BaseException:
            self.close()
            raise
        log.info("jira: connected to %s (%s)", self.url, "Cloud" if self.cloud else "Data Center")
        return site

    # -- the one retry loop -----------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        kind: RequestKind = RequestKind.READ,
    ) -> Any:
        """One Jira REST v2 call with our retry policy; the parsed JSON body (or None).

        Retried: 429 (refused before any work, so even a create), and 5xx or a lost connection
        when `idempotent`. Never retried: a non-idempotent request whose outcome is unknown
        (the caller decides, e.g. the create searches its label), 4xx, a too slow or too large
        answer. Each attempt counts against the stage's request budget; the wait before a retry
        is the Retry-After (up to max_retry_after) or an exponential backoff with jitter, and no
        retry starts after retry_window seconds or past the stage deadline.
        """
        site = self._connect()
        what = f"{method} /rest/api/2/{path}"
        first = self._monotonic()
        attempt = 0
        while True:
            attempt += 1
            self._spend(kind)
            try:
                return self._attempt(site, method, path, what, params=params, body=body)
            except (Throttled, OutcomeUnknown) as exc:
                if isinstance(exc, OutcomeUnknown) and not idempotent:
                    raise
                if attempt >= self.limits.max_attempts:
                    raise
                if exc.retry_after is not None and exc.retry_after > self.limits.max_retry_after:
                    raise
                delay = self._delay(attempt, exc.retry_after)
                now = self._monotonic()
                if now + delay - first > self.limits.retry_window or now + delay >= self._stage_ends:
                    raise
                self._sleep(delay)

    def _spend(self, kind: RequestKind) -> None:
        if self.counters.requests >= self.limits.request_budget:
            raise BudgetExhausted(
                f"request budget of {self.limits.request_budget} spent; the next run completes the work"
            )
        if self._monotonic() >= self._stage_ends:
            raise TooSlow(self._stage_spent())
        self.counters.requests += 1
        if kind is RequestKind.SEARCH:
            self.counters.searches += 1
        elif kind is RequestKind.WRITE:
            self.counters.writes += 1

    def _stage_spent(self) -> str:
        return f"the Jira stage's {self.limits.stage_deadline:g} s are spent; the next run completes the work"

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return retry_after_s
        step = min(self.limits.backoff_max, self.limits.backoff_base * 2.0 ** (attempt - 1))
        return float(step * self._rng.uniform(0.5, 1.0))

    # -- one exchange -----------------------------------------------------------------------

    def _attempt(
        self, site: _Site, method: str, path: str, what: str, *, params: Mapping[str, Any] | None, body: Any
    ) -> Any:
        assert self._session is not None
        started = self._monotonic()
        deadline = min(started + self.limits.request_deadline, self._stage_ends)
        read_timeout = max(0.1, min(self.limits.read_timeout, deadline - started))
        watch = _Watch()
        watchdog = threading.Timer(max(0.0, deadline - started), watch.expire)
        watchdog.daemon = True
        _Watch.current.watch = watch
        watchdog.start()
        try:
            try:
                resp = self._session.request(
                    method,
                    f"{site.base}/rest/api/2/{path}",
                    params=dict(params or {}),
                    data=json.dumps(body) if body is not None else None,
                    headers={"Host": site.host_header},
                    # None means "no proxy" to requests, which its stubs do not spell.
                    proxies=cast("dict[str, str]", site.proxies),
                    timeout=(self.limits.connect_timeout, read_timeout),
                    stream=True,  # the body is read below, under the deadline and the size cap
                    allow_redirects=False,  # the credentials go to the checked host only
                )
            except requests.ConnectTimeout:
                raise OutcomeUnknown(
                    f"{what}: no connection to Jira within {self.limits.connect_timeout:g} s"
                ) from None
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                if watch.expired:
                    raise self._too_slow(what, deadline) from None
                raise OutcomeUnknown(f"{what}: {type(exc).__name__} (no answer from Jira)") from None
            try:
                data = self._read_body(resp, watch, deadline, what)
            finally:
                resp.close()
        finally:
            watchdog.cancel()
            _Watch.current.watch = None
        return self._interpret(resp, data, what)

    def _read_body(self, resp: requests.Response, watch: _Watch, deadline: float, what: str) -> bytes:
        cap = self.limits.max_body
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise ResponseTooLarge(
                f"{what}: the answer ({int(declared)} bytes) exceeds the cap of {_size(cap)}"
            )
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                # read1: whatever one socket read brings, so the checks run as bytes arrive
                chunk = resp.raw.read1(64 * 1024, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise ResponseTooLarge(f"{what}: the answer exceeds the cap of {_size(cap)}")
                chunks.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if watch.expired:
                raise self._too_slow(what, deadline) from None
            raise OutcomeUnknown(f"{what}: the answer was cut off ({type(exc).__name__})") from None
        if watch.expired:
            raise self._too_slow(what, deadline)  # the shutdown ended the body early
        return b"".join(chunks)

    def _too_slow(self, what: str, deadline: float) -> TooSlow:
        if deadline >= self._stage_ends:
            return TooSlow(f"{what}: {self._stage_spent()}")
        return TooSlow(
            f"{what}: no complete answer within the deadline of {self.limits.request_deadline:g} s "
            "(Jira or something in between sends too slowly)"
        )

    def _interpret(self, resp: requests.Response, data: bytes, what: str) -> Any:
        status = resp.status_code
        if status < 300:
            if not data:
                return None
            try:
                return json.loads(data)
            except ValueError:
                raise OutcomeUnknown(f"{what}: the answer is not JSON") from None
        reason = self.scrub(clip(error_reason(data), 200))
        if status == 429:
            wait = retry_after(resp.headers.get("Retry-After"), datetime.now(UTC))
            raise Throttled(f"{what}: throttled (429)", retry_after=wait)
        if status >= 500:
            raise OutcomeUnknown(f"{what}: Jira answered {status}: {reason}")
        if 300 <= status < 400:
            raise PermanentError(
                f"{what}: Jira redirected ({status}); set the policy's jira.url to the final address"
            )
        if status == 401:
            raise AuthError(f"{what}: Jira refused the credentials (401)")
        if status == 403:
            raise PermanentError(f"{what}: forbidden (403): {reason}")
        if status == 404:
            raise NotFoundError(f"{what}: not found (404): {reason}")
        if status == 410:
            raise PermanentError(f"{what}: gone (410): {reason}")
        raise PermanentError(f"{what}: Jira refused the request ({status}): {reason}")


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"
