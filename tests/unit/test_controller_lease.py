"""The operator path takes the same run lease: a refusal is a non-start, not a failed run."""

from __future__ import annotations

import threading
from typing import Any

from ecs_scan_operator.controller import runs
from ecs_scan_operator.controller.reconcile import RUN_NOW_ANNOTATION
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.errors import LeaseHeld
from tests.unit.test_controller_worker import NS, SPEC, Runner, make, metric, until

MESSAGE = "another run of team-a/p holds the lease since 2025-03-01T10:00:00Z (run r-cli)"


def test_execute_run_turns_lease_held_into_a_refused_result(monkeypatch: Any) -> None:
    def held(*a: Any, **k: Any) -> RunResult:
        raise LeaseHeld(MESSAGE)

    monkeypatch.setattr("ecs_scan_operator.bootstrap.build_ports", lambda *a, **k: None)
    monkeypatch.setattr("ecs_scan_operator.pipeline.run_policy", held)
    result = runs.execute_run(
        PolicyRef(namespace=NS, name="p"), parse_spec(SPEC), "r1", threading.Event(), None
    )
    assert result.refused == MESSAGE and result.outcome is Outcome.FAILED


def refused(result: RunResult) -> None:
    """What execute_run returns when another process holds the lease."""
    result.refused = MESSAGE
    result.errors = [MESSAGE]


async def test_refused_run_is_reported_and_not_counted_as_a_failed_run() -> None:
    h = make(Runner(shape=refused))
    try:
        h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "go"})
        h.start("p")
        await until(lambda: h.events["p"].reasons()[-1:] == ["LeaseHeld"])
        await until(lambda: "activeRun" not in h.kube.status("p"))
        status = h.kube.status("p")
        # The status says why (lastRun holds the refusal); the run is not retried in a loop.
        assert status["lastRunNow"] == "go"
        assert status["lastRun"]["errors"] == [MESSAGE]
        assert MESSAGE in status["message"]
        assert MESSAGE in h.events["p"].posted[-1][2]
        assert metric(h, "ecsscan_runs_total", namespace=NS, policy="p", result="Failed") is None
        assert metric(h, "ecsscan_skipped_runs_total", namespace=NS, policy="p") == 1
    finally:
        await h.stop_all()


def denied(result: RunResult) -> None:
    """A run whose digest resolution was refused by ECR for two images."""
    result.record_error("2 image(s) failed digest resolution")
    result.record_cause("ecr:DescribeImages AccessDeniedException", 2)
    result.finish(result.completed or result.started)


async def test_the_event_and_status_name_each_cause_with_its_count() -> None:
    h = make(Runner(shape=denied))
    try:
        h.kube.add_policy("p", SPEC, annotations={RUN_NOW_ANNOTATION: "go"})
        h.start("p")
        await until(lambda: h.events["p"].reasons()[-1:] == ["RunPartiallyFailed"])
        assert "causes: ecr:DescribeImages AccessDeniedException x2" in h.events["p"].posted[-1][2]
        await until(lambda: "lastRun" in h.kube.status("p"))
        status = h.kube.status("p")
        assert status["lastRun"]["errorCauses"] == "ecr:DescribeImages AccessDeniedException x2"
        assert "(causes: ecr:DescribeImages AccessDeniedException x2)" in status["message"]
    finally:
        await h.stop_all()
