"""boto3 sessions and clients: one client per (service, region, identity), reused; errors mapped.

Credentials come from the standard chain (env, IRSA web identity, EKS Pod Identity, instance
profile), so `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` work unchanged. A policy's
`roleArn` (and `registryRoleArn` for ECR in another account) is assumed with auto-refreshing
credentials, so a run longer than the role session still works.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import types
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ecs_scan_operator import __version__
from ecs_scan_operator.core.arns import account_of_role
from ecs_scan_operator.core.grants import AccountScope
from ecs_scan_operator.core.policy import role_for_account
from ecs_scan_operator.errors import (
    AuthError,
    ConflictError,
    ErrorCause,
    NotFoundError,
    PermanentError,
    ScanError,
    TransientError,
)
from ecs_scan_operator.settings import AwsSettings, load_aws_settings

log = logging.getLogger(__name__)

_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
}
_AUTH = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "AuthFailure",
}
# S3 conditional writes: 412 when If-Match / If-None-Match did not hold, 409 when a concurrent
# conditional write to the same key won.
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict"}
_NOT_FOUND = {
    "RepositoryNotFoundException",
    "ImageNotFoundException",
    "ScanNotFoundException",
    "ResourceNotFoundException",
    "NoSuchBucket",
    "NoSuchKey",
    "NotFound",
    "ClusterNotFoundException",
    "ServiceNotFoundException",
}


def error_code(exc: ClientError) -> str:
    """The service's error code of a ClientError."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _cause(exc: Exception, what: str, code: str) -> ErrorCause:
    # `what` starts with "service:Operation" by convention; botocore knows the operation too.
    head = what.split(" ", 1)[0]
    service, _, operation = head.partition(":") if ":" in head else (head, "", "")
    operation = str(getattr(exc, "operation_name", "") or operation or "unknown")
    if operation in ("AssumeRole", "AssumeRoleWithWebIdentity"):
        service = "sts"  # the role of a client failed to load, not the call the client was making
    return ErrorCause(service or "aws", operation, code or type(exc).__name__)


def map_aws_error(exc: Exception, what: str) -> ScanError:
    """Translate a botocore error into our hierarchy; the message names the call, never credentials.

    The result carries its `cause` (service, operation, error code) for the run's error summary.
    """
    if isinstance(exc, ScanError):
        return exc
    code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    err = _map(exc, what)
    err.cause = _cause(exc, what, code)
    return err


def _map(exc: Exception, what: str) -> ScanError:  # noqa: PLR0911 - one return per error class, in the order the classes are tested
    if isinstance(exc, NoCredentialsError):
        return AuthError(f"{what}: no AWS credentials found (default chain, IRSA or Pod Identity)")
    if isinstance(
        exc, ConnectionClosedError | EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError
    ):
        return TransientError(f"{what}: connection problem: {type(exc).__name__}")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))[:200]
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{what}: {code}: {message}".rstrip(": ")
        if code in _THROTTLING:
            return TransientError(text)
        if code in _CONFLICT or status in (409, 412):
            return ConflictError(text)
        if code in _AUTH or status in (401, 403):
            return AuthError(text)
        if code in _NOT_FOUND or status == 404:
            return NotFoundError(text)
        if status >= 500 or code in ("ServerException", "InternalServerException", "ServiceUnavailable"):
            return TransientError(text)
        return PermanentError(text)
    if isinstance(exc, BotoCoreError):
        return TransientError(f"{what}: {type(exc).__name__}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}")


