"""The per-policy loop: read the policy, decide (pure `plan`), write status, run, repeat.

`plan()` is a pure function of the ScanPolicy object, the time and what this process is running:
it validates the spec, recovers a run that a dead operator left in `status.activeRun`, and asks
the schedule math what is due. `PolicyWorker` carries a plan out: it writes the status (only when
it changes, with the object's resourceVersion as a precondition), starts runs in the pool, waits
for them while staying cancellable, and sleeps until the next fire time, an event on the object
(the run-now annotation, a spec change) or a stop.

What is due is always computed from the stored status, and a run's scheduled time and run-now
value are written to the status before the run starts, so a restarted (or newly elected)
operator neither repeats nor silently loses a run: a run that was in flight is recorded as
interrupted, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ecs_scan_operator.controller.kube import Conflict, KubeApi
from ecs_scan_operator.controller.leader import Leadership
from ecs_scan_operator.controller.metrics import Metrics
from ecs_scan_operator.controller.runs import RunHandle, RunPool, read_jira_credentials
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec, parse_spec
from ecs_scan_operator.core.result import Outcome, RunResult
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
    running_status,
    skipped_note,
    status_patch,
)
from ecs_scan_operator.errors import Cancelled, FieldError, InvalidPolicy, ScanError
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


Plan = Idle | Invalid | Recover | Start


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


def plan(obj: PolicyObject, *, now: datetime, identity: str, new_run_id: Callable[[datetime], str]) -> Plan:
    """What to do for this policy now (call it only when this process runs nothing for it)."""
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
        return Start(running_status(obj.status, _context(obj, spec, now, decision), run), run, spec)
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


class EventSink(Protocol):
    """Kubernetes Events on the policy."""

    def post(self, type_: str, reason: str, message: str) -> None:
        """Post one Event (Normal or Warning)."""
        ...


class Stop(Protocol):
    """The daemon's stop signal."""

    def is_set(self) -> bool:
        """True once the worker must stop."""
        ...

    @property
    def deleting(self) -> bool:
        """True when it stops because the policy is being deleted."""
        ...

    async def wait(self) -> None:
        """Return once stopped."""
        ...


@dataclass
class Deps:
    """What every policy worker shares."""

    kube: KubeApi
    pool: RunPool
    leadership: Leadership
    metrics: Metrics
    clock: Clock
    identity: str
    new_run_id: Callable[[datetime], str]
    cancel_grace: float = 60.0
    resync: float = 300.0


