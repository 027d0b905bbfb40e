"""CoverageAtRisk (issue #12 item 7): the rules of core/coverage.py as a table, the pipeline stage
that applies them, the ScanPolicy condition and lastRun counters, and the metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ecs_scan_operator.controller.metrics import Metrics
from ecs_scan_operator.core.coverage import RescanWindow, at_risk, duration
from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import ImageResult, RuntimeContext
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.core.schedule import Decision
from ecs_scan_operator.core.status import (
    COVERAGE_AT_RISK,
    MAX_STATUS_BYTES,
    Context,
    Trigger,
    find_condition,
    finished_status,
    status_bytes,
)
from ecs_scan_operator.errors import ScanError
from ecs_scan_operator.pipeline import flag_coverage

NOW = datetime(2025, 6, 1, tzinfo=UTC)
ACCOUNT, REGION = "123456789012", "eu-west-1"
ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


def window(push: str = "DAYS_30", pull: str = "", mode: str = "") -> RescanWindow:
    return RescanWindow(ACCOUNT, REGION, push, pull, mode)


def rt(days: float | None, in_use_days_ago: float | None = None) -> RuntimeContext:
    return RuntimeContext(
        running_tasks=2,
        running_digests=("sha256:" + "a" * 64,),
        first_seen_running=None if days is None else NOW - timedelta(days=days),
        last_in_use_at=None if in_use_days_ago is None else NOW - timedelta(days=in_use_days_ago),
    )


@pytest.mark.parametrize(
    ("value", "days"),
    [("DAYS_3", 3), ("DAYS_180", 180), ("DAYS_365", 365), ("LIFETIME", None), ("", None), (None, None),
     ("DAYS_", None), ("days_30", None), ("DAYS_30 ", None), ("MONTHS_1", None)],
)  # fmt: skip
def test_duration_reads_every_enum_value_and_nothing_else(value: str | None, days: int | None) -> None:
    assert duration(value) == (None if days is None else timedelta(days=days))


# (window, runtime, at risk): written from the rules in the module docstring.
CASES = [
    (window("DAYS_30"), rt(31), True),  # no pull window: the push window alone
    (window("DAYS_30"), rt(30), True),  # exactly the window: Inspector stopped
    (window("DAYS_30"), rt(29.9), False),
    (window("LIFETIME", "DAYS_14", "LAST_PULL_DATE"), rt(1000), False),  # never stops
    (window("DAYS_30", "DAYS_14", "LAST_PULL_DATE"), rt(31), True),  # ran past both
    (window("DAYS_30", "DAYS_60", "LAST_PULL_DATE"), rt(45), False),  # the pull window holds it
    (window("DAYS_30", "DAYS_60", ""), rt(61), True),  # no mode: as LAST_PULL_DATE
    (window("DAYS_30", "DAYS_14", "LAST_IN_USE_AT"), rt(400, in_use_days_ago=0), False),  # in use now
    (window("DAYS_30", "DAYS_14", "LAST_IN_USE_AT"), rt(400, in_use_days_ago=20), True),
    (window("DAYS_30", "DAYS_14", "LAST_IN_USE_AT"), rt(400), True),  # in use unknown: since first seen
    (window("DAYS_30"), rt(None), False),  # never seen running: nothing to say
    (window(""), rt(400), False),  # no setting read: nothing to say
    (window("DAYS_NEW"), rt(400), False),  # a value this version does not know
    (None, rt(400), False),  # BASIC: no window
]


@pytest.mark.parametrize(("w", "runtime", "risk"), CASES)
def test_at_risk(w: RescanWindow | None, runtime: RuntimeContext, risk: bool) -> None:
    assert at_risk(w, runtime, NOW) is risk


def test_no_running_view_is_never_at_risk() -> None:
    assert at_risk(window("DAYS_3"), None, NOW) is False


class Coverage:
    """The CoverageSettings port: answers per registry, counting the calls."""

    def __init__(self, answers: dict[tuple[str, str], RescanWindow | ScanError | None]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str]] = []

    def rescan_window(self, account: str, region: str) -> RescanWindow | None:
        self.calls.append((account, region))
        answer = self.answers[(account, region)]
        if isinstance(answer, ScanError):
            raise answer
        return answer


class Ports:
    def __init__(self, coverage: Coverage | None) -> None:
        self.coverage = coverage


def image(repo: str, days: float | None, region: str = REGION) -> ImageResult:
    host = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com"
    img = ImageResult(ref=parse_image(f"{host}/{repo}:1@sha256:{'b' * 64}"))
    img.runtime = None if days is None else rt(days)
    return img


def _run(images: list[ImageResult], cov: Coverage | None) -> tuple[RunResult, list[tuple[str, Any]]]:
    # The pipeline says whether the policy has a running view (spec.taskDefinitions).
    result = RunResult(run_id="r1", policy="ns/p", started=NOW, running_view=any(i.runtime for i in images))
    log: list[tuple[str, Any]] = []
    flag_coverage(images, Ports(cov), result, lambda ev, *a, **kw: log.append((ev, kw)), NOW)  # type: ignore[arg-type]
    result.add_images(images)
    return result, log


def test_the_stage_asks_once_per_registry_and_flags_the_images() -> None:
    images = [image("a", 40), image("b", 2), image("c", 90, "us-east-1"), image("d", None)]
    cov = Coverage({(ACCOUNT, REGION): window("DAYS_30"), (ACCOUNT, "us-east-1"): None})
    result, log = _run(images, cov)
    assert sorted(cov.calls) == [(ACCOUNT, REGION), (ACCOUNT, "us-east-1")]
    assert [i.runtime.coverage_at_risk if i.runtime else None for i in images] == [True, False, False, None]
    assert (result.running_view, result.coverage_at_risk) == (True, 1)
    assert result.rescan_windows == [f"rescanDuration=DAYS_30 in {ACCOUNT}/{REGION}"]
    assert log[-1][0] == "coverage_checked"


def test_no_running_view_no_call() -> None:
    cov = Coverage({})
    result, _ = _run([image("a", None)], cov)
    assert cov.calls == [] and not result.running_view


def test_an_unreadable_setting_is_named_not_a_failed_run() -> None:
    err = ScanError("inspector2:GetConfiguration eu-west-1: AccessDeniedException")
    result, log = _run([image("a", 400)], Coverage({(ACCOUNT, REGION): err}))
    assert result.coverage_unknown.startswith("inspector2:GetConfiguration")
    assert result.errors_total == 0 and result.coverage_at_risk == 0
    assert log[0][0] == "rescan_window_unreadable"


def _status(result: RunResult, current: dict[str, Any] | None = None) -> dict[str, Any]:
    result.finish(NOW)
    ctx = Context(generation=1, now=NOW, decision=Decision(now=NOW, next_time=NOW + timedelta(hours=1)))
    return dict(finished_status(current or {}, ctx, result, Trigger.SCHEDULE))


def test_condition_and_counters_follow_the_run() -> None:
    images = [image("a", 40), image("b", 2)]
    images[0].redeploy_needed = True
    result, _ = _run(images, Coverage({(ACCOUNT, REGION): window("DAYS_30", "DAYS_14", "LAST_PULL_DATE")}))
    status = _status(result)
    cond = find_condition(status, COVERAGE_AT_RISK)
    assert cond is not None and (cond["status"], cond["reason"]) == ("True", "RescanWindowExceeded")
    assert "rescanDuration=DAYS_30" in cond["message"] and "pullDateRescanDuration=DAYS_14" in cond["message"]
    assert status["lastRun"]["redeployNeeded"] == 1 and status["lastRun"]["coverageAtRisk"] == 1

    # Redeployed: within the window again.
    calm, _ = _run([image("b", 2)], Coverage({(ACCOUNT, REGION): window("DAYS_30")}))
    after = _status(calm, status)
    cond = find_condition(after, COVERAGE_AT_RISK)
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "WithinRescanWindow")

    # Unreadable: Unknown, naming why.
    unknown, _ = _run([image("a", 40)], Coverage({(ACCOUNT, REGION): ScanError("AccessDeniedException")}))
    cond = find_condition(_status(unknown, after), COVERAGE_AT_RISK)
    assert cond is not None and (cond["status"], cond["reason"]) == ("Unknown", "RescanWindowUnknown")

    # The policy dropped its running view: the condition and the counters go.
    plain, _ = _run([image("a", None)], None)
    gone = _status(plain, after)
    assert find_condition(gone, COVERAGE_AT_RISK) is None
    assert "redeployNeeded" not in gone["lastRun"]


def test_condition_stays_bounded_with_many_registries() -> None:
    result = RunResult(
        run_id="r" * 128, policy="ns/p", started=NOW, running_view=True, coverage_at_risk=10**6
    )
    result.rescan_windows = [f"rescanDuration=DAYS_30 in {'9' * 12}/{'x' * 200}-{i}" for i in range(500)]
    status = _status(result)
    cond = find_condition(status, COVERAGE_AT_RISK)
    assert cond is not None and len(cond["message"].encode()) <= 512
    assert status_bytes(status) < MAX_STATUS_BYTES


def test_a_failed_run_keeps_what_the_last_run_said() -> None:
    images = [image("a", 40)]
    result, _ = _run(images, Coverage({(ACCOUNT, REGION): window("DAYS_30")}))
    before = _status(result)
    failed = RunResult(run_id="r2", policy="ns/p", started=NOW)
    failed.finish(NOW, fatal=True)
    ctx = Context(generation=1, now=NOW)
    after = finished_status(before, ctx, failed, Trigger.SCHEDULE)
    assert find_condition(after, COVERAGE_AT_RISK) == find_condition(before, COVERAGE_AT_RISK)
    assert failed.outcome is Outcome.FAILED


def test_metrics_export_the_counts_and_drop_them_with_the_running_view() -> None:
    metrics = Metrics(CollectorRegistry())
    images = [image("a", 40), image("b", 2)]
    images[1].redeploy_needed = True
    result, _ = _run(images, Coverage({(ACCOUNT, REGION): window("DAYS_30")}))
    result.finish(NOW)
    metrics.run_finished("ns", "p", result, 1.0)
    labels = {"namespace": "ns", "policy": "p"}
    assert metrics.registry.get_sample_value("ecsscan_images_redeploy_needed", labels) == 1
    assert metrics.registry.get_sample_value("ecsscan_images_coverage_at_risk", labels) == 1
    plain, _ = _run([image("a", None)], None)
    plain.finish(NOW)
    metrics.run_finished("ns", "p", plain, 1.0)
    assert metrics.registry.get_sample_value("ecsscan_images_redeploy_needed", labels) is None
    metrics.run_finished("ns", "p", result, 1.0)
    metrics.forget("ns", "p")
    assert metrics.registry.get_sample_value("ecsscan_images_coverage_at_risk", labels) is None