class CallCounter:
    """Counts AWS API calls (and errors) by `service:Operation`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def _before_call(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def _after_call(self, model: Any, http_response: Any = None, **_: Any) -> None:
        # An error answer (throttled after retries, denied, not found) still ends in after-call.
        if http_response is not None and getattr(http_response, "status_code", 200) >= 300:
            with self._lock:
                self.errors[f"{model.service_model.service_name}:{model.name}"] += 1

    def _after_call_error(self, event_name: str = "", **_: Any) -> None:
        # No answer at all (connection refused, timeout): botocore passes no model here.
        parts = event_name.split(".")
        service, operation = (parts[1], parts[2]) if len(parts) >= 3 else ("unknown", "unknown")
        with self._lock:
            self.errors[f"{service}:{operation}"] += 1

    def attach(self, client: Any) -> None:
        """Register the counting hooks on one client."""
        client.meta.events.register("before-call.*.*", self._before_call)
        client.meta.events.register("after-call.*.*", self._after_call)
        client.meta.events.register("after-call-error.*.*", self._after_call_error)

    def by_operation(self) -> dict[str, int]:
        """Calls per `service:Operation` (bounded: the few operations the adapters use)."""
        with self._lock:
            return dict(sorted(self.calls.items()))

    def errors_by_operation(self) -> dict[str, int]:
        """Failed calls (after botocore's retries) per `service:Operation`."""
        with self._lock:
            return dict(sorted(self.errors.items()))


def default_config(aws: AwsSettings | None = None, *, pool: int = 16) -> Config:
    """Bounded timeouts and retries from `ECS_SCAN_AWS_*` (docs/timeouts.md has the figures)."""
    aws = aws or AwsSettings()
    return Config(
        retries={"mode": aws.retry_mode, "total_max_attempts": aws.max_attempts},
        max_pool_connections=pool,
        connect_timeout=aws.connect_timeout_seconds,
        read_timeout=aws.read_timeout_seconds,
        user_agent_extra=f"ecs-scan-operator/{__version__}",
    )


class EndpointUnavailable(EndpointConnectionError):
    """A call not sent: its endpoint failed a call moments ago (after all its attempts)."""

    fmt = "{endpoint_url} failed a call {age:.0f} s ago ({cause}); not called again for {left:.0f} s"


class EndpointBreaker:
    """Marks an endpoint down when a call to it fails after all its attempts; thread-safe.

    Why: each call to a dead endpoint waits out its own timeouts, so a stage of N calls would
    cost N times the bound (a report of 40 objects to a dead S3: 40 x 30 s). The first call
    that fails at the connection level (refused, reset, connect or read timeout) or with a 5xx
    marks the endpoint (one service at one URL: every identity and client of it) down for
    `cooldown` seconds; calls to it then raise EndpointUnavailable without being sent, so a stage
    costs one call's bound. After the cooldown the next call goes out; a success clears the mark.
    Throttling and 4xx answers do not mark: the endpoint is alive and answering.
    """

    def __init__(self, cooldown: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._cooldown = cooldown
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._down: dict[str, tuple[float, str]] = {}  # endpoint URL -> (marked at, cause)

    def _mark(self, url: str, cause: str) -> None:
        with self._lock:
            fresh = url not in self._down
            self._down[url] = (self._monotonic(), cause)
        if fresh:
            log.warning("AWS endpoint %s marked down for %.0f s: %s", url, self._cooldown, cause)

    def check(self, url: str) -> None:
        """Raise EndpointUnavailable while `url` is marked down."""
        with self._lock:
            mark = self._down.get(url)
        if mark is None:
            return
        age = self._monotonic() - mark[0]
        if age < self._cooldown:
            raise EndpointUnavailable(endpoint_url=url, age=age, cause=mark[1], left=self._cooldown - age)

    def attach(self, client: Any) -> None:
        """Register the checks on one client (first, so a call not sent is not counted as made)."""
        if self._cooldown <= 0:
            return
        # One service's endpoint: with one AWS_ENDPOINT_URL for all (an emulator, a proxy), a dead
        # ECS must not mark S3 down.
        url = f"{client.meta.service_model.service_name} at {client.meta.endpoint_url}"

        def before(**_: Any) -> None:
            self.check(url)

        def answered(http_response: Any = None, model: Any = None, **_: Any) -> None:
            status = int(getattr(http_response, "status_code", 0) or 0)
            if status >= 500:
                name = getattr(model, "name", "call")
                self._mark(url, f"{name} answered HTTP {status} after all attempts")
            elif status:
                with self._lock:
                    self._down.pop(url, None)

        def failed(exception: Exception | None = None, event_name: str = "", **_: Any) -> None:
            if isinstance(exception, BotoConnectionError | HTTPClientError):
                name = event_name.rsplit(".", 1)[-1] or "call"
                self._mark(url, f"{name}: {type(exception).__name__}")

        client.meta.events.register_first("before-call.*.*", before)
        client.meta.events.register("after-call.*.*", answered)
        client.meta.events.register("after-call-error.*.*", failed)


_LOADER_LOCK = threading.Lock()


@functools.cache
def _create_loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def _shared_loader() -> botocore.loaders.Loader:
    with _LOADER_LOCK:  # runs starting together in two threads get the same one
        return _create_loader()


def core_session() -> botocore.session.Session:
    """A new botocore session that shares the process's data loader.

    The loader holds the parsed service models (~18 MiB for the services a run uses); a session
    of its own would parse them again for every run, and the freed copies fragment the heap of a
    long-running operator. The loader only reads and caches, so sessions in different threads
    can share it (two runs starting at the same moment may each parse a model once).
    """
    session = botocore.session.Session()
    session.register_component("data_loader", _shared_loader())
    session.register("creating-client-class", _without_docstrings)
    return session


def _without_docstrings(**kwargs: Any) -> None:
    """Drop the generated methods' docstrings (`help()` text) from each new client class.

    botocore builds a client class per client, and each operation's docstring object keeps its
    own references (~80 KiB a client): a multi-account run holds a client per service, account
    and region (Fleet XL: 205). Nothing here reads them. `creating-client-class` is botocore's
    documented hook for shaping client classes.
    """
    for value in kwargs["class_attributes"].values():
        if isinstance(value, types.FunctionType):
            value.__doc__ = None


class AwsClients:
    """Client factory for one run: base identity, the policy's role, the registry role.

    Multi-account policies (`role_arn_pattern`): each account's clients use that account's role,
    refused (AccessNotGranted, naming the account) when the allowing grant's `account_scope` does
    not grant it. Clients are per (service, region, role), so each (account, region) has its own
    connections and retry state: they are separate AWS rate-limit domains.
    """

    def __init__(
        self,
        *,
        role_arn: str | None = None,
        external_id: str | None = None,
        registry_role_arn: str | None = None,
        session_name: str = "ecs-scan-operator",
        session_tags: Mapping[str, str] | None = None,
        source_identity: str | None = None,
        config: Config | None = None,
        aws: AwsSettings | None = None,
        base_session: boto3.Session | None = None,
        counter: CallCounter | None = None,
        hooks: list[Any] | None = None,
        role_arn_pattern: str | None = None,
        inspector_admin_role_arn: str | None = None,
        account_scope: AccountScope | None = None,
        pool: int = 16,
        max_clients: int | None = None,
    ) -> None:
        self._base = base_session or boto3.Session(botocore_session=core_session())
        self._role_arn = role_arn
        self._external_id = external_id
        self._registry_role_arn = registry_role_arn
        self._session_name = session_name
        # Tags and SourceIdentity let a role's trust policy pin the namespace (sts:TagSession and
        # sts:SetSourceIdentity must be allowed there; docs/iam.md).
        self._session_tags = dict(session_tags or {})
        self._source_identity = source_identity
        aws = aws or load_aws_settings()
        self._config = config or default_config(aws, pool=pool)
        self._role_arn_pattern = role_arn_pattern
        self._inspector_admin_role_arn = inspector_admin_role_arn
        self._account_scope = account_scope
        self.breaker = EndpointBreaker(aws.endpoint_cooldown_seconds)
        self.counter = counter or CallCounter()
        self._hooks = hooks or []
        # Multi-account runs read (account, region) pairs a few at a time, but a client per
        # service, account and region would otherwise stay for the whole run (~170 KiB each;
        # 800 pairs: ~270 MiB): the least recently used go past `max_clients` (None: all kept),
        # and role sessions (~140 KiB each) past half as many. An evicted client is not closed (a
        # thread may be using it; its connections close with it); asked for again, it is made
        # again, and an evicted role is assumed again.
        self._max_clients = max_clients
        self._sessions: OrderedDict[str | None, boto3.Session] = OrderedDict()
        self._clients: OrderedDict[tuple[str | int | bool | None, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def _session(self, role_arn: str | None, external_id: str | None) -> boto3.Session:
        if role_arn is None:
            return self._base
        session = self._sessions.get(role_arn)
        if session is not None:
            self._sessions.move_to_end(role_arn)
        else:
            extra: dict[str, Any] = {"RoleSessionName": self._session_name}
            if external_id:
                extra["ExternalId"] = external_id
            if self._session_tags:
                extra["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(self._session_tags.items())]
            if self._source_identity:
                extra["SourceIdentity"] = self._source_identity
            fetcher = AssumeRoleCredentialFetcher(
                # The STS client gets the same time limits as every other client.
                client_creator=functools.partial(self._base._session.create_client, config=self._config),
                source_credentials=self._base.get_credentials(),
                role_arn=role_arn,
                extra_args=extra,
            )
            creds = DeferredRefreshableCredentials(
                method="assume-role", refresh_using=fetcher.fetch_credentials
            )
            core = core_session()
            core._credentials = creds  # type: ignore[attr-defined]  # no public setter for refreshable creds
            session = boto3.Session(botocore_session=core)
            self._sessions[role_arn] = session
            if self._max_clients is not None and len(self._sessions) > max(self._max_clients // 2, 1):
                self._sessions.popitem(last=False)
        return session

    def _make(
        self,
        service: str,
        region: str,
        role_arn: str | None,
        external_id: str | None,
        once: bool,
        pool: int | None = None,
    ) -> Any:
        # A client with a wider connection pool is its own client: the shared one keeps its size.
        shared: int = getattr(self._config, "max_pool_connections", None) or 10  # botocore default
        wider = pool if pool is not None and pool > shared else None
        key = (service, region, role_arn, once) if wider is None else (service, region, role_arn, once, wider)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
            else:
                config = self._config
                if once:
                    # ECR's LimitExceededException (already scanned today) must not be retried as throttling.
                    config = config.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
                if wider is not None:
                    config = config.merge(Config(max_pool_connections=wider))
                session: Any = self._session(role_arn, external_id)  # service names are data, not literals
                client = session.client(service, region_name=region, config=config)
                self.breaker.attach(client)
                self.counter.attach(client)
                for hook in self._hooks:
                    hook(client)
                self._clients[key] = client
                if self._max_clients is not None and len(self._clients) > self._max_clients:
                    self._clients.popitem(last=False)
            return client

    def release_reads(self) -> None:
        """Close and forget every client but S3's, and the roles' sessions (the run only writes now).

        A multi-account run holds a client per (service, account, region) - hundreds, each with its
        own copy of botocore's event handlers and service model - that the report stage does not
        use; letting them go leaves that memory to the report. A client asked for later is made
        again (a role is assumed again), so this only costs time if called too early.
        """
        with self._lock:
            dropped = [c for k, c in self._clients.items() if k[0] != "s3"]
            self._clients = OrderedDict((k, c) for k, c in self._clients.items() if k[0] == "s3")
            self._sessions = OrderedDict()
        for client in dropped:
            client.close()

    def account_role(self, account: str) -> str:
        """The role of `account` (multi-account); raise AuthError AccessNotGranted when not granted."""
        if self._role_arn_pattern is None:
            raise PermanentError(f"account {account}: the policy names no roleArnPattern")
        role = role_for_account(self._role_arn_pattern, account)
        why = self._account_scope.refusal(account, role) if self._account_scope else None
        if why is not None:
            err = AuthError(f"AccessNotGranted: {why}")
            err.cause = ErrorCause("sts", "AssumeRole", "AccessNotGranted", account)
            raise err
        return role

    def workload(self, service: str, region: str, account: str = "") -> Any:
        """A client in the account that owns the task definitions (the policy's role when set)."""
        if account and self._role_arn_pattern:
            return self._make(service, region, self.account_role(account), self._external_id, False)
        return self._make(service, region, self._role_arn, self._external_id, False)

    def registry(
        self,
        service: str,
        region: str,
        *,
        single_attempt: bool = False,
        account: str = "",
        pool: int | None = None,
    ) -> Any:
        """A client for ECR / Inspector in the registry account (registryRoleArn, else the workload role).

        Multi-account: registryRoleArn when it is a role of `account`, else that account's own role.
        `pool`: connections the caller keeps busy at once, when more than the shared clients' pool.
        """
        once = single_attempt
        if account and self._role_arn_pattern:
            reg = self._registry_role_arn
            if reg and account_of_role(reg) == account:
                return self._make(service, region, reg, None, once, pool)
            return self._make(service, region, self.account_role(account), self._external_id, once, pool)
        if self._registry_role_arn:
            return self._make(service, region, self._registry_role_arn, None, once, pool)
        return self._make(service, region, self._role_arn, self._external_id, once, pool)

    @property
    def multi_account(self) -> bool:
        """Whether clients are per account (spec.aws.accounts / organization)."""
        return self._role_arn_pattern is not None

    @property
    def inspector_admin(self) -> bool:
        """Whether findings are read through Inspector's delegated administrator."""
        return self._inspector_admin_role_arn is not None

    def inspector(self, region: str, account: str = "") -> Any:
        """The Inspector client: the delegated administrator's when set, else the registry account's."""
        if self._inspector_admin_role_arn:
            return self._make("inspector2", region, self._inspector_admin_role_arn, None, False)
        return self.registry("inspector2", region, account=account)

    def with_role(self, service: str, region: str, role_arn: str) -> Any:
        """A client through one named role (the organization's management or delegated-admin role)."""
        return self._make(service, region, role_arn, None, False)

    def base(self, service: str, region: str) -> Any:
        """A client with the operator's own identity (S3 reports)."""
        return self._make(service, region, None, None, False)
