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
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ecs_scan_operator.errors import FieldError, InvalidPolicy

ENV_PREFIX = "ECS_SCAN_"
SECRETS_DIR_ENV = "ECS_SCAN_SECRETS_DIR"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


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
    # A diagnosis aid: trace allocations and dump the top sites here on SIGUSR1 (controller.memprof).
    tracemalloc_file: str = ""

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in re.split(r"[,\s]+", value) if part]
        return value

    @field_validator("watch_namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        for ns in value:
            if not _DNS_LABEL.match(ns):
                raise ValueError(f"{ns!r} is not a namespace name")
        return sorted(set(value))

    @model_validator(mode="after")
    def _deadline(self) -> Settings:
        if (
            self.renew_deadline_seconds is not None
            and self.renew_deadline_seconds >= self.lease_duration_seconds
        ):
            raise ValueError("renew_deadline_seconds must be shorter than lease_duration_seconds")
        return self

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
