"""Runs as Kubernetes Jobs (runner mode `job`): create, follow, adopt and delete them. The API side.

What a Job looks like and what its end means are core.jobs' pure decisions; this module makes
the calls. The scheduler (scheduler.py) decides when a run starts and records its result exactly
as for a run in the operator's process; here:

- `launch()` creates the Job (owned by the ScanPolicy), then the pinned-spec ConfigMap owned by
  the Job. A refusal (a ResourceQuota on Jobs, admission, a missing namespace) is a failed result
  naming the API server's reason; a ConfigMap that cannot be stored deletes the Job again.
- `wait()` follows one Job until it ended: it wakes on the Job's watch events (kopf's
  `on.event` for batch/v1 Jobs feeds `notice()`) and otherwise re-reads the Job every
  `poll` seconds (a missed event, a Pod stuck before it started). Pods are read, by label, only
  then and when the Job ended: Pods are not watched, so a large cluster's Pod churn costs the
  operator nothing.
- `active()` and `find()` list a policy's Jobs by label: an active Job blocks a new run, and an
  operator that starts while Jobs run adopts them (their run is in the policy's status.activeRun).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ecs_scan_operator.controller.kube import Conflict
from ecs_scan_operator.core.grants import AccountScope
from ecs_scan_operator.core.jobs import (
    LABEL_RUN_ID,
    Ended,
    JobSettings,
    PolicyMeta,
    build_config_map,
    build_job,
    job_active,
    job_outcome,
    label_value,
    policy_selector,
)
from ecs_scan_operator.core.policy import PolicySpec
from ecs_scan_operator.core.result import RunResult
from ecs_scan_operator.core.status import ActiveRun, failed_result
from ecs_scan_operator.errors import NotFoundError, ScanError
from ecs_scan_operator.ports import Clock

log = logging.getLogger(__name__)


class JobApi(Protocol):
    """The API calls of runner mode job (ClientKubeApi implements them)."""

    def create_job(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Job (Conflict when the name exists)."""
        ...

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job, or None when it is gone."""
        ...

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its Pods and ConfigMap (gone already is fine)."""
        ...

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The Jobs matching a label selector."""
        ...

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The Pods matching a label selector."""
        ...

    def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a ConfigMap (Conflict when the name exists)."""
        ...


@dataclass(frozen=True)
class JobRef:
    """One run's Job."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        """namespace/name."""
        return f"{self.namespace}/{self.name}"


