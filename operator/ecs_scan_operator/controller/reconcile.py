"""What to do for a policy: read it, decide (pure `plan`); the scheduler (scheduler.py) carries it out.

`plan()` is a pure function of the ScanPolicy object, the time and what this process is running:
it validates the spec, recovers a run that a dead operator left in `status.activeRun`, and asks
the schedule math what is due. The scheduler writes the status (only when it changes, with the
object's resourceVersion as a precondition), queues and starts runs in the pool, and looks again
at the next fire time or on an event on the object (the run-now annotation, a spec change).

What is due is always computed from the stored status, and a run's scheduled time and run-now
value are written to the status before the run starts, so a restarted (or newly elected)
operator neither repeats nor silently loses a run: a run that was in flight is recorded as
interrupted, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ecs_scan_operator.controller.grants import GrantAccess
from ecs_scan_operator.controller.jobs import JobRunner
from ecs_scan_operator.controller.kube import KubeApi
from ecs_scan_operator.controller.leader import Leadership
from ecs_scan_operator.controller.metrics import Metrics
from ecs_scan_operator.controller.runs import RunPool
from ecs_scan_operator.core.grants import AccountScope, Refused, SecretKeyRef, Tenancy
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec, parse_spec
from ecs_scan_operator.core.result import RunResult
from ecs_scan_operator.core.schedule import (
    Decision,
    Schedule,
    decide,
    format_time,
    parse_time,
    run_now_requested,
)
from ecs_scan_operator.core.status import (
    ActiveRun,
    Context,
    ScanPolicyStatus,
    Trigger,
    failed_result,
    finished_status,
    idle_status,
    invalid_status,
    not_granted_status,
    running_status,
    skipped_note,
)
from ecs_scan_operator.errors import FieldError, InvalidPolicy
from ecs_scan_operator.ports import Clock

RUN_NOW_ANNOTATION = "ecsscan.io/run-now"
# After a failed API call the loop waits this long before it reads the policy again.
ERROR_BACKOFF = 5.0
# Waking a moment after a fire time makes sure `now` is past it when the loop looks again.
WAKE_SLACK = 0.2


# --------------------------------------------------------------------------- the object


@dataclass(frozen=True)
class PolicyObject:
    """The parts of a ScanPolicy the controller reads."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    created: datetime
    run_now: str | None
    spec: Any
    status: dict[str, Any]
    deleting: bool = False

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PolicyObject:
        """Read a ScanPolicy as the API server returns it."""
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        return cls(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            resource_version=str(meta.get("resourceVersion") or ""),
            created=parse_time(meta.get("creationTimestamp")) or datetime(1970, 1, 1, tzinfo=UTC),
            run_now=annotations.get(RUN_NOW_ANNOTATION),
            spec=obj.get("spec"),
            status=dict(obj.get("status") or {}),
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @property
    def ref(self) -> PolicyRef:
        """namespace/name, the policy's identity in reports and tickets."""
        return PolicyRef(namespace=self.namespace, name=self.name)


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Idle:
    """Nothing to run: write the status, sleep until wake_at (or an event)."""

    status: ScanPolicyStatus
    wake_at: datetime | None
    decision: Decision
    note: str = ""  # a skipped run, said in the status and as an Event


@dataclass(frozen=True)
class Invalid:
    """The spec is invalid: Ready=False InvalidSpec, no AWS call, wait for a new generation."""

    status: ScanPolicyStatus
    errors: tuple[FieldError, ...]


@dataclass(frozen=True)
class NotGranted:
    """The spec names something no grant allows: Ready=False AccessNotGranted, no AWS or Jira call."""

    status: ScanPolicyStatus
    refusal: Refused


@dataclass(frozen=True)
class Recover:
    """status.activeRun names a run nobody is running (the operator died): record it interrupted."""

    status: ScanPolicyStatus
    run: ActiveRun


@dataclass(frozen=True)
class Start:
    """Start a run: write the running status first, then submit it."""

    status: ScanPolicyStatus
    run: ActiveRun
    spec: PolicySpec
    external_id_secret: SecretKeyRef | None = None  # the allowing grant supplies the external ID
    jira_private_hosts: tuple[str, ...] = ()  # ... and where its Jira credentials may go privately
    notify_destinations: tuple[str, ...] | None = None  # ... and its notifications (None: open mode)
    accounts: AccountScope | None = None  # multi-account: the accounts the grant gives the run


Plan = Idle | Invalid | NotGranted | Recover | Start


def _context(obj: PolicyObject, spec: PolicySpec | None, now: datetime, decision: Decision | None) -> Context:
    note = ""
    if spec is not None and decision is not None and decision.skipped is not None:
        note = skipped_note(decision, spec.starting_deadline_seconds)
    return Context(
        generation=obj.generation,
        now=now,
        decision=decision,
        threshold=spec.severity_threshold if spec else "MEDIUM",
        jira=spec is not None and spec.jira is not None,
        note=note,
    )


def _decide(obj: PolicyObject, spec: PolicySpec, now: datetime, status: Mapping[str, Any]) -> Decision:
    return decide(
        Schedule(spec.schedule, spec.time_zone),  # parse_spec normalised and checked both
        now=now,
        last_schedule_time=parse_time(status.get("lastScheduleTime")),
        created=obj.created,
        starting_deadline_seconds=spec.starting_deadline_seconds,
        suspend=spec.suspend,
    )


def plan(
    obj: PolicyObject,
    *,
    now: datetime,
    identity: str,
    new_run_id: Callable[[datetime], str],
    tenancy: Tenancy | None = None,
) -> Plan:
    """What to do for this policy now (call it only when this process runs nothing for it).

    `tenancy` (grants mode) is the grants and namespace labels read just before; None is open mode.
    """
    try:
        spec = parse_spec(obj.spec)
    except InvalidPolicy as exc:
        return Invalid(invalid_status(obj.status, _context(obj, None, now, None), exc.errors), exc.errors)

    active = ActiveRun.from_status(obj.status)
    if active is not None:
        # Whoever started it is gone (this process runs nothing for the policy, and only the
        # leader acts): the run ended with its process. It is not run again.
        holder = f" ({active.holder})" if active.holder else ""
        result = failed_result(
            active.run_id,
            obj.ref.key,
            active.started,
            now,
            f"interrupted: the operator{holder} stopped during the run; it is not retried",
        )
        decision = _decide(obj, spec, now, obj.status)
        return Recover(
            finished_status(obj.status, _context(obj, spec, now, decision), result, active.trigger), active
        )

    external_id_secret: SecretKeyRef | None = None
    jira_private_hosts: tuple[str, ...] = ()
    notify_destinations: tuple[str, ...] | None = None
    accounts: AccountScope | None = None
    if tenancy is not None:
        verdict = tenancy.check(obj.ref, spec)
        if isinstance(verdict, Refused):
            ctx = _context(obj, spec, now, None)
            return NotGranted(not_granted_status(obj.status, ctx, verdict.message), verdict)
        external_id_secret, jira_private_hosts = verdict.external_id_secret, verdict.jira_private_hosts
        notify_destinations = verdict.notify_destinations
        accounts = verdict.accounts

    decision = _decide(obj, spec, now, obj.status)
    run_now = (
        obj.run_now.strip()
        if obj.run_now and run_now_requested(obj.run_now, obj.status.get("lastRunNow"))
        else None
    )
    if decision.due is not None or run_now is not None:
        run = ActiveRun(
            run_id=new_run_id(now),
            started=now,
            holder=identity,
            scheduled_time=decision.due,
            run_now=run_now,
        )
        status = running_status(obj.status, _context(obj, spec, now, decision), run)
        return Start(
            status,
            run,
            spec,
            external_id_secret,
            jira_private_hosts,
            notify_destinations=notify_destinations,
            accounts=accounts,
        )
    ctx = _context(obj, spec, now, decision)
    return Idle(idle_status(obj.status, ctx), decision.wake_at, decision, ctx.note)


def status_after_run(
    obj: PolicyObject, result: RunResult, trigger: Trigger, now: datetime
) -> ScanPolicyStatus:
    """The status once a run ended (read against the policy as it is now: the spec may have moved)."""
    try:
        spec: PolicySpec | None = parse_spec(obj.spec)
    except InvalidPolicy:
        spec = None
    decision = _decide(obj, spec, now, obj.status) if spec is not None else None
    return finished_status(obj.status, _context(obj, spec, now, decision), result, trigger)


# --------------------------------------------------------------------------- the worker


@dataclass
class Deps:
    """What the scheduler and its runs share."""

    kube: KubeApi
    pool: RunPool
    leadership: Leadership
    metrics: Metrics
    clock: Clock
    identity: str
    new_run_id: Callable[[datetime], str]
    cancel_grace: float = 60.0
    resync: float = 300.0
    grants: GrantAccess | None = None  # tenancy mode grants; None: open
    jobs: JobRunner | None = None  # runner mode job; None: runs in the pool's threads


def format_run_id(now: datetime) -> str:
    """Run ids as the pipeline makes them: sortable time plus a random suffix."""
    from ecs_scan_operator.pipeline import new_run_id

    return new_run_id(now)


__all__ = [
    "RUN_NOW_ANNOTATION",
    "Deps",
    "PolicyObject",
    "format_run_id",
    "format_time",
    "plan",
]
