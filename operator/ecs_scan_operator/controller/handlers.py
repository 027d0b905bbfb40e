"""The kopf handlers for ScanPolicy. Thin: they feed one Scheduler for all policies and nothing else.

- startup: kopf settings (our annotation prefix, Events only for errors), the shared
  dependencies (Kubernetes client, run pool, leader election, metrics endpoint) and the scheduler;
- an event handler: every watch event goes to the scheduler, which looks at the policy when it
  changed (run-now annotation, spec) and drops it when deleted. No daemon or timer per policy:
  at thousands of policies those cost memory and API calls per policy (scheduler.py);
- a liveness probe value: whether this replica leads;
- cleanup: stop the scheduler (cancel and record runs), hand the leader lease over.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, cast

import kopf

from ecs_scan_operator.clock import SystemClock
from ecs_scan_operator.controller.grants import GrantAccess
from ecs_scan_operator.controller.jobs import JobRunner, job_settings
from ecs_scan_operator.controller.kube import PLURAL, ClientKubeApi, count_requests
from ecs_scan_operator.controller.leader import AlwaysLeader, LeaderElector, Leadership
from ecs_scan_operator.controller.metrics import Metrics
from ecs_scan_operator.controller.reconcile import Deps, format_run_id
from ecs_scan_operator.controller.runs import RunPool, execute_run
from ecs_scan_operator.controller.scheduler import PolicyKey, Scheduler
from ecs_scan_operator.core.grants import GRANT_PLURAL
from ecs_scan_operator.core.jobs import LABEL_MANAGED_BY, MANAGED_BY
from ecs_scan_operator.core.policy import API_GROUP, API_VERSION
from ecs_scan_operator.core.status import clip_bytes
from ecs_scan_operator.settings import Settings, get_settings

FINALIZER = f"{API_GROUP}/finalizer"
EVENT_MESSAGE_BYTES = 1024
log = logging.getLogger(__name__)

# Read once, at import (the handlers' declarations may depend on them).
SETTINGS: Settings = get_settings()


_QUIET = frozenset({"Handler 'policy_event' succeeded.", "Handler 'job_event' succeeded."})


class _QuietEvents(logging.Filter):
    """Drop kopf's "Handler 'policy_event' succeeded." line: it would log every change of every policy."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in _QUIET


logging.getLogger("kopf.objects").addFilter(_QuietEvents())


def object_reference(ref: PolicyKey) -> kopf.Body:
    """What kopf needs to name the policy in an Event or a log line; never the whole object."""
    raw = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ScanPolicy",
        "metadata": {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid},
    }
    return kopf.Body(cast(kopf.RawBody, raw))


def post_event(ref: PolicyKey, type_: str, reason: str, message: str) -> None:
    """Post one Event on the policy through kopf (queued, retried)."""
    kopf.event(
        object_reference(ref), type=type_, reason=reason, message=clip_bytes(message, EVENT_MESSAGE_BYTES)
    )


def logger_factory(settings: kopf.OperatorSettings) -> Callable[[PolicyKey], kopf.ObjectLogger]:
    """Loggers per policy, made when a line is logged (the scheduler keeps none)."""

    def logger_for(ref: PolicyKey) -> kopf.ObjectLogger:
        # kopf's per-object logger: the policy in the text prefix or the JSON "k8s" field, and
        # error lines become Events, as from a handler.
        return kopf.LocalObjectLogger(body=object_reference(ref), settings=settings)

    return logger_for


def _step_down(pool: RunPool) -> None:
    # Another replica may take the lease as soon as it expires; exit now, as controller-runtime
    # does, so no run of ours overlaps one of theirs. The next leader records ours as interrupted.
    log.critical("leadership lost: exiting so that no two replicas run policies")
    pool.cancel_all()
    logging.shutdown()
    os._exit(1)


