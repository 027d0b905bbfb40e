"""The policy loop against an in-memory API server: runs, status, events, restarts, deletion, limits."""

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
from ecs_scan_operator.controller.reconcile import RUN_NOW_ANNOTATION, Deps, PolicyWorker
from ecs_scan_operator.controller.runs import RunPool
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

    def status(self, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.policies[(NS, name)].get("status") or {})

    # ---- KubeApi

    def get_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
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


class FakeStop:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.deleting = False

    def is_set(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()

    def set(self, *, deleting: bool = False) -> None:
        self.deleting = deleting
        self.event.set()


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
    """A fake run_fn: records calls, optionally blocks until released or cancelled."""

    def __init__(self, *, block: bool = False, honour_cancel: bool = True) -> None:
        self.calls: list[tuple[str, str, JiraCredentials | None]] = []
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
    ) -> RunResult:
        with self.lock:
            self.calls.append((policy.key, run_id, creds))
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
    kube: FakeKube
    clock: FakeClock
    runner: Runner
    deps: Deps
    metrics: Metrics
    leader: Leader
    workers: dict[str, tuple[PolicyWorker, FakeStop, asyncio.Task[None]]] = field(default_factory=dict)
    events: dict[str, Events] = field(default_factory=dict)

    def start(self, name: str) -> PolicyWorker:
        stop = FakeStop()
        events = self.events.setdefault(name, Events())
        worker = PolicyWorker(
            namespace=NS,
            name=name,
            uid=f"uid-{name}",
            deps=self.deps,
            events=events,
            stop=stop,
            wake=asyncio.Event(),
        )
        self.workers[name] = (worker, stop, asyncio.create_task(worker.run()))
        return worker

    def wake(self, name: str) -> None:
        self.workers[name][0].wake.set()

    async def stop(self, name: str, *, deleting: bool = False) -> None:
        _, stop, task = self.workers.pop(name)
        stop.set(deleting=deleting)
        await asyncio.wait_for(task, 10)

    async def stop_all(self) -> None:
        for name in list(self.workers):
            await self.stop(name)
        self.deps.pool.shutdown()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
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


async def test_a_deleted_policy_ends_the_worker(h: Harness) -> None:
    h.kube.add_policy("p", SPEC)
    h.start("p")
    await until(lambda: bool(h.kube.status("p")))
    with h.kube.lock:
        del h.kube.policies[(NS, "p")]
    h.wake("p")
    _, _, task = h.workers["p"]
    await asyncio.wait_for(task, 5)


async def test_a_recreated_policy_of_the_same_name_is_not_ours(h: Harness) -> None:
    h.kube.add_policy("p", SPEC)
    h.start("p")
    await until(lambda: bool(h.kube.status("p")))
    patches, reasons = len(h.kube.status_patches), h.events["p"].reasons()
    # deleted and created again under the same name: a new uid, no status yet, and a run asked for
    h.kube.add_policy("p", SPEC, uid="uid-other", annotations={RUN_NOW_ANNOTATION: "1"})
    h.wake("p")
    _, _, task = h.workers["p"]
    await asyncio.wait_for(task, 5)
    assert task.exception() is None  # the old worker ends quietly
    # ... and leaves the new object to its own worker: no status, no run, no event
    assert h.kube.status("p") == {}
    assert len(h.kube.status_patches) == patches
    assert h.runner.calls == []
    assert h.events["p"].reasons() == reasons


async def test_deleting_a_policy_forgets_its_metrics(h: Harness) -> None:
    h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "1"})
    h.start("p")
    await until(lambda: "lastRun" in h.kube.status("p"))
    assert metric(h, "ecsscan_images", namespace=NS, policy="p", status="scanned") == 3
    h.metrics.forget(NS, "p")
    assert metric(h, "ecsscan_images", namespace=NS, policy="p", status="scanned") is None
    assert metric(h, "ecsscan_runs_total", namespace=NS, policy="p", result="Succeeded") is None
