"""The scheduler against an in-memory API server: runs, status, events, restarts, deletion, limits, scale."""

from __future__ import annotations

import asyncio
import base64
import copy
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ecs_scan_operator.adapters.jira_credentials import JiraCredentials
from ecs_scan_operator.controller.kube import Conflict
from ecs_scan_operator.controller.metrics import Metrics
from ecs_scan_operator.controller.reconcile import RUN_NOW_ANNOTATION, Deps
from ecs_scan_operator.controller.runs import RunPool
from ecs_scan_operator.controller.scheduler import PolicyKey, Scheduler
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec
from ecs_scan_operator.core.result import RunResult
from ecs_scan_operator.core.status import Condition, find_condition
from ecs_scan_operator.errors import Cancelled, NotFoundError, TransientError

T0 = datetime(2025, 3, 1, 10, 0, 30, tzinfo=UTC)
NS = "team-a"


# --------------------------------------------------------------------------- fakes


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeKube:
    """An in-memory API server: policies with resourceVersions, secrets, leases; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.status_patches: list[dict[str, Any]] = []
        self.gets = 0
        self.fail_next_patches = 0
        self.conflict_next_patches = 0
        self.fail_leases = False

    def _rv(self) -> str:
        self.version += 1
        return str(self.version)

    def add_policy(self, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
        with self.lock:
            obj = {
                "apiVersion": "ecsscan.io/v1alpha1",
                "kind": "ScanPolicy",
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "uid": f"uid-{name}",
                    "generation": 1,
                    "resourceVersion": self._rv(),
                    "creationTimestamp": "2025-03-01T10:00:10Z",
                    **meta,
                },
                "spec": copy.deepcopy(spec),
            }
            self.policies[(NS, name)] = obj
            return copy.deepcopy(obj)

    def edit(self, name: str, fn: Callable[[dict[str, Any]], None], *, spec_changed: bool = False) -> None:
        with self.lock:
            obj = self.policies[(NS, name)]
            fn(obj)
            obj["metadata"]["resourceVersion"] = self._rv()
            if spec_changed:
                obj["metadata"]["generation"] += 1

    def current(self, name: str) -> dict[str, Any]:
        """The object as a watch event carries it (not an API call of the controller)."""
        with self.lock:
            return copy.deepcopy(self.policies[(NS, name)])

    def status(self, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.policies[(NS, name)].get("status") or {})

    # ---- KubeApi

    def get_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            self.gets += 1
            obj = self.policies.get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def patch_policy_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        with self.lock:
            if self.fail_next_patches:
                self.fail_next_patches -= 1
                raise TransientError("HTTP 503")
            obj = self.policies.get((namespace, name))
            if obj is None:
                raise NotFoundError("gone")
            if self.conflict_next_patches or obj["metadata"]["resourceVersion"] != resource_version:
                self.conflict_next_patches = max(0, self.conflict_next_patches - 1)
                raise Conflict("the object has been modified")
            obj["status"] = merge_patch(obj.get("status") or {}, dict(status))
            obj["metadata"]["resourceVersion"] = self._rv()
            self.status_patches.append(copy.deepcopy(dict(status)))
            return copy.deepcopy(obj)

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        with self.lock:
            if (namespace, name) not in self.secrets:
                raise NotFoundError(f"read secret {namespace}/{name}: not found")
            return dict(self.secrets[(namespace, name)])

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            if self.fail_leases:
                raise TransientError("API down")
            lease = self.leases.get((namespace, name))
            return copy.deepcopy(lease) if lease else None

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            if self.fail_leases:
                raise TransientError("API down")
            key = (namespace, body["metadata"]["name"])
            if key in self.leases:
                raise Conflict("exists")
            lease = copy.deepcopy(dict(body))
            lease["metadata"]["resourceVersion"] = self._rv()
            self.leases[key] = lease
            return copy.deepcopy(lease)

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            if self.fail_leases:
                raise TransientError("API down")
            current = self.leases.get((namespace, name))
            if current is None:
                raise NotFoundError("no lease")
            if current["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion"):
                raise Conflict("lease moved")
            lease = copy.deepcopy(dict(body))
            lease["metadata"]["resourceVersion"] = self._rv()
            self.leases[(namespace, name)] = lease
            return copy.deepcopy(lease)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)


@dataclass
class Events:
    posted: list[tuple[str, str, str]] = field(default_factory=list)

    def post(self, type_: str, reason: str, message: str) -> None:
        self.posted.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.posted]


class Leader:
    def __init__(self, leading: bool = True) -> None:
        self.leading = leading
        self.event = asyncio.Event()
        if leading:
            self.event.set()

    def is_leader(self) -> bool:
        return self.leading

    async def wait(self) -> None:
        await self.event.wait()

    def lead(self) -> None:
        self.leading = True
        self.event.set()


class Runner:
    """A fake run_fn: records calls, optionally blocks until released or cancelled.

    `shape` changes the result before it is returned (a refused run, a run with error causes).
    """

    def __init__(
        self,
        *,
        block: bool = False,
        honour_cancel: bool = True,
        shape: Callable[[RunResult], None] | None = None,
    ) -> None:
        self.shape = shape
        self.calls: list[tuple[str, str, JiraCredentials | None]] = []
        self.notify_destinations: list[tuple[str, ...] | None] = []
        self.specs: list[PolicySpec] = []
        self.block = block
        self.honour_cancel = honour_cancel
        self.release = threading.Event()
        self.started = threading.Event()
        self.running = 0
        self.max_running = 0
        self.lock = threading.Lock()

    def __call__(
        self,
        policy: PolicyRef,
        spec: PolicySpec,
        run_id: str,
        cancel: threading.Event,
        creds: JiraCredentials | None,
        /,
        *,
        notify_destinations: tuple[str, ...] | None = None,
        account_scope: Any = None,
    ) -> RunResult:
        with self.lock:
            self.calls.append((policy.key, run_id, creds))
            self.notify_destinations.append(notify_destinations)
            self.specs.append(spec)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.started.set()
        try:
            if self.block:
                while not self.release.wait(0.01):
                    if cancel.is_set() and self.honour_cancel:
                        raise Cancelled("run cancelled")
            result = RunResult(run_id=run_id, policy=policy.key, started=T0)
            result.images_total = 3
            result.images_by_status = {"scanned": 3}
            result.findings_by_severity = {"CRITICAL": 1, "HIGH": 1}
            result.report_uri = f"s3://ecs-scan-reports/ecs-scan/{run_id}/index.json"
            result.aws_calls = {"ecs:ListTaskDefinitions": 2, "ecr:DescribeImages": 1}
            result.finish(T0 + timedelta(seconds=5))
            if self.shape is not None:
                self.shape(result)
            return result
        finally:
            with self.lock:
                self.running -= 1


SPEC: dict[str, Any] = {
    "schedule": "0 * * * *",  # hourly: nothing due at 10:00:30 for a policy created at 10:00:10
    "aws": {"region": "us-east-1"},
    "report": {"s3": {"bucket": "ecs-scan-reports"}},
}


@dataclass
class Harness:
    """A scheduler fed as kopf feeds it: `start`/`wake` deliver the policy as a watch event."""

    kube: FakeKube
    clock: FakeClock
    runner: Runner
    deps: Deps
    metrics: Metrics
    leader: Leader
    scheduler: Scheduler | None = None
    events: dict[str, Events] = field(default_factory=dict)
    notices: list[asyncio.Task[None]] = field(default_factory=list)

    def post(self, ref: PolicyKey, type_: str, reason: str, message: str) -> None:
        self.events.setdefault(ref.name, Events()).post(type_, reason, message)

    def start(self, name: str) -> Scheduler:
        """The operator (re)started, or a new policy: its ADDED event."""
        if self.scheduler is None:
            self.scheduler = Scheduler(self.deps, post_event=self.post)
            self.scheduler.start()
        self.events.setdefault(name, Events())
        self.wake(name)
        return self.scheduler

    def wake(self, name: str, type_: str | None = "MODIFIED") -> None:
        """The watch event of the policy as it is now."""
        raw = self.kube.current(name)
        assert self.scheduler is not None
        self.notices.append(asyncio.create_task(self.scheduler.notice(raw, type_)))

    async def stop(self, name: str, *, deleting: bool = False) -> None:
        """deleting: the policy's DELETED event (it waits for the run to stop); else the operator stops."""
        assert self.scheduler is not None
        if deleting:
            await self.scheduler.notice({"metadata": {"uid": f"uid-{name}"}}, "DELETED")
            return
        await self.stop_all(shutdown=False)

    async def stop_all(self, *, shutdown: bool = True) -> None:
        if self.scheduler is not None:
            await asyncio.wait_for(self.scheduler.stop(), 10)
            self.scheduler = None
        for task in self.notices:
            await asyncio.wait_for(task, 10)
        self.notices.clear()
        if shutdown:
            self.deps.pool.shutdown()

    def known(self, name: str) -> bool:
        return self.scheduler is not None and f"uid-{name}" in self.scheduler.entries