@dataclass
class _Watched:
    """What the watch said last about a followed Job (its body: a few KiB, only while it runs)."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)
    body: dict[str, Any] | None = None
    deleted: bool = False


@dataclass
class JobRunner:
    """Jobs of this operator: the global limit, launching, following, adopting."""

    api: JobApi
    settings: JobSettings
    clock: Clock
    max_jobs: int = 10
    poll: float = 60.0
    start_timeout: float = 300.0
    slots: asyncio.Semaphore = field(init=False)
    _watched: dict[str, _Watched] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.max_jobs)

    # ---- watch events

    def notice(self, body: Mapping[str, Any], type_: str | None) -> None:
        """A Job watch event: wake whoever follows that Job (other Jobs are ignored)."""
        meta = body.get("metadata") or {}
        watched = self._watched.get(f"{meta.get('namespace')}/{meta.get('name')}")
        if watched is None:
            return
        watched.deleted = type_ == "DELETED"
        watched.body = dict(body)
        watched.changed.set()

    def following(self) -> int:
        """How many Jobs this process follows now."""
        return len(self._watched)

    # ---- launching

    async def active(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        """The policy's Jobs that have not ended (an API list by label)."""
        jobs = await asyncio.to_thread(self.api.list_jobs, namespace, policy_selector(uid))
        return [j for j in jobs if job_active(j)]

    async def find(self, namespace: str, uid: str, run_id: str) -> JobRef | None:
        """The Job of this run of the policy, ended or not (to adopt it), or None."""
        selector = f"{policy_selector(uid)},{LABEL_RUN_ID}={label_value(run_id)}"
        jobs = await asyncio.to_thread(self.api.list_jobs, namespace, selector)
        for job in jobs:
            meta = job.get("metadata") or {}
            if (meta.get("annotations") or {}).get(LABEL_RUN_ID) == run_id and not meta.get(
                "deletionTimestamp"
            ):
                return JobRef(namespace, str(meta.get("name")))
        return None

    async def launch(
        self,
        policy: PolicyMeta,
        run: ActiveRun,
        spec: PolicySpec,
        *,
        jira_private_hosts: tuple[str, ...] = (),
        notify_destinations: tuple[str, ...] | None = None,
        accounts: AccountScope | None = None,
    ) -> JobRef | RunResult:
        """Create the run's Job and its pinned spec; a failed result when the API refused either."""
        job = build_job(
            policy,
            spec,
            run,
            self.settings,
            jira_private_hosts=jira_private_hosts,
            notify_destinations=notify_destinations,
            accounts=accounts,
        )
        ref = JobRef(policy.namespace, job["metadata"]["name"])
        self._watched.setdefault(ref.key, _Watched())  # events from the creation on are kept
        try:
            try:
                created = await asyncio.to_thread(self.api.create_job, policy.namespace, job)
            except Conflict:  # created by an earlier attempt of this very run (the name is the run's)
                found = await asyncio.to_thread(self.api.get_job, policy.namespace, ref.name)
                if found is None:
                    raise
                created = found
            job["metadata"]["uid"] = (created.get("metadata") or {}).get("uid")
            self._watched[ref.key].body = created
            try:
                config_map = build_config_map(job, policy, spec)
                await asyncio.to_thread(self.api.create_config_map, policy.namespace, config_map)
            except Conflict:
                pass  # stored by an earlier attempt; it is immutable
            except ScanError as exc:
                await self.delete(ref)
                raise ScanError(f"the pinned spec (ConfigMap {ref.name}) could not be stored: {exc}") from exc
        except ScanError as exc:
            self._watched.pop(ref.key, None)
            text = str(exc)
            if not text.startswith("the pinned spec"):
                text = f"the Job could not be created: {exc}"
            return failed_result(run.run_id, policy.ref.key, run.started, self.clock.now(), text)
        return ref

    # ---- following

    async def wait(self, ref: JobRef, run: ActiveRun, policy: str, cancel: asyncio.Event) -> RunResult | None:
        """Follow the Job until it ended: its result; None when `cancel` was set first."""
        watched = self._watched.setdefault(ref.key, _Watched())
        try:
            polled = watched.body is None  # adopted: read it first; launched: the created body
            while not cancel.is_set():
                watched.changed.clear()  # an event during the awaits below wakes the next wait at once
                if polled:
                    await self._refresh(ref, watched)
                if watched.deleted or watched.body is None:
                    return failed_result(
                        run.run_id, policy, run.started, self.clock.now(), f"the Job {ref.name} was deleted"
                    )
                body = watched.body
                # Pods are read when the Job ended, and at each poll while it runs (one stuck before
                # its container started ends the run).
                if not job_active(body) or polled:
                    result = await self._outcome(ref, body, run, policy)
                    if result is not None:
                        return result
                polled = not await _first(watched.changed, cancel, self.poll)
            return None
        finally:
            self._watched.pop(ref.key, None)

    async def _refresh(self, ref: JobRef, watched: _Watched) -> None:
        try:
            watched.body = await asyncio.to_thread(self.api.get_job, ref.namespace, ref.name)
        except ScanError as exc:  # the next poll tries again; the last body stays
            log.warning("reading Job %s failed: %s", ref.key, exc)
            return
        watched.deleted = watched.body is None

    async def _outcome(
        self, ref: JobRef, body: Mapping[str, Any], run: ActiveRun, policy: str
    ) -> RunResult | None:
        selector = f"job-name={ref.name}"
        try:
            pods = await asyncio.to_thread(self.api.list_pods, ref.namespace, selector)
        except ScanError as exc:
            log.warning("reading the Pods of Job %s failed: %s", ref.key, exc)
            if job_active(body):
                return None
            pods = []  # the Job ended: its reason is known without them
        decided = job_outcome(
            body, pods, run=run, policy=policy, now=self.clock.now(), stuck_after=self.start_timeout
        )
        if not isinstance(decided, Ended):
            return None
        if decided.delete:
            await self.delete(ref)
        return decided.result

    async def delete(self, ref: JobRef) -> None:
        """Delete the Job (its Pods and ConfigMap follow through the garbage collector)."""
        try:
            await asyncio.to_thread(self.api.delete_job, ref.namespace, ref.name)
        except NotFoundError:
            pass
        except ScanError as exc:  # its deadline or TTL ends it anyway
            log.warning("deleting Job %s failed: %s", ref.key, exc)


async def _first(event: asyncio.Event, cancel: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` or `cancel`, at most `timeout` seconds; True when `event` was set."""
    tasks = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(cancel.wait())}
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    return event.is_set()


def job_settings(settings: Any) -> JobSettings:
    """The Job part of the operator's Settings (settings.py)."""
    return JobSettings(
        image=settings.job_image,
        image_pull_policy=settings.job_image_pull_policy,
        resources=dict(settings.job_resources),
        ttl_seconds_after_finished=settings.job_ttl_seconds_after_finished,
        deadline_grace_seconds=settings.job_deadline_grace_seconds,
        termination_message_path=settings.job_termination_message_path,
        default_service_account=settings.job_service_account,
        image_pull_secrets=tuple(settings.job_image_pull_secrets),
        env=dict(settings.job_env),
        jira_allowed_hosts=tuple(settings.jira_allowed_hosts),
        notify_allow_private=settings.notify_allow_private_destinations,
        session_tags=settings.aws_session_tags,
    )


__all__ = ["JobApi", "JobRef", "JobRunner", "job_settings"]
