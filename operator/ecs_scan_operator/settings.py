"""The operator's settings: environment variables `ECS_SCAN_*` (and mounted secret files), read once.

Policies carry everything about a scan; these settings are about the process: which namespaces
it watches, how many runs at once, logging, the health and metrics ports, and leader election
(one active replica, chosen through a coordination.k8s.io Lease). The Helm chart sets them.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ecs_scan_operator.core.destinations import AllowList
from ecs_scan_operator.core.policy import DNS_LABEL_RE
from ecs_scan_operator.errors import FieldError, InvalidPolicy

ENV_PREFIX = "ECS_SCAN_"
SECRETS_DIR_ENV = "ECS_SCAN_SECRETS_DIR"
STATE_KEY_ENV = "ECS_SCAN_STATE_KEY"
MIN_STATE_KEY_LENGTH = 32  # characters; the chart generates 64 alphanumerics


class SettingsError(InvalidPolicy):
    """The settings are invalid (the field is the environment variable)."""


class Settings(BaseSettings):
    """Process-wide settings of the operator."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Namespaces to watch, comma-separated in the environment; empty watches all namespaces.
    watch_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Runs in progress at once across all policies (each run is a worker thread).
    max_concurrent_runs: int = Field(default=2, ge=1, le=64)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # kopf's liveness endpoint, GET /healthz on this port; 0 turns it off.
    health_port: int = Field(default=8080, ge=0, le=65535)
    metrics_enabled: bool = True
    metrics_port: int = Field(default=9090, ge=1, le=65535)
    # Leader election: with several replicas exactly one (the Lease holder) runs policies.
    leader_election: bool = False
    lease_name: str = "ecs-scan-operator"
    lease_namespace: str = ""  # empty: the pod's namespace, else "default"
    lease_duration_seconds: int = Field(default=15, ge=5, le=300)
    # The leader gives up (and the process exits) when it could not renew for this long; it
    # must be shorter than the lease duration so no two replicas ever act at once.
    renew_deadline_seconds: int | None = Field(default=None, ge=2, le=299)
    retry_period_seconds: float = Field(default=2.0, gt=0, le=60)
    # Who this replica is (the Lease holder, the activeRun holder); POD_NAME from the Downward API.
    pod_name: str = Field(default="", validation_alias=AliasChoices("ECS_SCAN_POD_NAME", "POD_NAME"))
    pod_namespace: str = Field(
        default="", validation_alias=AliasChoices("ECS_SCAN_POD_NAMESPACE", "POD_NAMESPACE")
    )
    # How long a run gets to stop when its policy is deleted or the operator stops.
    cancel_grace_seconds: float = Field(default=60.0, ge=1, le=3600)
    # The scheduler re-reads the clock at least this often (no API call): a policy is read only when
    # a watch event says it changed or its schedule fires (controller/scheduler.py).
    resync_seconds: float = Field(default=300.0, ge=5, le=3600)
    # kopf's scanning: cluster-wide list/watch of CRDs (and of Namespaces when namespaced). Off, kopf
    # finds ScanPolicy through API discovery, which needs no RBAC, so the operator needs no
    # cluster-scoped grant at all; on, it also notices the CRD being deleted and re-created.
    kopf_scanning: bool = False
    # Where Jira credentials may go besides public addresses: host names or CIDRs, comma-separated
    # (a self-hosted Jira on a private address). Others on loopback, link-local (the instance
    # metadata service), private ... addresses are refused before any request; see core.destinations.
    jira_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The HMAC key of the state objects in the report bucket (core/state.py): a key the bucket does
    # not hold, so a writer of the bucket cannot steer which images are scanned. Unset, the revision
    # cache is not used. The chart creates it in a Secret; never logged.
    state_key: SecretStr | None = None
    # Tenancy: `grants` runs a policy only when a ScanAccessGrant allows what it names (roles,
    # regions, buckets, Jira sites); `open` lets any policy use the operator's identity for
    # anything it can reach (one team per cluster). The chart chooses (grants for cluster-wide
    # installs); a process started by hand keeps the behaviour it had before grants existed.
    tenancy_mode: Literal["grants", "open"] = "open"
    # AssumeRole with session tags (ecsscan-namespace, ecsscan-policy) and SourceIdentity, so a
    # role's trust policy can pin the namespace; false for roles whose trust policy does not yet
    # allow sts:TagSession and sts:SetSourceIdentity (the session name is set either way).
    aws_session_tags: bool = True
    # Notification URLs (spec.notify Secrets) that resolve to loopback, link-local or private
    # addresses are refused unless this is on (a receiver inside the cluster or the VPC).
    notify_allow_private_destinations: bool = False
    # A diagnosis aid: trace allocations and dump the top sites here on SIGUSR1 (controller.memprof).
    tracemalloc_file: str = ""
    # Where runs execute: `inProcess` (threads of the leader, maxConcurrentRuns at once) or `job`
    # (a batch/v1 Job per run in the policy's namespace, maxConcurrentJobs at once; docs/jobs.md).
    runner_mode: Literal["inProcess", "job"] = "inProcess"
    # Jobs of all policies active at once (runner mode job).
    max_concurrent_jobs: int = Field(default=10, ge=1, le=1000)
    # The image of the Jobs: the operator's own (the chart sets it); required in runner mode job.
    job_image: str = ""
    job_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # The Job container's resources (a ResourceRequirements object, JSON in the environment).
    job_resources: dict[str, Any] = Field(default_factory=dict)
    # Seconds a finished Job (and its Pod and pinned-spec ConfigMap) is kept before the TTL
    # controller deletes it; the operator records the result long before.
    job_ttl_seconds_after_finished: int = Field(default=3600, ge=0, le=7 * 86400)
    # activeDeadlineSeconds is the policy's runDeadlineSeconds plus this: the run stops itself at
    # its deadline and writes its report; the Job's deadline is the hard stop behind it.
    job_deadline_grace_seconds: int = Field(default=120, ge=0, le=3600)
    job_termination_message_path: str = Field(default="/dev/termination-log", pattern=r"^/[^\s]*$")
    # The ServiceAccount of runs whose policy names none (in the policy's namespace).
    job_service_account: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    # imagePullSecrets of the Jobs (Secrets that must exist in each policy's namespace).
    job_image_pull_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Extra environment of the Job container (AWS_REGION, endpoints, ECS_SCAN_AWS_*); JSON object.
    job_env: dict[str, str] = Field(default_factory=dict)
    # A Pod that has not started its container after this long (image pull back-off, a volume that
    # cannot be mounted) ends the run as failed and its Job is deleted.
    job_start_timeout_seconds: float = Field(default=300.0, ge=10, le=86400)
    # The operator re-reads a running Job this often when no watch event came (a missed event).
    job_poll_seconds: float = Field(default=60.0, ge=1, le=3600)

    @field_validator("watch_namespaces", "jira_allowed_hosts", "job_image_pull_secrets", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in re.split(r"[,\s]+", value) if part]
        return value

    @field_validator("watch_namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        for ns in value:
            if not DNS_LABEL_RE.fullmatch(ns):
                raise ValueError(f"{ns!r} is not a namespace name")
        return sorted(set(value))

    @field_validator("jira_allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        AllowList.parse(value)  # ValueError names the bad entry
        return value

    @field_validator("state_key")
    @classmethod
    def _state_key(cls, value: SecretStr | None) -> SecretStr | None:
        return check_state_key(value)

    @model_validator(mode="after")
    def _deadline(self) -> Settings:
        if (
            self.renew_deadline_seconds is not None
            and self.renew_deadline_seconds >= self.lease_duration_seconds
        ):
            raise ValueError("renew_deadline_seconds must be shorter than lease_duration_seconds")
        if self.runner_mode == "job" and not self.job_image:
            raise ValueError("ECS_SCAN_JOB_IMAGE is required when ECS_SCAN_RUNNER_MODE is job")
        return self

    @property
    def jira_allow_list(self) -> AllowList:
        """The Jira destinations allowed besides public addresses."""
        return AllowList.parse(self.jira_allowed_hosts)

    @property
    def clusterwide(self) -> bool:
        """Watch every namespace."""
        return not self.watch_namespaces

    @property
    def identity(self) -> str:
        """This replica's name: the pod name, else host and process id."""
        return self.pod_name or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def effective_lease_namespace(self) -> str:
        """Where the leader Lease lives."""
        return self.lease_namespace or self.pod_namespace or "default"

    @property
    def renew_deadline(self) -> float:
        """Seconds the leader may go without renewing before it steps down (2/3 of the lease)."""
        if self.renew_deadline_seconds is not None:
            return float(self.renew_deadline_seconds)
        return self.lease_duration_seconds * 2 / 3

    @property
    def liveness_endpoint(self) -> str | None:
        """kopf's --liveness URL, or None."""
        return f"http://0.0.0.0:{self.health_port}/healthz" if self.health_port else None


class AwsSettings(BaseSettings):
    """Time limits of every AWS call, for the operator and the CLI alike (`ECS_SCAN_AWS_*`).

    A dead endpoint costs one call's worth per stage, at most `max_attempts` x the connect or read
    timeout plus backoff (about 31 s with the defaults; measured figures in docs/timeouts.md):
    the first call to an endpoint that still fails at the connection level or with a 5xx after
    its attempts marks that endpoint down for `endpoint_cooldown_seconds`, and calls to it then
    fail at once instead of each waiting out its own timeouts.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "AWS_", extra="ignore", frozen=True)

    # Establishing the TCP (and TLS) connection; AWS endpoints answer in milliseconds.
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    # Waiting for each read of the answer (not the whole answer); the slowest calls used here
    # (Inspector ListFindings over 10 digests) answer in a few seconds.
    read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # HTTP attempts per call, the first included (botocore's `total_max_attempts`).
    max_attempts: int = Field(default=3, ge=1, le=10)
    # `standard`: throttling answers are retried with backoff (at most 1 s, then 2 s). `adaptive`
    # also slows every later call of the client after a throttle, which under sustained
    # throttling stretched the digest stage from 4 s to 198 s (docs/timeouts.md).
    retry_mode: Literal["standard", "adaptive"] = "standard"
    # How long an endpoint marked down is not called; 0 turns the marking off.
    endpoint_cooldown_seconds: float = Field(default=60.0, ge=0, le=3600)
    # Multi-account policies: each (account, region) is its own AWS rate-limit domain and gets
    # this many concurrent calls (the ECS task-definition bucket, 20/s, is saturated by ~2 at
    # 50 ms a call); the run makes at most max_concurrency calls at once over all of them, so
    # max_concurrency / workers_per_account_region (account, region) pairs are read at a time.
    workers_per_account_region: int = Field(default=4, ge=1, le=64)
    max_concurrency: int = Field(default=64, ge=1, le=1024)
    # How long a CVE's SearchVulnerabilities answer (CISA KEV data) is reused from the state object
    # before it is asked again; 0 asks every run. CISA adds a few entries a week; 48 h (not 24) so
    # that a daily schedule, whose runs are 24 h apart, reuses it every other run.
    kev_ttl_hours: float = Field(default=48.0, ge=0, le=720)
    # SearchVulnerabilities takes one CVE per call, so a first run asks thousands of them (2,254 on
    # the benchmark's fleet M: 14 s at 8 at a time). Inspector publishes no rate for it and the
    # calls are independent reads; standard retries back off a ThrottlingException. 48 at once
    # (1.1 s of calls for 1,000 CVEs at 50 ms), beside the findings reads' 8: within the run's
    # cap of calls at once (max_concurrency, 64).
    kev_workers: int = Field(default=48, ge=1, le=64)


def load_aws_settings() -> AwsSettings:
    """Read the AWS time limits from the environment; raise SettingsError naming the variable."""
    try:
        return AwsSettings()
    except ValidationError as exc:
        problems = [
            FieldError(
                (ENV_PREFIX + "AWS_" + "_".join(str(p) for p in err["loc"])).upper(),
                str(err["msg"]).removeprefix("Value error, "),
            )
            for err in exc.errors(include_url=False)
        ]
        raise SettingsError(problems) from None


def check_state_key(value: SecretStr | None) -> SecretStr | None:
    """An empty key is no key; a short one is refused (the message never holds the value)."""
    if value is None or not value.get_secret_value():
        return None
    if len(value.get_secret_value()) < MIN_STATE_KEY_LENGTH:
        raise ValueError(f"must be at least {MIN_STATE_KEY_LENGTH} characters")
    return value


def state_key_from_env() -> SecretStr | None:
    """`ECS_SCAN_STATE_KEY` for the CLI (the operator reads it with its settings); SettingsError if short."""
    try:
        return check_state_key(SecretStr(os.environ.get(STATE_KEY_ENV, "")))
    except ValueError as exc:
        raise SettingsError([FieldError(STATE_KEY_ENV, str(exc))]) from None


def load_settings() -> Settings:
    """Read the settings from the environment (and `ECS_SCAN_SECRETS_DIR` files); raise SettingsError."""
    secrets_dir = os.environ.get(SECRETS_DIR_ENV) or None
    if secrets_dir is not None and not Path(secrets_dir).is_dir():
        raise SettingsError([FieldError(SECRETS_DIR_ENV, f"{secrets_dir} is not a directory")])
    try:
        return Settings(_secrets_dir=secrets_dir)
    except ValidationError as exc:
        problems = [
            FieldError(
                (ENV_PREFIX + "_".join(str(p) for p in err["loc"])).upper() if err["loc"] else "(settings)",
                str(err["msg"]).removeprefix("Value error, "),
            )
            for err in exc.errors(include_url=False)
        ]
        raise SettingsError(problems) from None


@functools.cache
def get_settings() -> Settings:
    """The settings of this process, read on first use and kept."""
    return load_settings()