async def until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def make(runner: Runner | None = None, *, max_runs: int = 2, leading: bool = True) -> Harness:
    kube, clock, runner = FakeKube(), FakeClock(), runner or Runner()
    metrics = Metrics(CollectorRegistry())
    leader = Leader(leading)
    counter = iter(range(1, 10_000))
    deps = Deps(
        kube=kube,
        pool=RunPool(max_runs, run_fn=runner),
        leadership=leader,
        metrics=metrics,
        clock=clock,
        identity="op-test",
        new_run_id=lambda now: f"{now:%Y%m%dT%H%M%SZ}-{next(counter):04d}",
        cancel_grace=2.0,
        resync=0.05,
    )
    return Harness(kube, clock, runner, deps, metrics, leader)


@pytest.fixture
async def h() -> Any:
    harness = make()
    yield harness
    await harness.stop_all()


def ready(status: Mapping[str, object]) -> Condition:
    cond = find_condition(status, "Ready")
    assert cond is not None, status
    return cond


def metric(h: Harness, name: str, **labels: str) -> float | None:
    return h.metrics.registry.get_sample_value(name, labels)


# --------------------------------------------------------------------------- tests


async def test_a_new_policy_is_scheduled_and_nothing_runs(h: Harness) -> None:
    h.kube.add_policy("p", SPEC)
    h.start("p")
    await until(lambda: bool(h.kube.status("p")))
    status = h.kube.status("p")
    assert (ready(status)["status"], ready(status)["reason"]) == ("True", "Scheduled")
    assert status["nextScheduleTime"] == "2025-03-01T11:00:00Z"
    assert status["observedGeneration"] == 1
    await asyncio.sleep(0.3)  # several resync rounds
    assert h.runner.calls == []
    assert len(h.kube.status_patches) == 1, "status is written only when it changes"


