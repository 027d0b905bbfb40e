"""controller/jobs.py JobRunner against an in-memory API: launch failures, events, polls, deletion."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from ecs_scan_operator.controller.jobs import JobRef, JobRunner
from ecs_scan_operator.controller.kube import Conflict
from ecs_scan_operator.core.jobs import JobSettings, PolicyMeta, encode_result
from ecs_scan_operator.core.policy import parse_spec
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.core.status import ActiveRun
from ecs_scan_operator.errors import NotFoundError, PermanentError, ScanError, TransientError
from tests.support.fakes import FixedClock

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
POLICY = PolicyMeta("team-a", "pay", "uid-1", 3)
RUN = ActiveRun("r-1", T0, "op")
SPEC = parse_spec(
    {"schedule": "@daily", "aws": {"region": "us-east-1"}, "report": {"s3": {"bucket": "reports"}}}
)


class FakeJobs:
    """Jobs, ConfigMaps and Pods kept in dicts; failures injected per call."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.config_maps: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.fail: dict[str, ScanError] = {}
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]

    def create_job(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._call("create_job")
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise Conflict("exists")
        job = copy.deepcopy(dict(body))
        job["metadata"]["uid"] = f"job-uid-{len(self.jobs)}"
        job["metadata"]["creationTimestamp"] = "2026-11-29T09:00:00Z"
        self.jobs[name] = job
        return copy.deepcopy(job)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("get_job")
        job = self.jobs.get(name)
        return copy.deepcopy(job) if job else None

    def delete_job(self, namespace: str, name: str) -> None:
        self._call("delete_job")
        if self.jobs.pop(name, None) is None:
            raise NotFoundError("gone")

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self._call("list_jobs")
        return [copy.deepcopy(j) for j in self.jobs.values()]

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self._call("list_pods")
        return copy.deepcopy(self.pods)

    def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._call("create_config_map")
        self.config_maps[body["metadata"]["name"]] = copy.deepcopy(dict(body))
        return dict(body)

    def complete(self, name: str, result: RunResult) -> dict[str, Any]:
        self.pods = [
            {
                "metadata": {"creationTimestamp": "2026-11-29T09:00:01Z"},
                "status": {
                    "containerStatuses": [
                        {
                            "name": "scan",
                            "state": {"terminated": {"exitCode": 0, "message": encode_result(result)}},
                        }
                    ]
                },
            }
        ]
        cond = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-29T09:05:00Z"}
        self.jobs[name]["status"] = {"conditions": [cond], "succeeded": 1}
        return copy.deepcopy(self.jobs[name])


def runner(api: FakeJobs, poll: float = 60.0) -> JobRunner:
    return JobRunner(api, JobSettings(image="img"), FixedClock(T0), max_jobs=2, poll=poll)


def ok_result() -> RunResult:
    result = RunResult(run_id="r-1", policy="team-a/pay", started=T0)
    result.images_total = 4
    result.finish(datetime(2026, 11, 29, 9, 4, tzinfo=UTC))
    return result


@pytest.mark.parametrize(
    ("failing", "error", "says"),
    [
        (
            "create_job",
            PermanentError("create job: HTTP 403 exceeded quota: q"),
            "the Job could not be created",
        ),
        ("create_job", TransientError("create job: HTTP 503"), "HTTP 503"),
        ("create_config_map", PermanentError("HTTP 403 exceeded quota: cm"), "the pinned spec (ConfigMap"),
    ],
)
def test_a_refused_launch_is_a_failed_result_and_leaves_no_job(
    failing: str, error: ScanError, says: str
) -> None:
    api = FakeJobs()
    api.fail[failing] = error
    got = asyncio.run(runner(api).launch(POLICY, RUN, SPEC))
    assert isinstance(got, RunResult) and got.outcome is Outcome.FAILED
    assert says in got.errors[0] and str(error).split(": ", 1)[-1] in got.errors[0]
    assert not api.jobs  # a Job whose spec could not be pinned was deleted again


def test_a_launch_that_finds_its_job_already_created_uses_it() -> None:
    api = FakeJobs()
    first = asyncio.run(runner(api).launch(POLICY, RUN, SPEC))
    again = asyncio.run(runner(api).launch(POLICY, RUN, SPEC))
    assert isinstance(first, JobRef) and again == first
    assert len(api.jobs) == 1


def test_a_watch_event_wakes_the_wait_without_a_read() -> None:
    api = FakeJobs()

    async def scenario() -> RunResult | None:
        jobs = runner(api)
        ref = await jobs.launch(POLICY, RUN, SPEC)
        assert isinstance(ref, JobRef)
        waiting = asyncio.ensure_future(jobs.wait(ref, RUN, "team-a/pay", asyncio.Event()))
        await asyncio.sleep(0.05)
        assert jobs.following() == 1
        jobs.notice(api.complete(ref.name, ok_result()), "MODIFIED")
        return await asyncio.wait_for(waiting, 5)

    result = asyncio.run(scenario())
    assert result is not None and result.outcome is Outcome.SUCCEEDED and result.images_total == 4
    assert "get_job" not in api.calls and api.calls.count("list_pods") == 1


def test_without_events_the_poll_finds_the_end() -> None:
    api = FakeJobs()

    async def scenario() -> RunResult | None:
        jobs = runner(api, poll=0.05)
        ref = await jobs.launch(POLICY, RUN, SPEC)
        assert isinstance(ref, JobRef)
        api.complete(ref.name, ok_result())
        return await asyncio.wait_for(jobs.wait(ref, RUN, "team-a/pay", asyncio.Event()), 5)

    result = asyncio.run(scenario())
    assert result is not None and result.outcome is Outcome.SUCCEEDED
    assert "get_job" in api.calls


def test_a_deleted_job_ends_the_run_as_failed_and_cancel_ends_the_wait_quietly() -> None:
    api = FakeJobs()

    async def scenario() -> tuple[RunResult | None, RunResult | None]:
        jobs = runner(api)
        ref = await jobs.launch(POLICY, RUN, SPEC)
        assert isinstance(ref, JobRef)
        cancel = asyncio.Event()
        waiting = asyncio.ensure_future(jobs.wait(ref, RUN, "team-a/pay", cancel))
        await asyncio.sleep(0.05)
        cancel.set()
        cancelled = await asyncio.wait_for(waiting, 5)
        waiting = asyncio.ensure_future(jobs.wait(ref, RUN, "team-a/pay", asyncio.Event()))
        await asyncio.sleep(0.05)
        jobs.notice(api.jobs[ref.name], "DELETED")
        return cancelled, await asyncio.wait_for(waiting, 5)

    cancelled, deleted = asyncio.run(scenario())
    assert cancelled is None
    assert deleted is not None and deleted.outcome is Outcome.FAILED and "was deleted" in deleted.errors[0]


def test_adoption_finds_the_run_by_its_annotation() -> None:
    api = FakeJobs()

    async def scenario() -> tuple[JobRef | None, JobRef | None, int]:
        jobs = runner(api)
        await jobs.launch(POLICY, RUN, SPEC)
        found = await jobs.find("team-a", "uid-1", "r-1")
        other = await jobs.find("team-a", "uid-1", "r-2")
        return found, other, len(await jobs.active("team-a", "uid-1"))

    found, other, active = asyncio.run(scenario())
    assert found is not None and other is None and active == 1
