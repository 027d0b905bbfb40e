"""The kopf handlers for ScanPolicy. Thin: they wire one PolicyWorker per policy and nothing else.

- startup: kopf settings (our finalizer and annotation prefix, Events only for errors), the
  shared dependencies (Kubernetes client, run pool, leader election, metrics endpoint);
- a daemon per ScanPolicy: the policy's loop (reconcile.PolicyWorker), stopped on deletion;
- an event handler: wakes the policy's loop at once (run-now annotation, spec changes);
- a liveness probe value: whether this replica leads;
- cleanup: cancel runs, hand the leader lease over.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from ecs_scan_operator.clock import SystemClock
from ecs_scan_operator.controller.kube import PLURAL, ClientKubeApi
from ecs_scan_operator.controller.leader import AlwaysLeader, LeaderElector, Leadership
from ecs_scan_operator.controller.metrics import Metrics
from ecs_scan_operator.controller.reconcile import Deps, PolicyWorker, format_run_id
from ecs_scan_operator.controller.runs import RunPool
from ecs_scan_operator.core.policy import API_GROUP, API_VERSION
from ecs_scan_operator.core.status import clip_bytes
from ecs_scan_operator.settings import Settings, get_settings

FINALIZER = f"{API_GROUP}/finalizer"
EVENT_MESSAGE_BYTES = 1024
log = logging.getLogger(__name__)

# Read once, at import: the daemon's stop timings are part of its declaration.
SETTINGS: Settings = get_settings()


class _QuietWake(logging.Filter):
    """Drop kopf's "Handler 'wake' succeeded." line: it would log every change of every policy."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Handler 'wake' succeeded."


logging.getLogger("kopf.objects").addFilter(_QuietWake())


class KopfEvents:
    """EventSink posting through kopf (queued, retried, on the policy as involvedObject)."""

    def __init__(self, body: kopf.Body) -> None:
        self.body = body

    def post(self, type_: str, reason: str, message: str) -> None:
        """Post one Event."""
        kopf.event(self.body, type=type_, reason=reason, message=clip_bytes(message, EVENT_MESSAGE_BYTES))


class KopfStop:
    """Stop adapted from the daemon's `stopped` flag."""

    def __init__(self, stopped: kopf.DaemonStopped) -> None:
        self._stopped = stopped

    def is_set(self) -> bool:
        """True once kopf asked the daemon to stop."""
        return bool(self._stopped)

    @property
    def deleting(self) -> bool:
        """True when the policy is being deleted (not merely the operator stopping)."""
        reason = self._stopped.reason
        return reason is not None and kopf.DaemonStoppingReason.RESOURCE_DELETED in reason

    async def wait(self) -> None:
        """Return once stopped."""
        await self._stopped.wait()


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
    metrics = Metrics(process_metrics=True)
    pool = RunPool(settings.max_concurrent_runs)
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
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf and build the shared dependencies."""
    # Run events are posted explicitly; only errors logged on a policy become Events as well.
    settings.posting.level = logging.ERROR
    # Watched namespaces are plain names, so kopf needs no namespace or CRD listing (least privilege).
    settings.scanning.disabled = not SETTINGS.kopf_scanning
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    # Re-list now and then, so a missed watch event cannot leave a policy unnoticed for long.
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    memo.deps = build_deps(SETTINGS, asyncio.get_running_loop())
    log.info(
        "ecs-scan-operator %s: namespaces=%s, max concurrent runs=%d, leader election=%s",
        SETTINGS.identity,
        ",".join(SETTINGS.watch_namespaces) or "all",
        SETTINGS.max_concurrent_runs,
        SETTINGS.leader_election,
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Cancel runs and hand the lease over."""
    deps: Deps | None = getattr(memo, "deps", None)
    if deps is None:
        return
    deps.pool.shutdown()
    if isinstance(deps.leadership, LeaderElector):
        await asyncio.to_thread(deps.leadership.stop, release=True)


def _wake(memo: kopf.Memo) -> asyncio.Event:
    event: asyncio.Event = memo.setdefault("wake", asyncio.Event())
    return event


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def wake(memo: kopf.Memo, **_: Any) -> None:
    """Any change of a policy (annotation, spec, status) makes its loop look again now."""
    _wake(memo).set()


@kopf.daemon(
    API_GROUP,
    API_VERSION,
    PLURAL,
    id="scheduler",
    cancellation_backoff=SETTINGS.cancel_grace_seconds + 5,
    cancellation_timeout=10,
)
async def scheduler(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    uid: str,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """The policy's loop, for as long as the policy exists."""
    deps: Deps = memo.deps
    namespace = namespace or "default"  # ScanPolicy is namespaced; kopf types it optional
    stop = KopfStop(stopped)
    worker = PolicyWorker(
        namespace=namespace,
        name=name,
        uid=uid,
        deps=deps,
        events=KopfEvents(body),
        stop=stop,
        wake=_wake(memo),
        logger=logger,
    )
    try:
        await worker.run()
    finally:
        if stop.deleting:
            deps.metrics.forget(namespace, name)


@kopf.on.probe(id="leader")
def leader(memo: kopf.Memo, **_: Any) -> bool:
    """Whether this replica leads (shown in the liveness endpoint's JSON)."""
    deps: Deps | None = getattr(memo, "deps", None)
    return deps is not None and deps.leadership.is_leader()