async def test_run_now_runs_once_and_records_everything(h: Harness) -> None:
    h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "first"})
    h.start("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    status = h.kube.status("p")
    assert status["lastRunNow"] == "first"
    assert "lastScheduleTime" not in status  # a manual run does not move the schedule
    assert "activeRun" not in status
    last = status["lastRun"]
    assert last["result"] == "Succeeded" and last["trigger"] == "RunNow"
    assert last["images"] == 3 and last["findings"] == 2
    assert last["reportUri"].startswith("s3://ecs-scan-reports/")
    assert (ready(status)["status"], ready(status)["reason"]) == ("True", "RunSucceeded")
    assert h.events["p"].reasons() == ["RunStarted", "RunSucceeded"]
    assert metric(h, "ecsscan_runs_total", namespace=NS, policy="p", result="Succeeded") == 1
    assert metric(h, "ecsscan_findings", namespace=NS, policy="p", severity="CRITICAL") == 1
    calls = {"namespace": NS, "policy": "p", "service": "ecs", "operation": "ListTaskDefinitions"}
    assert metric(h, "ecsscan_aws_api_calls_total", **calls) == 2
    await asyncio.sleep(0.3)
    assert len(h.runner.calls) == 1  # the same annotation value does not run again

    # a new value runs once more
    h.kube.edit("p", lambda o: o["metadata"]["annotations"].update({RUN_NOW_ANNOTATION: "second"}))
    h.wake("p")
    await until(
        lambda: h.kube.status("p").get("lastRunNow") == "second" and "activeRun" not in h.kube.status("p")
    )
    await until(lambda: len(h.runner.calls) == 2)
    await asyncio.sleep(0.2)
    assert len(h.runner.calls) == 2


async def test_a_due_schedule_runs_once_and_a_restart_does_not_repeat_it(h: Harness) -> None:
    h.kube.add_policy("p", SPEC)
    h.clock.advance(hours=1)  # 11:00:30: the 11:00 run is due
    h.start("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    status = h.kube.status("p")
    assert status["lastScheduleTime"] == "2025-03-01T11:00:00Z"
    assert status["lastRun"]["trigger"] == "Schedule"
    assert status["nextScheduleTime"] == "2025-03-01T12:00:00Z"
    await h.stop("p")
    # a restarted operator reads lastScheduleTime and does not run 11:00 again
    h.start("p")
    await asyncio.sleep(0.3)
    assert len(h.runner.calls) == 1
    # the next fire time runs
    h.clock.advance(hours=1)
    h.wake("p")
    await until(lambda: len(h.runner.calls) == 2)
    await until(lambda: h.kube.status("p").get("lastScheduleTime") == "2025-03-01T12:00:00Z")


async def test_at_most_one_catch_up_after_downtime(h: Harness) -> None:
    h.kube.add_policy("p", SPEC)
    h.clock.advance(hours=5)  # 10:00 .. 15:00 missed while "down"
    h.start("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    await asyncio.sleep(0.3)
    assert len(h.runner.calls) == 1
    assert h.kube.status("p")["lastScheduleTime"] == "2025-03-01T15:00:00Z"


async def test_a_run_too_late_for_the_deadline_is_skipped_and_said(h: Harness) -> None:
    h.kube.add_policy("p", {**SPEC, "startingDeadlineSeconds": 10})
    h.clock.advance(hours=1)  # 11:00:30 is 30 s late
    h.start("p")
    await until(lambda: "skipped" in h.kube.status("p").get("message", ""))
    await asyncio.sleep(0.2)
    assert h.runner.calls == []
    assert h.events["p"].reasons() == ["MissedSchedule"]
    assert "startingDeadlineSeconds (10s)" in h.events["p"].posted[0][2]
    assert metric(h, "ecsscan_skipped_runs_total", namespace=NS, policy="p") == 1


async def test_suspend_stops_scheduled_runs_but_not_run_now(h: Harness) -> None:
    h.kube.add_policy("p", {**SPEC, "suspend": True})
    h.clock.advance(hours=3)
    h.start("p")
    await until(lambda: bool(h.kube.status("p")))
    status = h.kube.status("p")
    assert (ready(status)["status"], ready(status)["reason"]) == ("False", "Suspended")
    assert "nextScheduleTime" not in status
    await asyncio.sleep(0.2)
    assert h.runner.calls == []
    h.kube.edit("p", lambda o: o["metadata"].setdefault("annotations", {}).update({RUN_NOW_ANNOTATION: "x"}))
    h.wake("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    assert ready(h.kube.status("p"))["reason"] == "Suspended"
    assert len(h.runner.calls) == 1


async def test_an_idle_policy_exports_its_interval_and_last_success_from_the_status(h: Harness) -> None:
    """After a restart the gauges the EcsScanNoSuccessfulRun alert reads come from the status."""
    h.kube.add_policy("p", SPEC)
    h.kube.edit("p", lambda o: o.setdefault("status", {}).update(lastSuccessfulTime="2025-03-01T09:00:00Z"))
    h.start("p")
    await until(lambda: metric(h, "ecsscan_schedule_interval_seconds", namespace=NS, policy="p") is not None)
    assert metric(h, "ecsscan_schedule_interval_seconds", namespace=NS, policy="p") == 3600
    seeded = metric(h, "ecsscan_last_success_timestamp_seconds", namespace=NS, policy="p")
    assert seeded == datetime(2025, 3, 1, 9, tzinfo=UTC).timestamp()
    h.kube.edit("p", lambda o: o["spec"].update(suspend=True), spec_changed=True)
    h.wake("p")
    await until(lambda: metric(h, "ecsscan_schedule_interval_seconds", namespace=NS, policy="p") is None)


async def test_an_invalid_spec_makes_no_aws_call_and_names_the_field(h: Harness) -> None:
    bad = {**SPEC, "schedule": "61 * * * *", "timeZone": "Mars/Olympus"}
    h.kube.add_policy("p", bad, annotations={RUN_NOW_ANNOTATION: "1"})
    h.start("p")
    await until(lambda: bool(h.kube.status("p")))
    status = h.kube.status("p")
    r = ready(status)
    assert (r["status"], r["reason"]) == ("False", "InvalidSpec")
    assert "spec.schedule" in r["message"] and "spec.timeZone" in r["message"]
    await asyncio.sleep(0.2)
    assert h.runner.calls == []  # no AWS call, not even for run-now
    assert h.events["p"].reasons() == ["InvalidSpec"]
    # fixing the spec (a new generation) revalidates and reschedules
    h.kube.edit(
        "p", lambda o: o["spec"].update({"schedule": "0 * * * *", "timeZone": "UTC"}), spec_changed=True
    )
    h.wake("p")
    await until(lambda: h.kube.status("p").get("observedGeneration") == 2 and "lastRun" in h.kube.status("p"))
    assert h.kube.status("p")["lastRunNow"] == "1"  # the pending run-now is honoured once valid


async def test_a_run_left_by_a_dead_operator_is_recorded_interrupted_and_not_rerun(h: Harness) -> None:
    h.kube.add_policy("p", SPEC)
    h.kube.edit(
        "p",
        lambda o: o.update(
            status={
                "lastScheduleTime": "2025-03-01T10:00:00Z",
                "activeRun": {
                    "id": "20250301T100000Z-dead",
                    "startTime": "2025-03-01T10:00:00Z",
                    "trigger": "Schedule",
                    "scheduledTime": "2025-03-01T10:00:00Z",
                    "holder": "op-old",
                },
            }
        ),
    )
    h.start("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    status = h.kube.status("p")
    assert "activeRun" not in status
    assert status["lastRun"]["id"] == "20250301T100000Z-dead" and status["lastRun"]["result"] == "Failed"
    assert "interrupted" in status["lastRun"]["errors"][0] and "op-old" in status["lastRun"]["errors"][0]
    assert ready(status)["reason"] == "RunFailed"
    await asyncio.sleep(0.3)
    assert h.runner.calls == []  # the 10:00 run is not run twice
    assert h.events["p"].reasons() == ["RunInterrupted"]


async def test_deleting_a_policy_cancels_its_run_cleanly(h: Harness) -> None:
    h.runner.block = True
    h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
    h.start("p")
    await until(h.runner.started.is_set)
    assert h.kube.status("p")["activeRun"]["runNow"] == "1"
    patches = len(h.kube.status_patches)
    await h.stop("p", deleting=True)
    assert h.deps.pool.running() == 0  # the worker thread is done
    assert "RunCancelled" in h.events["p"].reasons()
    assert len(h.kube.status_patches) == patches  # nothing written to a policy on its way out


async def test_operator_stop_cancels_and_records_the_run(h: Harness) -> None:
    h.runner.block = True
    h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
    h.start("p")
    await until(h.runner.started.is_set)
    await h.stop("p")
    status = h.kube.status("p")
    assert "activeRun" not in status
    assert status["lastRun"]["result"] == "Failed" and "cancelled" in status["lastRun"]["errors"][0]


async def test_global_limit_on_concurrent_runs() -> None:
    h = make(Runner(block=True), max_runs=1)
    try:
        for name in ("a", "b", "c"):
            h.kube.add_policy(name, SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
            h.start(name)
        await until(h.runner.started.is_set)
        await asyncio.sleep(0.3)
        assert len(h.runner.calls) == 1  # the others wait for the slot
        waiting = [n for n in ("a", "b", "c") if "activeRun" not in h.kube.status(n)]
        assert len(waiting) == 2, "a policy waiting for a slot is not marked Running"
        h.runner.release.set()
        await until(lambda: all("lastRun" in h.kube.status(n) for n in ("a", "b", "c")))
        assert h.runner.max_running == 1 and len(h.runner.calls) == 3
    finally:
        await h.stop_all()


async def test_runs_execute_off_the_event_loop() -> None:
    h = make(Runner(block=True), max_runs=2)
    try:
        h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
        h.start("p")
        await until(h.runner.started.is_set)
        # the loop stays responsive while the run blocks its thread
        start = time.monotonic()
        await asyncio.sleep(0.05)
        assert time.monotonic() - start < 0.5
        h.runner.release.set()
        await until(lambda: "lastRun" in h.kube.status("p"))
    finally:
        await h.stop_all()


async def test_status_conflicts_and_errors_are_retried(h: Harness) -> None:
    h.kube.conflict_next_patches = 2
    h.kube.fail_next_patches = 0
    h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
    h.start("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    assert len(h.runner.calls) == 1


async def test_a_status_write_error_before_the_run_means_no_run(h: Harness) -> None:
    h.kube.fail_next_patches = 1  # the "Running" write fails: the run must not start unrecorded
    h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
    h.deps.cancel_grace = 1
    h.start("p")
    await asyncio.sleep(0.1)
    assert h.runner.calls == []


async def test_jira_credentials_from_the_secret(h: Harness) -> None:
    jira = {"url": "https://example.atlassian.net", "credentialsSecret": "jira", "project": "SEC"}
    h.kube.secrets[(NS, "jira")] = {
        "email": base64.b64encode(b"bot@example.com").decode(),
        "apiToken": base64.b64encode(b"s3cr3t").decode(),
    }
    h.kube.add_policy("p", {**SPEC, "jira": jira}, annotations={RUN_NOW_ANNOTATION: "1"})
    h.start("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    creds = h.runner.calls[0][2]
    assert creds is not None and creds.email == "bot@example.com" and "s3cr3t" in creds.secrets()
    assert "s3cr3t" not in repr(creds)
    cond = find_condition(h.kube.status("p"), "TicketsSynced")
    assert cond is not None


async def test_a_missing_jira_secret_fails_the_run_without_aws_calls(h: Harness) -> None:
    jira = {"url": "https://example.atlassian.net", "credentialsSecret": "absent", "project": "SEC"}
    h.kube.add_policy("p", {**SPEC, "jira": jira}, annotations={RUN_NOW_ANNOTATION: "1"})
    h.start("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    status = h.kube.status("p")
    assert status["lastRun"]["result"] == "Failed"
    assert "absent" in status["lastRun"]["errors"][0]
    assert h.runner.calls == []
    assert h.events["p"].reasons() == ["RunStarted", "RunFailed"]


async def test_a_follower_does_nothing_until_it_leads() -> None:
    h = make(leading=False)
    try:
        h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
        h.start("p")
        await asyncio.sleep(0.3)
        assert h.kube.status_patches == [] and h.runner.calls == []
        h.leader.lead()
        await until(lambda: "lastRun" in h.kube.status("p"))
    finally:
        await h.stop_all()


async def test_a_policy_found_gone_is_dropped(h: Harness) -> None:
    h.kube.add_policy("p", SPEC)
    h.start("p")
    await until(lambda: bool(h.kube.status("p")))
    with h.kube.lock:
        del h.kube.policies[(NS, "p")]
    h.clock.advance(hours=1)  # its fire time: the scheduler reads it, and finds it gone
    await until(lambda: not h.known("p"))
    assert h.runner.calls == []


async def test_a_recreated_policy_of_the_same_name_is_not_ours(h: Harness) -> None:
    h.kube.add_policy("p", SPEC)
    h.start("p")
    await until(lambda: bool(h.kube.status("p")))
    h.kube.edit("p", lambda o: o["metadata"].update(uid="uid-other"))
    h.clock.advance(hours=1)
    await until(lambda: not h.known("p"))
    assert h.runner.calls == []


async def test_deleting_a_policy_forgets_its_metrics(h: Harness) -> None:
    h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
    h.start("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    assert metric(h, "ecsscan_images", namespace=NS, policy="p", status="scanned") == 3
    await h.stop("p", deleting=True)
    assert not h.known("p")
    assert metric(h, "ecsscan_images", namespace=NS, policy="p", status="scanned") is None
    assert metric(h, "ecsscan_runs_total", namespace=NS, policy="p", result="Succeeded") is None


# --------------------------------------------------------------------------- at scale


async def test_an_idle_fleet_costs_no_api_calls(h: Harness) -> None:
    names = [f"p{i:03d}" for i in range(50)]
    for name in names:
        h.kube.add_policy(name, SPEC)
        h.start(name)
    await until(lambda: all(h.kube.status(n) for n in names))
    gets, patches = h.kube.gets, len(h.kube.status_patches)
    assert patches == len(names)  # planned from the event's body: one write each, no read
    # our own writes coming back, and a re-list of unchanged objects: nothing to look at
    for name in names:
        h.wake(name, None)
    await asyncio.sleep(0.3)  # several resync rounds (the clock is re-read, the API is not)
    assert (h.kube.gets, len(h.kube.status_patches)) == (gets, patches)
    assert h.runner.calls == []


async def test_only_due_policies_are_read_when_their_time_comes(h: Harness) -> None:
    h.kube.add_policy("hourly", SPEC)
    h.kube.add_policy("daily", {**SPEC, "schedule": "0 3 * * *"})
    h.start("hourly")
    h.start("daily")
    await until(lambda: bool(h.kube.status("hourly")) and bool(h.kube.status("daily")))
    gets = h.kube.gets
    h.clock.advance(hours=1)  # 11:00:30: the hourly policy is due, the daily one is not
    await until(lambda: len(h.runner.calls) == 1)
    await until(lambda: "lastRun" in h.kube.status("hourly"))
    assert h.runner.calls[0][0] == f"{NS}/hourly"
    assert "lastRun" not in h.kube.status("daily")
    # the hourly policy is read when due, when its run starts and when it ends; the daily one never
    assert h.kube.gets - gets <= 4


async def test_a_queued_run_holds_its_uid_only_and_reads_the_spec_when_it_starts() -> None:
    h = make(Runner(block=True), max_runs=1)
    try:
        names = [f"p{i}" for i in range(5)]
        for name in names:
            h.kube.add_policy(name, SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
            h.start(name)
        await until(h.runner.started.is_set)
        scheduler = h.scheduler
        assert scheduler is not None
        await until(lambda: len(scheduler._queue) == 4)
        assert all(isinstance(uid, str) for uid in scheduler._queue)
        assert not any("activeRun" in h.kube.status(n) for n in names[1:])
        # a queued policy's spec changes before its turn: the run uses the spec as it is then
        queued = next(n for n in names if f"uid-{n}" in scheduler._queue)
        h.kube.edit(queued, lambda o: o["spec"]["aws"].update(region="eu-west-1"), spec_changed=True)
        h.wake(queued)
        h.runner.release.set()
        await until(lambda: all("lastRun" in h.kube.status(n) for n in names))
        assert sorted(key for key, _, _ in h.runner.calls) == sorted(f"{NS}/{n}" for n in names)
        regions = {
            key: spec.aws.region for (key, _, _), spec in zip(h.runner.calls, h.runner.specs, strict=True)
        }
        assert regions[f"{NS}/{queued}"] == "eu-west-1"
        assert h.kube.status(queued)["observedGeneration"] == 2
    finally:
        await h.stop_all()


async def test_a_policy_deleted_while_queued_never_runs() -> None:
    h = make(Runner(block=True), max_runs=1)
    try:
        for name in ("first", "second"):
            h.kube.add_policy(name, SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
            h.start(name)
        await until(h.runner.started.is_set)
        waiting = "second" if h.runner.calls[0][0].endswith("/first") else "first"
        with h.kube.lock:
            del h.kube.policies[(NS, waiting)]
        assert h.scheduler is not None
        await h.scheduler.notice({"metadata": {"uid": f"uid-{waiting}"}}, "DELETED")
        h.runner.release.set()
        await asyncio.sleep(0.3)
        assert len(h.runner.calls) == 1 and not h.known(waiting)
    finally:
        await h.stop_all()


async def test_run_now_on_many_policies_runs_each_exactly_once() -> None:
    h = make(max_runs=2)
    try:
        names = [f"p{i:02d}" for i in range(30)]
        for name in names:
            h.kube.add_policy(name, SPEC)
            h.start(name)
        await until(lambda: all(h.kube.status(n) for n in names))
        for name in names:  # all at once, some twice (a second event for the same value)
            h.kube.edit(
                name, lambda o: o["metadata"].setdefault("annotations", {}).update({RUN_NOW_ANNOTATION: "go"})
            )
            h.wake(name)
            if name.endswith(("0", "5")):
                h.wake(name)
        await until(lambda: all(h.kube.status(n).get("lastRunNow") == "go" for n in names))
        await until(lambda: not any("activeRun" in h.kube.status(n) for n in names))
        await asyncio.sleep(0.2)
        keys = [key for key, _, _ in h.runner.calls]
        assert sorted(keys) == sorted(f"{NS}/{n}" for n in names)  # none lost, none repeated
        assert h.runner.max_running <= 2
    finally:
        await h.stop_all()


async def test_memory_is_handed_back_once_the_events_stop(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecs_scan_operator.controller import scheduler as scheduler_module

    released: list[int] = []
    monkeypatch.setattr(scheduler_module, "QUIET_BEFORE_TRIM", 0.1)
    monkeypatch.setattr(
        scheduler_module, "release_memory", lambda: released.append(len(h.kube.status_patches))
    )
    for name in ("a", "b", "c"):
        h.kube.add_policy(name, SPEC)
        h.start(name)
    # Released once the status writes stop for QUIET_BEFORE_TRIM: on a busy machine the three
    # starts may be further apart than that, so a release may also come between them; what must
    # hold is a release after the last write and none once nothing happens.
    await until(lambda: bool(released) and released[-1] == 3)
    assert released == sorted(set(released))  # never twice for the same quiet spell
    done = len(released)
    await asyncio.sleep(0.4)
    assert len(released) == done  # nothing happened since: nothing to release
    monkeypatch.undo()
    scheduler_module.release_memory()  # the real one runs anywhere (glibc or not)
