"""boto3 sessions and clients: one client per (service, region, identity), reused; errors mapped.

Credentials come from the standard chain (env, IRSA web identity, EKS Pod Identity, instance
profile), so `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` work unchanged. A policy's
`roleArn` (and `registryRoleArn` for ECR in another account) is assumed with auto-refreshing
credentials, so a run longer than the role session still works.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
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
    NoCredentialsError,
    ReadTimeoutError,
)

from ecs_scan_operator import __version__
from ecs_scan_operator.errors import AuthError, NotFoundError, PermanentError, ScanError, TransientError

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


def map_aws_error(exc: Exception, what: str) -> ScanError:
    """Translate a botocore error into our hierarchy; the message names the call, never credentials."""
    if isinstance(exc, ScanError):
        return exc
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

    def by_service(self) -> dict[str, int]:
        """Totals per service (bounded: a handful of services)."""
        out: Counter[str] = Counter()
        for key, n in self.calls.items():
            out[key.split(":", 1)[0]] += n
        return dict(sorted(out.items()))


def default_config(*, max_attempts: int = 8, pool: int = 16) -> Config:
    """Adaptive retries (client-side rate limiting after throttles), bounded timeouts."""
    return Config(
        retries={"mode": "adaptive", "total_max_attempts": max_attempts},
        max_pool_connections=pool,
        connect_timeout=5,
        read_timeout=30,
        user_agent_extra=f"ecs-scan-operator/{__version__}",
    )


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
    return session


class AwsClients:
    """Client factory for one run: base identity, the policy's role, the registry role."""

    def __init__(
        self,
        *,
        role_arn: str | None = None,
        external_id: str | None = None,
        registry_role_arn: str | None = None,
        session_name: str = "ecs-scan-operator",
        config: Config | None = None,
        base_session: boto3.Session | None = None,
        counter: CallCounter | None = None,
        hooks: list[Any] | None = None,
    ) -> None:
        self._base = base_session or boto3.Session(botocore_session=core_session())
        self._role_arn = role_arn
        self._external_id = external_id
        self._registry_role_arn = registry_role_arn
        self._session_name = session_name
        self._config = config or default_config()
        self.counter = counter or CallCounter()
        self._hooks = hooks or []
        self._sessions: dict[str | None, boto3.Session] = {}
        self._clients: dict[tuple[str, str, str | None, bool], Any] = {}
        self._lock = threading.Lock()

    def _session(self, role_arn: str | None, external_id: str | None) -> boto3.Session:
        if role_arn is None:
            return self._base
        session = self._sessions.get(role_arn)
        if session is None:
            extra: dict[str, Any] = {"RoleSessionName": self._session_name}
            if external_id:
                extra["ExternalId"] = external_id
            fetcher = AssumeRoleCredentialFetcher(
                client_creator=self._base._session.create_client,
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
        return session

    def _make(
        self, service: str, region: str, role_arn: str | None, external_id: str | None, once: bool
    ) -> Any:
        key = (service, region, role_arn, once)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                config = self._config
                if once:
                    # ECR's LimitExceededException (already scanned today) must not be retried as throttling.
                    config = config.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
                session: Any = self._session(role_arn, external_id)  # service names are data, not literals
                client = session.client(service, region_name=region, config=config)
                self.counter.attach(client)
                for hook in self._hooks:
                    hook(client)
                self._clients[key] = client
            return client

    def workload(self, service: str, region: str) -> Any:
        """A client in the account that owns the task definitions (the policy's role when set)."""
        return self._make(service, region, self._role_arn, self._external_id, False)

    def registry(self, service: str, region: str, *, single_attempt: bool = False) -> Any:
        """A client for ECR / Inspector in the registry account (registryRoleArn, else the workload role)."""
        if self._registry_role_arn:
            return self._make(service, region, self._registry_role_arn, None, single_attempt)
        return self._make(service, region, self._role_arn, self._external_id, single_attempt)

    def base(self, service: str, region: str) -> Any:
        """A client with the operator's own identity (S3 reports)."""
        return self._make(service, region, None, None, False)
