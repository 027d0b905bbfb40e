"""One scheduler for every ScanPolicy: a small index, one timer loop, a FIFO queue of runs.

Why not a loop per policy: at thousands of policies a task, a cached body and kopf's daemon
bookkeeping per policy cost ~55 KiB each, and a periodic re-read per policy costs an API request
per policy per resync. Here a policy costs one `Entry` (its identity, the resourceVersion last
looked at, when to look again), and the API is called only when something happens:

- a watch event (kopf's `on.event`) with a resourceVersion the scheduler has not seen yet (a
  new policy, a spec or annotation change; not its own status writes) makes it look at the
  policy at once, from the event's body: `plan()` decides, the status is written when it
  changed, and the entry keeps only when its schedule fires next;
- the timer loop looks again (a GET) when a fire time comes; the clock is re-read at least every
  `resync` seconds, so a clock jump is noticed without any API call;
- a run that is due goes to the run queue as the policy's uid alone. `max_runs` runners take
  uids in order; each reads the policy, plans again on it as it is then (the spec, the run-now
  annotation, what is still due) and only then writes the running status and starts the run.
  So a queued run holds a few bytes, whatever the spec, and a run is never started twice or
  from a stale spec;
- a deleted policy (or one being deleted) has its run cancelled, its entry and metrics dropped.

The rules of what is due are `plan()`'s (reconcile.py); this module only decides when to look.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import gc
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ecs_scan_operator.controller.jobs import JobRef
from ecs_scan_operator.controller.kube import Conflict
from ecs_scan_operator.controller.reconcile import (
    ERROR_BACKOFF,
    WAKE_SLACK,
    Deps,
    Idle,
    Invalid,
    NotGranted,
    PolicyObject,
    Recover,
    Start,
    plan,
    status_after_run,
)
from ecs_scan_operator.controller.runs import RunHandle, read_jira_credentials
from ecs_scan_operator.core.grants import Tenancy
from ecs_scan_operator.core.jobs import PolicyMeta, job_name
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.core.schedule import parse_time
from ecs_scan_operator.core.status import ActiveRun, failed_result, status_patch
from ecs_scan_operator.errors import Cancelled, NotFoundError, ScanError

log = logging.getLogger(__name__)

# Looks (a GET, a plan, maybe a status write) in flight at once from the timer loop.
MAX_LOOKS = 8
# Seconds without any look after which freed memory is handed back to the OS.
QUIET_BEFORE_TRIM = 10.0
# Attempts to write a run's final status (each after a fresh read).
FINISH_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class PolicyKey:
    """Who a policy is: enough to read it, post an Event on it and name it in logs."""

    namespace: str
    name: str
    uid: str

    @property
    def key(self) -> str:
        """namespace/name."""
        return f"{self.namespace}/{self.name}"


@dataclass(slots=True)
class Entry:
    """What the scheduler keeps per policy (a few hundred bytes; never the object itself)."""

    ref: PolicyKey
    seen: str = ""  # the resourceVersion last looked at or written by us
    due: datetime | None = None  # look again then (None: only on an event)
    busy: bool = False  # a look or a run of it is in progress
    again: bool = False  # something happened during the look or run: look once more after it
    queued: bool = False  # its uid is in the run queue
    invalid_reported: int = -1  # the generation whose InvalidSpec Event was posted
    skip_reported: datetime | None = None  # the fire time whose MissedSchedule Event was posted
    refusal_reported: str = ""  # the AccessNotGranted message whose Event was posted


@dataclass(slots=True)
class _Running:
    """A run executing in the pool (or in a Job: no handle), and how to stop it from the loop."""

    handle: RunHandle | None
    run: ActiveRun
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class EventPoster(Protocol):
    """Kubernetes Events on a policy."""

    def __call__(self, ref: PolicyKey, type_: str, reason: str, message: str) -> None:
        """Post one Event (Normal or Warning)."""
        ...


LoggerFactory = Callable[[PolicyKey], "logging.Logger | logging.LoggerAdapter[logging.Logger]"]


def _plain_logger(ref: PolicyKey) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(log, {"policy": ref.key})


@dataclass
class Scheduler:
    """Every policy of this process: `notice()` watch events, `start()` the loops, `stop()` them."""

    deps: Deps
    post_event: EventPoster
    logger_for: LoggerFactory = _plain_logger
    entries: dict[str, Entry] = field(default_factory=dict)
    _timers: list[tuple[datetime, int, str]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _queue: deque[str] = field(default_factory=deque)
    _queued: asyncio.Event = field(default_factory=asyncio.Event)
    _kick: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _looks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_LOOKS))
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _runs: dict[str, _Running] = field(default_factory=dict)
    _deleted: set[str] = field(default_factory=set)
    _started: bool = False
    _looked: int = 0  # looks since memory was last released

    # ---- lifecycle

    def start(self) -> None:
        """Start the timer loop and one runner per run slot (once; later calls do nothing)."""
        if self._started:
            return
        self._started = True
        self._spawn(self._timer_loop())
        runners = self.deps.jobs.max_jobs if self.deps.jobs is not None else self.deps.pool.max_runs
        for _ in range(runners):
            self._spawn(self._runner())

    @property
    def _slots(self) -> asyncio.Semaphore:
        """Runs at once: maxConcurrentJobs Jobs, or maxConcurrentRuns threads."""
        return self.deps.jobs.slots if self.deps.jobs is not None else self.deps.pool.slots

    async def stop(self) -> None:
        """Stop looking; cancel the runs and record them as cancelled (the operator is stopping)."""
        self._stopping.set()
        for running in list(self._runs.values()):
            running.cancel.set()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.deps.cancel_grace + 5)
            for task in pending:
                task.cancel()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called."""
        return self._stopping.is_set()

    def _event(self, ref: PolicyKey, type_: str, reason: str, message: str) -> None:
        try:
            self.post_event(ref, type_, reason, message)
        except Exception as exc:  # noqa: BLE001 - an Event that cannot be posted must not stop a run
            log.warning("could not post the %s Event on %s: %s: %s", reason, ref.key, type(exc).__name__, exc)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- watch events

    async def notice(self, raw: Mapping[str, Any], type_: str | None = None) -> None:
        """A watch event: look at the policy now if it changed since the scheduler last saw it."""
        meta = raw.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if not uid or self.stopping:
            return
        if type_ == "DELETED":
            await self.forget(uid, deleting=True)
            return
        entry = self.entries.get(uid)
        if entry is None:
            ref = PolicyKey(str(meta.get("namespace") or "default"), str(meta.get("name") or ""), uid)
            entry = self.entries[uid] = Entry(ref)
        if meta.get("deletionTimestamp"):
            self._cancel_run(uid, deleting=True)
        if str(meta.get("resourceVersion") or "") == entry.seen:
            return  # our own status write coming back, or a re-list: nothing new
        if entry.busy:
            entry.again = True
            return
        if not self.deps.leadership.is_leader():
            return  # indexed only; the timer loop looks at every policy once this replica leads
        async with self._looks:  # bounded API work when thousands of policies arrive at once
            if entry.busy:
                entry.again = True
            else:
                await self._look(entry, PolicyObject.from_dict(raw))

    async def forget(self, uid: str, *, deleting: bool) -> None:
        """The policy is gone: cancel its run (no status is written), drop its entry and metrics."""
        entry = self.entries.pop(uid, None)
        if entry is None:
            return
        running = self._cancel_run(uid, deleting=deleting)
        if running is not None:  # until the run stopped, as kopf waited for a daemon
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.done.wait(), self.deps.cancel_grace + 1)
        self._deleted.discard(uid)
        self.deps.metrics.forget(entry.ref.namespace, entry.ref.name)

    def _cancel_run(self, uid: str, *, deleting: bool) -> _Running | None:
        running = self._runs.get(uid)
        if running is not None:
            if deleting:
                self._deleted.add(uid)
            running.cancel.set()
        return running

    # ---- looking at a policy

    def _set_due(self, entry: Entry, when: datetime | None) -> None:
        entry.due = when
        if when is not None:
            heapq.heappush(self._timers, (when, next(self._seq), entry.ref.uid))
            if self._timers[0][2] == entry.ref.uid:
                self._kick.set()

    async def _look(self, entry: Entry, obj: PolicyObject | None = None) -> None:
        """Plan on the policy (from `obj`, else read) until nothing more is to be done now."""
        entry.busy = True
        self._looked += 1
        try:
            while not self.stopping and entry.ref.uid in self.entries:
                entry.again = False
                if obj is None:
                    obj = await self._get(entry.ref)
                    if obj is None:
                        return
                again = await self._look_once(entry, obj)
                obj = None
                if not (again or entry.again):
                    return
        except Exception:  # noqa: BLE001 - a bug in one look must not end the policy's scheduling
            self.logger_for(entry.ref).exception(
                "looking at the policy failed; again in %.0f s", ERROR_BACKOFF
            )
            self._set_due(entry, self.deps.clock.now() + timedelta(seconds=ERROR_BACKOFF))
        finally:
            entry.busy = False

    async def _look_once(self, entry: Entry, obj: PolicyObject) -> bool:  # noqa: PLR0911 - one early return per plan variant and per write outcome
        """One plan carried out; True when the policy must be read and planned again at once."""
        entry.seen = obj.resource_version
        entry.due = None
        if obj.deleting:
            return False  # nothing new starts; the DELETED event drops it
        if entry.ref.uid in self._runs or entry.queued:
            return False  # the run's end (or start) looks again
        if self.deps.pool.active(entry.ref.uid) is not None:
            # A run of this policy outlived a stopped scheduler in this process: wait for it.
            self._set_due(entry, self.deps.clock.now() + timedelta(seconds=ERROR_BACKOFF))
            return False
        now = self.deps.clock.now()
        step = plan(
            obj,
            now=now,
            identity=self.deps.identity,
            new_run_id=self.deps.new_run_id,
            tenancy=await self._tenancy(entry.ref.namespace),
        )
        logger = self.logger_for(entry.ref)
        if isinstance(step, NotGranted):
            written = await self._write(entry, obj, step.status)
            if written is None:
                return True
            if written and entry.refusal_reported != step.refusal.message:
                entry.refusal_reported = step.refusal.message
                self._event(entry.ref, "Warning", "AccessNotGranted", step.status["message"])
                logger.warning("%s", step.status["message"])
            return False  # a grant or spec change comes as an event
        entry.refusal_reported = ""
        if isinstance(step, Invalid):
            written = await self._write(entry, obj, step.status)
            if written is None:
                return True
            if written and entry.invalid_reported != obj.generation:
                entry.invalid_reported = obj.generation
                self._event(entry.ref, "Warning", "InvalidSpec", step.status["message"])
                logger.warning("%s", step.status["message"])
            return False  # a new generation comes as an event
        if isinstance(step, Recover):
            return await self._recover(entry, obj, step)
        if isinstance(step, Start):
            entry.queued = True
            self._queue.append(entry.ref.uid)
            self._queued.set()
            return False
        return await self._idle(entry, obj, step)

    async def _recover(self, entry: Entry, obj: PolicyObject, step: Recover) -> bool:
        if self.deps.jobs is not None and await self._adopt(entry, step.run):
            return False  # its Job still runs, or ended unrecorded: followed as if started here
        written = await self._write(entry, obj, step.status)
        if written:
            self._event(
                entry.ref,
                "Warning",
                "RunInterrupted",
                f"run {step.run.run_id} was interrupted: its operator stopped",
            )
            self.logger_for(entry.ref).warning(
                "run %s was interrupted by an operator restart", step.run.run_id
            )
        return written is not False

    async def _idle(self, entry: Entry, obj: PolicyObject, step: Idle) -> bool:
        written = await self._write(entry, obj, step.status)
        if written is None:
            return True
        if not written:
            return False
        self.deps.metrics.policy_scheduled(
            entry.ref.namespace,
            entry.ref.name,
            step.decision.interval_seconds,
            parse_time(obj.status.get("lastSuccessfulTime")),
        )
        skipped = step.decision.skipped
        if skipped is not None and skipped != entry.skip_reported:
            entry.skip_reported = skipped
            self.deps.metrics.run_skipped(entry.ref.namespace, entry.ref.name)
            self._event(entry.ref, "Warning", "MissedSchedule", step.note)
        if step.wake_at is not None:
            self._set_due(entry, step.wake_at + timedelta(seconds=WAKE_SLACK))
        return False

    # ---- the timer loop

    async def _timer_loop(self) -> None:
        """Look at policies whose time came; re-read the clock at least every `resync` seconds."""
        leading = self.deps.leadership.is_leader()
        while not self.stopping:
            if not self.deps.leadership.is_leader():
                leading = False
                await self._race(self.deps.leadership.wait(), None)
                continue
            if not leading:
                leading = True  # newly elected: look at every policy (followers only indexed them)
                now = self.deps.clock.now()
                for entry in list(self.entries.values()):
                    if not entry.busy:
                        self._set_due(entry, now)
            now = self.deps.clock.now()
            while self._timers and self._timers[0][0] <= now:
                when, _, uid = heapq.heappop(self._timers)
                due = self.entries.get(uid)
                if due is None or due.due != when or due.busy:
                    continue  # stale: rescheduled, gone, or being looked at
                await self._looks.acquire()
                self._spawn(self._timed_look(due))
            timeout = self.deps.resync
            if self._timers:
                timeout = max(0.0, min(timeout, (self._timers[0][0] - now).total_seconds()))
            looked = self._looked
            if looked:
                timeout = min(timeout, QUIET_BEFORE_TRIM)
            self._kick.clear()
            kicked = await self._race(self._kick.wait(), timeout)
            if looked and not kicked and self._looked == looked and not self._runs:
                # Quiet after a burst of events (a bulk apply, a re-list): hand the pages their
                # bodies used back to the OS instead of keeping the burst's high-water mark.
                self._looked = 0
                await asyncio.to_thread(release_memory)

    async def _timed_look(self, entry: Entry) -> None:
        try:
            await self._look(entry)
        finally:
            self._looks.release()

    # ---- runs

    async def _runner(self) -> None:
        """Take queued policies one at a time; plan again on each and run what is still due."""
        while not self.stopping:
            if not self._queue:
                self._queued.clear()
                await self._race(self._queued.wait(), None)
                continue
            if not self.deps.leadership.is_leader():
                await self._race(self.deps.leadership.wait(), None)
                continue
            uid = self._queue.popleft()
            entry = self.entries.get(uid)
            if entry is None:
                continue
            entry.queued = False
            slots = self._slots
            if not await self._race(slots.acquire(), None):
                return
            look = False
            try:
                look = await self._start_run(entry)
            except Exception:  # noqa: BLE001 - logged; one policy's bug must not stop the runner
                self.logger_for(entry.ref).exception(
                    "starting the run failed; again in %.0f s", ERROR_BACKOFF
                )
                self._set_due(entry, self.deps.clock.now() + timedelta(seconds=ERROR_BACKOFF))
            finally:
                slots.release()
            if (look or entry.again) and uid in self.entries and not self.stopping:
                await self._look(entry)  # the status after the run, the next fire time
            # A run's garbage (clients, service models, pages of findings) is not kept for the next.
            await asyncio.to_thread(release_memory)

    async def _start_run(self, entry: Entry) -> bool:
        """Plan again on the policy as it is now and run it if still due; True: look at it after."""
        while entry.busy:  # a look in progress ends first (it starts nothing: the run is ours now)
            await asyncio.sleep(0.05)
        entry.busy = True
        try:
            obj = await self._get(entry.ref)
            if obj is None or obj.deleting:
                return False
            entry.seen = obj.resource_version
            if self.deps.pool.active(entry.ref.uid) is not None:
                # A run of this policy outlived a stopped scheduler in this process: not twice.
                self._set_due(entry, self.deps.clock.now() + timedelta(seconds=ERROR_BACKOFF))
                return False
            first = plan(
                obj,
                now=self.deps.clock.now(),
                identity=self.deps.identity,
                new_run_id=self.deps.new_run_id,
                tenancy=await self._tenancy(entry.ref.namespace),
            )
            if not isinstance(first, Start):
                return True  # no longer due (or invalid, or interrupted): the look says so
            if self.deps.jobs is not None and await self._job_blocks(entry):
                return False
            written = await self._write(entry, obj, first.status)
            if not written:
                return written is None  # conflict: read again; error: retried after the backoff
            run = first.run
            self.logger_for(entry.ref).info("run %s started (%s)", run.run_id, run.trigger.value)
            where = f" as Job {job_name(obj.name, run.run_id)}" if self.deps.jobs is not None else ""
            self._event(
                entry.ref, "Normal", "RunStarted", f"run {run.run_id} started ({run.trigger.value}){where}"
            )
            await self._execute(entry, obj, first)
            return True
        finally:
            entry.busy = False

    async def _execute(self, entry: Entry, obj: PolicyObject, step: Start) -> None:
        run, spec = step.run, step.spec
        began = time.monotonic()
        if self.deps.grants is not None and step.external_id_secret is not None:
            try:
                spec = await self.deps.grants.with_external_id(spec, step.external_id_secret)
            except ScanError as exc:
                result = failed_result(
                    run.run_id, obj.ref.key, run.started, self.deps.clock.now(), f"external ID: {exc}"
                )
                await self._finish(entry, run, result, time.monotonic() - began)
                return
        if self.deps.jobs is not None:
            # The run's own ServiceAccount reads the AWS identity, the kubelet mounts the Jira
            # Secret: the operator reads no credentials for a run in a Job.
            meta = PolicyMeta(obj.namespace, obj.name, obj.uid, obj.generation)
            launched = await self.deps.jobs.launch(
                meta,
                run,
                spec,
                jira_private_hosts=step.jira_private_hosts,
                notify_destinations=step.notify_destinations,
                accounts=step.accounts,
            )
            del obj, step, spec
            if isinstance(launched, RunResult):
                await self._finish(entry, run, launched, time.monotonic() - began)
                return
            running = _Running(None, run)
            self._runs[entry.ref.uid] = running
            self.logger_for(entry.ref).info("run %s: Job %s created", run.run_id, launched.name)
            await self._follow(entry, running, launched)
            return
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
                await self._finish(entry, run, result, time.monotonic() - began)
                return
            if step.jira_private_hosts:  # the allowing grant's private Jira hosts travel with them
                credentials = credentials.model_copy(update={"allowed_hosts": step.jira_private_hosts})
        uid = entry.ref.uid
        handle = self.deps.pool.submit(
            uid,
            run.run_id,
            obj.ref,
            spec,
            credentials,
            notify_destinations=step.notify_destinations,
            accounts=step.accounts,
        )
        running = _Running(handle, run)
        del obj, step, spec  # the run has its own; nothing of the policy is kept while it runs
        self._runs[uid] = running
        try:
            ended = await self._await_run(entry, running, handle)
        finally:
            self._runs.pop(uid, None)
            running.done.set()
        if ended is not None:
            await self._finish(entry, run, ended, time.monotonic() - began)

    # ---- runs as Jobs (runner mode job)

    async def _follow(self, entry: Entry, running: _Running, ref: JobRef) -> None:
        """Wait for the run's Job to end and record its result; `running` is in `_runs` already."""
        jobs = self.deps.jobs
        assert jobs is not None
        run, uid = running.run, entry.ref.uid
        began = time.monotonic()
        try:
            result = await jobs.wait(ref, run, entry.ref.key, running.cancel)
        finally:
            self._runs.pop(uid, None)
            running.done.set()
        if result is None:
            if uid in self._deleted:
                # The garbage collector deletes it too; deleting now stops the Pod sooner.
                await jobs.delete(ref)
                self._event(entry.ref, "Normal", "RunCancelled", f"run {run.run_id} cancelled")
            # Else the operator is stopping: the Job runs on and the next leader adopts it.
            return
        seconds = (result.completed - result.started).total_seconds() if result.completed else 0.0
        await self._finish(
            entry, run, result, max(seconds, time.monotonic() - began if seconds <= 0 else seconds)
        )

    async def _adopt(self, entry: Entry, run: ActiveRun) -> bool:
        """status.activeRun names a run nobody here follows: follow its Job if it exists."""
        jobs = self.deps.jobs
        assert jobs is not None
        try:
            ref = await jobs.find(entry.ref.namespace, entry.ref.uid, run.run_id)
        except ScanError as exc:
            # Unknown whether it runs: not recorded as interrupted on a guess; looked at again.
            self.logger_for(entry.ref).warning("listing the Jobs of run %s failed: %s", run.run_id, exc)
            self._set_due(entry, self.deps.clock.now() + timedelta(seconds=ERROR_BACKOFF))
            return True
        if ref is None:
            return False
        running = _Running(None, run)
        self._runs[entry.ref.uid] = running
        self.logger_for(entry.ref).info("run %s: following its Job %s (adopted)", run.run_id, ref.name)
        self._spawn(self._adopted(entry, running, ref))
        return True

    async def _adopted(self, entry: Entry, running: _Running, ref: JobRef) -> None:
        """An adopted Job counts against maxConcurrentJobs like one this process created."""
        slots = self._slots
        if not await self._race(slots.acquire(), None):
            self._runs.pop(entry.ref.uid, None)
            running.done.set()
            return
        try:
            await self._follow(entry, running, ref)
        except Exception:  # noqa: BLE001 - logged; looked at again after the backoff
            self.logger_for(entry.ref).exception("following Job %s failed", ref.name)
        finally:
            slots.release()
        if entry.ref.uid in self.entries and not self.stopping:
            if entry.busy:
                entry.again = True  # the look in progress looks once more
            else:
                await self._look(entry)  # the status after the run, the next fire time

    async def _job_blocks(self, entry: Entry) -> bool:
        """A Job of the policy still runs (never two runs at once): True, and look again later."""
        jobs = self.deps.jobs
        assert jobs is not None
        try:
            active = await jobs.active(entry.ref.namespace, entry.ref.uid)
        except ScanError as exc:
            self.logger_for(entry.ref).warning("listing the policy's Jobs failed: %s", exc)
            active = [{}]
        if not active:
            return False
        names = ", ".join(str((j.get("metadata") or {}).get("name") or "?") for j in active)
        if names != "?":
            self.logger_for(entry.ref).warning("not starting a run: Job %s of the policy still runs", names)
        self._set_due(entry, self.deps.clock.now() + timedelta(seconds=jobs.poll))
        return True

    async def _await_run(self, entry: Entry, running: _Running, handle: RunHandle) -> RunResult | None:
        future = asyncio.wrap_future(handle.future)
        await self._race(asyncio.shield(future), None, also=running.cancel)
        run = running.run
        logger = self.logger_for(entry.ref)
        deleting = entry.ref.uid in self._deleted
        if not future.done():
            handle.cancel.set()
            why = "the policy is being deleted" if deleting else "the operator is stopping"
            logger.info("cancelling run %s: %s", run.run_id, why)
            done, _ = await asyncio.wait({future}, timeout=self.deps.cancel_grace)
            if not done:
                logger.warning("run %s did not stop within %.0f s", run.run_id, self.deps.cancel_grace)
                return None
        try:
            return future.result()
        except Cancelled:
            self._event(entry.ref, "Normal", "RunCancelled", f"run {run.run_id} cancelled")
            if not deleting:
                # The operator is stopping: say so now rather than leave it to the next leader.
                result = failed_result(
                    run.run_id,
                    entry.ref.key,
                    run.started,
                    self.deps.clock.now(),
                    "cancelled: the operator stopped during the run",
                )
                await self._finish(entry, run, result, 0.0, attempts=1)
            return None

    async def _finish(
        self,
        entry: Entry,
        run: ActiveRun,
        result: RunResult,
        seconds: float,
        *,
        attempts: int = FINISH_ATTEMPTS,
    ) -> None:
        ref = entry.ref
        for _ in range(attempts):
            obj = await self._get(ref, once=True)
            if obj is None:
                break
            desired = status_after_run(obj, result, run.trigger, self.deps.clock.now())
            if await self._write(entry, obj, desired):
                break
        if result.refused:
            # Another process or cluster holds the policy's run lease: a non-start, not a failure.
            self.deps.metrics.run_skipped(ref.namespace, ref.name)
            self._event(ref, "Warning", "LeaseHeld", f"run {result.run_id} not started: {result.refused}")
            self.logger_for(ref).warning("run %s not started: %s", result.run_id, result.refused)
            return
        self.deps.metrics.run_finished(ref.namespace, ref.name, result, seconds)
        summary = (
            f"run {result.run_id} {result.outcome.value}: "
            f"{result.images_total} images, {result.findings_total} findings"
        )
        if result.report_uri:
            summary += f"; report {result.report_uri}"
        causes = f"; causes: {result.causes_text()}" if result.error_causes else ""
        if result.outcome is Outcome.SUCCEEDED:
            self._event(ref, "Normal", "RunSucceeded", summary)
        elif result.outcome is Outcome.PARTIAL:
            first = result.errors[0] if result.errors else ""
            self._event(
                ref,
                "Warning",
                "RunPartiallyFailed",
                f"{summary}; {result.errors_total} errors, first: {first}{causes}",
            )
        else:
            self._event(
                ref,
                "Warning",
                "RunFailed",
                f"run {result.run_id} failed: {'; '.join(result.errors[:2])}{causes}",
            )
        self.logger_for(ref).info("%s (%.1f s)", summary, seconds)

    def look_at_all(self) -> None:
        """Every policy is looked at again now (a ScanAccessGrant changed)."""
        now = self.deps.clock.now()
        for entry in list(self.entries.values()):
            if entry.busy:
                entry.again = True
            else:
                self._set_due(entry, now)

    # ---- API calls, off the loop

    async def _tenancy(self, namespace: str) -> Tenancy | None:
        """The grants and the namespace's labels now (tenancy mode grants), else None."""
        if self.deps.grants is None:
            return None
        return await self.deps.grants.tenancy(namespace)

    async def _get(self, ref: PolicyKey, *, once: bool = False) -> PolicyObject | None:
        """The policy now; None when gone (the entry is dropped). Retries API errors unless stopping."""
        while True:
            try:
                raw = await asyncio.to_thread(self.deps.kube.get_policy, ref.namespace, ref.name)
            except ScanError as exc:
                self.deps.metrics.kube_errors.labels("get_policy").inc()
                self.logger_for(ref).warning("reading the policy failed: %s", exc)
                if once or self.stopping:
                    return None
                await self._sleep(ERROR_BACKOFF)
                continue
            obj = PolicyObject.from_dict(raw) if raw is not None else None
            if obj is None or obj.uid != ref.uid:  # gone, or a new policy of the same name: not ours
                if not once:
                    await self.forget(ref.uid, deleting=True)
                return None
            return obj

    async def _write(self, entry: Entry, obj: PolicyObject, desired: Mapping[str, Any]) -> bool | None:
        """Write the status when it changed: True written (or unchanged), None conflict, False error."""
        patch = status_patch(obj.status, desired)
        if patch is None:
            return True
        try:
            written = await asyncio.to_thread(
                self.deps.kube.patch_policy_status, obj.namespace, obj.name, patch, obj.resource_version
            )
        except Conflict:
            return None  # someone wrote in between: read again
        except NotFoundError:
            await self.forget(entry.ref.uid, deleting=True)  # deleted since the event: its DELETED comes
            return False
        except ScanError as exc:
            self.deps.metrics.kube_errors.labels("patch_status").inc()
            self.logger_for(entry.ref).warning("writing the status failed: %s", exc)
            self._set_due(entry, self.deps.clock.now() + timedelta(seconds=ERROR_BACKOFF))
            return False
        # Our own write comes back as a watch event with this version: it needs no look.
        entry.seen = str(((written or {}).get("metadata") or {}).get("resourceVersion") or entry.seen)
        return True

    # ---- waiting

    async def _race(
        self, awaitable: Awaitable[Any], timeout: float | None, *, also: asyncio.Event | None = None
    ) -> bool:
        """Await something unless stopping (or `also` set, or timed out) first; True when it completed."""
        task = asyncio.ensure_future(awaitable)
        stops = {asyncio.ensure_future(self._stopping.wait())}
        if also is not None:
            stops.add(asyncio.ensure_future(also.wait()))
        try:
            await asyncio.wait({task, *stops}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for stop in stops:
                stop.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            task.exception()
            return True
        return False

    async def _sleep(self, timeout: float) -> None:
        await self._race(asyncio.sleep(max(0.0, timeout)), None)


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_memory() -> None:
    """Collect a run's garbage and hand freed heap pages back to the OS (glibc's malloc_trim)."""
    gc.collect()
    libc = _libc()
    if libc is not None:  # not glibc (musl, macOS): the pages stay with the process
        libc.malloc_trim(0)


__all__ = ["MAX_LOOKS", "Entry", "PolicyKey", "Scheduler", "release_memory"]
