"""plan(): the pure decision of the policy loop, from the object, the time and the identity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ecs_scan_operator.controller.reconcile import (
    RUN_NOW_ANNOTATION,
    Idle,
    Invalid,
    PolicyObject,
    Recover,
    Start,
    plan,
    status_after_run,
)
from ecs_scan_operator.core.result import RunResult
from ecs_scan_operator.core.status import Trigger, find_condition

NOW = datetime(2025, 3, 1, 11, 0, 30, tzinfo=UTC)
SPEC = {"schedule": "0 * * * *", "aws": {"region": "us-east-1"}, "report": {"s3": {"bucket": "b-reports"}}}


def obj(
    spec: Any = SPEC, status: dict[str, Any] | None = None, run_now: str | None = None, **meta: Any
) -> PolicyObject:
    metadata = {
        "name": "p",
        "namespace": "ns",
        "uid": "u1",
        "generation": 3,
        "resourceVersion": "42",
        "creationTimestamp": "2025-03-01T10:30:00Z",
        **meta,
    }
    if run_now is not None:
        metadata["annotations"] = {RUN_NOW_ANNOTATION: run_now}
    return PolicyObject.from_dict({"metadata": metadata, "spec": spec, "status": status or {}})


def run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-x"


def test_object_reading() -> None:
    o = obj(run_now="abc", deletionTimestamp="2025-03-01T11:00:00Z")
    assert (o.namespace, o.name, o.uid, o.generation, o.resource_version) == ("ns", "p", "u1", 3, "42")
    assert o.run_now == "abc" and o.deleting and o.ref.key == "ns/p"
    assert o.created == datetime(2025, 3, 1, 10, 30, tzinfo=UTC)


def test_due_schedule_starts_a_run_recording_the_scheduled_time() -> None:
    p = plan(obj(), now=NOW, identity="me", new_run_id=run_id)
    assert isinstance(p, Start)
    assert p.run.scheduled_time == datetime(2025, 3, 1, 11, tzinfo=UTC) and p.run.run_now is None
    assert p.status["lastScheduleTime"] == "2025-03-01T11:00:00Z"
    assert p.status["activeRun"]["holder"] == "me"
    assert p.status["observedGeneration"] == 3


def test_schedule_and_run_now_together_make_one_run() -> None:
    p = plan(obj(run_now="go"), now=NOW, identity="me", new_run_id=run_id)
    assert isinstance(p, Start) and p.run.trigger is Trigger.SCHEDULE_AND_RUN_NOW
    assert p.status["lastRunNow"] == "go" and p.status["lastScheduleTime"] == "2025-03-01T11:00:00Z"


def test_run_now_handled_is_not_run_again() -> None:
    status = {"lastScheduleTime": "2025-03-01T11:00:00Z", "lastRunNow": "go"}
    p = plan(obj(status=status, run_now="go"), now=NOW, identity="me", new_run_id=run_id)
    assert isinstance(p, Idle) and p.wake_at == datetime(2025, 3, 1, 12, tzinfo=UTC)


def test_invalid_spec_plans_nothing_but_the_status() -> None:
    p = plan(obj(spec={**SPEC, "aws": {}}, run_now="go"), now=NOW, identity="me", new_run_id=run_id)
    assert isinstance(p, Invalid)
    assert any(e.path == "spec.aws" for e in p.errors)
    cond = find_condition(p.status, "Ready")
    assert cond is not None and cond["reason"] == "InvalidSpec"


def test_an_orphaned_active_run_is_recovered_before_anything_else() -> None:
    status = {
        "lastScheduleTime": "2025-03-01T11:00:00Z",
        "activeRun": {
            "id": "r0",
            "startTime": "2025-03-01T11:00:00Z",
            "trigger": "Schedule",
            "holder": "old",
        },
    }
    p = plan(obj(status=status, run_now="go"), now=NOW, identity="me", new_run_id=run_id)
    assert isinstance(p, Recover) and p.run.run_id == "r0"
    assert "activeRun" not in p.status and p.status["lastRun"]["result"] == "Failed"
    assert "lastRunNow" not in p.status  # the pending run-now is planned on the next round


def test_skipped_run_note() -> None:
    p = plan(obj(spec={**SPEC, "startingDeadlineSeconds": 5}), now=NOW, identity="me", new_run_id=run_id)
    assert isinstance(p, Idle) and p.decision.skipped is not None
    assert "skipped the run scheduled at 2025-03-01T11:00:00Z" in p.note
    assert p.note in p.status["message"]


def test_status_after_run_uses_the_current_spec() -> None:
    result = RunResult(run_id="r1", policy="ns/p", started=NOW)
    result.finish(NOW + timedelta(seconds=3))
    # the spec turned invalid during the run: the result is recorded, no next run is promised
    s = status_after_run(obj(spec={**SPEC, "schedule": "nope"}), result, Trigger.RUN_NOW, NOW)
    assert s["lastRun"]["id"] == "r1" and "nextScheduleTime" not in s
    s = status_after_run(
        obj(status={"lastScheduleTime": "2025-03-01T11:00:00Z"}), result, Trigger.SCHEDULE, NOW
    )
    assert s["nextScheduleTime"] == "2025-03-01T12:00:00Z"