def build_deps(settings: Settings, loop: asyncio.AbstractEventLoop) -> Deps:
    """The dependencies every policy worker shares."""
    kube = ClientKubeApi()
    grants: GrantAccess | None = None
    if settings.tenancy_mode == "grants":
        # First, so a failure (no CRD, no RBAC) is retried before anything binds a port.
        grants = GrantAccess(kube)
        grants.prime()
    metrics = Metrics(process_metrics=True)
    count_requests(lambda call: metrics.kube_requests.labels(call).inc())
    run_fn = functools.partial(
        execute_run,
        session_identity=settings.aws_session_tags,
        kube=kube,
        notify_allow_private=settings.notify_allow_private_destinations,
    )
    pool = RunPool(settings.max_concurrent_runs, run_fn)
    jobs: JobRunner | None = None
    if settings.runner_mode == "job":
        jobs = JobRunner(
            kube,
            job_settings(settings),
            SystemClock(),
            max_jobs=settings.max_concurrent_jobs,
            poll=settings.job_poll_seconds,
            start_timeout=settings.job_start_timeout_seconds,
        )
        metrics.run_slots.set(settings.max_concurrent_jobs)
        metrics.runs_in_progress.set_function(jobs.following)
    else:
        metrics.run_slots.set(settings.max_concurrent_runs)
        metrics.runs_in_progress.set_function(pool.running)
    leadership: Leadership
    if settings.leader_election:
        elector = LeaderElector(
            kube,
            name=settings.lease_name,
            namespace=settings.effective_lease_namespace,
            identity=settings.identity,
            lease_duration=settings.lease_duration_seconds,
            renew_deadline=settings.renew_deadline,
            retry_period=settings.retry_period_seconds,
            on_lost=lambda: _step_down(pool),
        )
        elector.start(loop)
        metrics.leader.set_function(lambda: 1.0 if elector.is_leader() else 0.0)
        leadership = elector
    else:
        metrics.leader.set(1)
        leadership = AlwaysLeader()
    if settings.metrics_enabled:
        metrics.serve(settings.metrics_port)
    return Deps(
        kube=kube,
        pool=pool,
        leadership=leadership,
        metrics=metrics,
        clock=SystemClock(),
        identity=settings.identity,
        new_run_id=format_run_id,
        cancel_grace=settings.cancel_grace_seconds,
        resync=settings.resync_seconds,
        grants=grants,
        jobs=jobs,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf, build the shared dependencies and start the scheduler."""
    # Run events are posted explicitly; only errors logged on a policy become Events as well.
    settings.posting.level = logging.ERROR
    # Watched namespaces are plain names, so kopf needs no namespace or CRD listing (least privilege).
    settings.scanning.disabled = not SETTINGS.kopf_scanning
    # No handler needs a finalizer now; the name stays so kopf removes the one older versions added.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    # Reconnect the watch now and then (from the last resourceVersion: no re-list unless it expired).
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    deps = build_deps(SETTINGS, asyncio.get_running_loop())
    memo.deps = deps
    memo.scheduler = Scheduler(deps, post_event=post_event, logger_for=logger_factory(settings))
    log.info(
        "ecs-scan-operator %s: namespaces=%s, runner=%s, runs at once=%d, leader election=%s, tenancy=%s",
        SETTINGS.identity,
        ",".join(SETTINGS.watch_namespaces) or "all",
        SETTINGS.runner_mode,
        SETTINGS.max_concurrent_jobs if SETTINGS.runner_mode == "job" else SETTINGS.max_concurrent_runs,
        SETTINGS.leader_election,
        SETTINGS.tenancy_mode,
    )
    if SETTINGS.tenancy_mode == "open":
        log.warning(
            "tenancy mode open: any ScanPolicy may use every AWS role, bucket and Jira site this "
            "operator can reach; use tenancy mode grants when several teams share the cluster"
        )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop the scheduler (runs are cancelled and recorded) and hand the lease over."""
    deps: Deps | None = getattr(memo, "deps", None)
    if deps is None:
        return
    scheduler: Scheduler | None = getattr(memo, "scheduler", None)
    if scheduler is not None:
        await scheduler.stop()
    deps.pool.shutdown()
    if isinstance(deps.leadership, LeaderElector):
        await asyncio.to_thread(deps.leadership.stop, release=True)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def policy_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Every watch event (listing, added, modified, deleted) to the scheduler."""
    scheduler: Scheduler = memo.scheduler
    # Started from a handler, not at startup: its tasks then carry the context kopf sets up for
    # handlers, which kopf.event() needs to queue Events.
    scheduler.start()
    await scheduler.notice(event["object"], event.get("type"))


if SETTINGS.tenancy_mode == "grants":

    @kopf.on.event(API_GROUP, API_VERSION, GRANT_PLURAL)
    async def grant_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """A ScanAccessGrant changed: update the index and make every policy look again now."""
        deps: Deps | None = getattr(memo, "deps", None)
        scheduler: Scheduler | None = getattr(memo, "scheduler", None)
        if deps is None or deps.grants is None:
            return
        deps.grants.index.apply(type, body)
        if scheduler is not None:
            scheduler.look_at_all()

    @kopf.on.event("", "v1", "namespaces")
    async def namespace_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """A Namespace listed, added, relabelled or deleted: keep its labels; a change is looked at now."""
        deps: Deps | None = getattr(memo, "deps", None)
        scheduler: Scheduler | None = getattr(memo, "scheduler", None)
        if deps is None or deps.grants is None:
            return
        if deps.grants.namespaces.apply(type, body) and scheduler is not None:
            scheduler.look_at_all()


if SETTINGS.runner_mode == "job":

    @kopf.on.event("batch", "v1", "jobs", labels={LABEL_MANAGED_BY: MANAGED_BY})
    async def job_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        """A Job of ours changed: wake the run that follows it (scheduler -> controller/jobs.py)."""
        deps: Deps | None = getattr(memo, "deps", None)
        if deps is not None and deps.jobs is not None:
            deps.jobs.notice(event["object"], event.get("type"))


@kopf.on.probe(id="leader")
def leader(memo: kopf.Memo, **_: Any) -> bool:
    """Whether this replica leads (shown in the liveness endpoint's JSON)."""
    deps: Deps | None = getattr(memo, "deps", None)
    return deps is not None and deps.leadership.is_leader()