@dataclass
class PolicyWorker:
    """Runs one policy for as long as it exists (a kopf daemon calls `run`)."""

    namespace: str
    name: str
    uid: str
    deps: Deps
    events: EventSink
    stop: Stop
    wake: asyncio.Event
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: logging.getLogger(__name__)
    )
    _invalid_reported: int = -1
    _skips_reported: set[datetime] = field(default_factory=set)

    async def run(self) -> None:
        """Loop until stopped or the policy is gone."""
        while not self.stop.is_set():
            try:
                if not await self.step():
                    return
            except Exception:  # a bug in one iteration must not end the policy's scheduling
                self.logger.exception("policy loop failed; retrying in %.0f s", ERROR_BACKOFF)
                await self._sleep(ERROR_BACKOFF)

    async def step(self) -> bool:
        """One iteration; False when the policy is gone."""
        if not self.deps.leadership.is_leader():
            await self._race(self.deps.leadership.wait(), None)
            return True
        handle = self.deps.pool.active(self.uid)
        if handle is not None:
            # A run of this policy outlived an earlier worker (kopf restarted the daemon): wait for it.
            await self._race(asyncio.wrap_future(handle.future), None)
            return True
        self.wake.clear()  # before the read: an event after it wakes the next sleep
        obj = await self._get()
        if obj is None:
            return False
        if obj.deleting:
            await self._sleep(self.deps.resync)  # kopf stops this daemon; nothing new starts
            return True
        step = plan(
            obj, now=self.deps.clock.now(), identity=self.deps.identity, new_run_id=self.deps.new_run_id
        )
        if isinstance(step, Invalid):
            await self._write(obj, step.status)
            if self._invalid_reported != obj.generation:
                self._invalid_reported = obj.generation
                self.events.post("Warning", "InvalidSpec", step.status["message"])
                self.logger.warning("%s", step.status["message"])
            await self._sleep(self.deps.resync)
        elif isinstance(step, Recover):
            if await self._write(obj, step.status):
                self.events.post(
                    "Warning",
                    "RunInterrupted",
                    f"run {step.run.run_id} was interrupted: its operator stopped",
                )
                self.logger.warning("run %s was interrupted by an operator restart", step.run.run_id)
        elif isinstance(step, Start):
            await self._start(step)
        else:
            await self._idle(obj, step)
        return True

    async def _idle(self, obj: PolicyObject, step: Idle) -> None:
        if not await self._write(obj, step.status):
            return
        skipped = step.decision.skipped
        if skipped is not None and skipped not in self._skips_reported:
            self._skips_reported = {skipped}
            self.deps.metrics.run_skipped(self.namespace, self.name)
            self.events.post("Warning", "MissedSchedule", step.note)
        timeout = self.deps.resync
        if step.wake_at is not None:
            until = (step.wake_at - self.deps.clock.now()).total_seconds() + WAKE_SLACK
            timeout = max(WAKE_SLACK, min(timeout, until))
        await self._sleep(timeout)

    async def _start(self, first: Start) -> None:
        if not await self._race(self.deps.pool.slots.acquire(), None):
            return
        try:
            # Time passed while waiting for a slot: decide again on the policy as it is now.
            obj = await self._get()
            if obj is None or obj.deleting:
                return
            step = plan(
                obj,
                now=self.deps.clock.now(),
                identity=self.deps.identity,
                new_run_id=lambda _: first.run.run_id,
            )
            if not isinstance(step, Start) or not await self._write(obj, step.status):
                return
            run = step.run
            self.logger.info("run %s started (%s)", run.run_id, run.trigger.value)
            self.events.post("Normal", "RunStarted", f"run {run.run_id} started ({run.trigger.value})")
            await self._execute(obj, step)
        finally:
            self.deps.pool.slots.release()

    async def _execute(self, obj: PolicyObject, step: Start) -> None:
        run, spec = step.run, step.spec
        began = time.monotonic()
        credentials = None
        if spec.jira is not None:
            try:
                credentials = await asyncio.to_thread(
                    read_jira_credentials, self.deps.kube, obj.namespace, spec.jira.credentials_secret
                )
            except ScanError as exc:
                result = failed_result(
                    run.run_id, obj.ref.key, run.started, self.deps.clock.now(), f"jira credentials: {exc}"
                )
                await self._finish(run, result, time.monotonic() - began)
                return
        handle = self.deps.pool.submit(self.uid, run.run_id, obj.ref, spec, credentials)
        ended = await self._await_run(handle, run)
        if ended is not None:
            await self._finish(run, ended, time.monotonic() - began)

    async def _await_run(self, handle: RunHandle, run: ActiveRun) -> RunResult | None:
        future = asyncio.wrap_future(handle.future)
        if not await self._race(asyncio.shield(future), None):
            handle.cancel.set()
            why = "the policy is being deleted" if self.stop.deleting else "the operator is stopping"
            self.logger.info("cancelling run %s: %s", run.run_id, why)
            done, _ = await asyncio.wait({future}, timeout=self.deps.cancel_grace)
            if not done:
                self.logger.warning("run %s did not stop within %.0f s", run.run_id, self.deps.cancel_grace)
                return None
        try:
            return future.result()
        except Cancelled:
            self.events.post("Normal", "RunCancelled", f"run {run.run_id} cancelled")
            if not self.stop.deleting:
                # The operator is stopping: say so now rather than leave it to the next leader.
                result = failed_result(
                    run.run_id,
                    f"{self.namespace}/{self.name}",
                    run.started,
                    self.deps.clock.now(),
                    "cancelled: the operator stopped during the run",
                )
                await self._finish(run, result, 0.0, attempts=1)
            return None

    async def _finish(self, run: ActiveRun, result: RunResult, seconds: float, *, attempts: int = 5) -> None:
        for _ in range(attempts):
            obj = await self._get()
            if obj is None or obj.uid != self.uid:
                break
            desired = status_after_run(obj, result, run.trigger, self.deps.clock.now())
            if await self._write(obj, desired):
                break
        if result.refused:
            self.deps.metrics.run_skipped(self.namespace, self.name)
            self.events.post("Warning", "LeaseHeld", f"run {result.run_id} not started: {result.refused}")
            self.logger.warning("run %s not started: %s", result.run_id, result.refused)
            return
        self.deps.metrics.run_finished(self.namespace, self.name, result, seconds)
        summary = (
            f"run {result.run_id} {result.outcome.value}: "
            f"{result.images_total} images, {result.findings_total} findings"
        )
        if result.report_uri:
            summary += f"; report {result.report_uri}"
        causes = f"; causes: {result.causes_text()}" if result.error_causes else ""
        if result.outcome is Outcome.SUCCEEDED:
            self.events.post("Normal", "RunSucceeded", summary)
        elif result.outcome is Outcome.PARTIAL:
            first = result.errors[0] if result.errors else ""
            self.events.post(
                "Warning",
                "RunPartiallyFailed",
                f"{summary}; {result.errors_total} errors, first: {first}{causes}",
            )
        else:
            self.events.post(
                "Warning", "RunFailed", f"run {result.run_id} failed: {'; '.join(result.errors[:2])}{causes}"
            )
        self.logger.info("%s (%.1f s)", summary, seconds)

    # ---- API calls, off the loop

    async def _get(self) -> PolicyObject | None:
        """The policy as it is now; None when gone. Retries API errors until stopped (once when stopping)."""
        stopping = self.stop.is_set()  # a last write while stopping gets one attempt
        while stopping or not self.stop.is_set():
            try:
                raw = await asyncio.to_thread(self.deps.kube.get_policy, self.namespace, self.name)
            except ScanError as exc:
                self.deps.metrics.kube_errors.labels("get_policy").inc()
                self.logger.warning("reading the policy failed: %s", exc)
                if stopping:
                    return None
                await self._sleep(ERROR_BACKOFF)
                continue
            if raw is None:
                return None
            obj = PolicyObject.from_dict(raw)
            return obj if obj.uid == self.uid else None  # a new policy of the same name: not ours
        return None

    async def _write(self, obj: PolicyObject, desired: Mapping[str, Any]) -> bool:
        """Write the status when it changed; False when it could not be written (read again)."""
        patch = status_patch(obj.status, desired)
        if patch is None:
            return True
        try:
            await asyncio.to_thread(
                self.deps.kube.patch_policy_status, obj.namespace, obj.name, patch, obj.resource_version
            )
        except Conflict:
            return False  # someone wrote in between: the caller reads again
        except ScanError as exc:
            self.deps.metrics.kube_errors.labels("patch_status").inc()
            self.logger.warning("writing the status failed: %s", exc)
            await self._sleep(ERROR_BACKOFF)
            return False
        return True

    # ---- waiting

    async def _race(self, awaitable: Awaitable[Any], timeout: float | None) -> bool:
        """Await something unless stopped (or timed out) first; True when it completed (even by raising)."""
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            task.exception()  # retrieved here; callers that care read their own future
            return True
        return False

    async def _sleep(self, timeout: float) -> None:
        """Until the timeout, a wake-up (an event on the policy) or a stop."""
        await self._race(self.wake.wait(), timeout)


def format_run_id(now: datetime) -> str:
    """Run ids as the pipeline makes them: sortable time plus a random suffix."""
    from ecs_scan_operator.pipeline import new_run_id

    return new_run_id(now)


__all__ = [
    "RUN_NOW_ANNOTATION",
    "Deps",
    "PolicyObject",
    "PolicyWorker",
    "format_run_id",
    "format_time",
    "plan",
]
