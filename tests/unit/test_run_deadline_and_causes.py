"""The run deadline (Failed, naming the stage, lease released) and errors that name their cause."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from ecs_scan_operator.adapters.aws_session import map_aws_error
from ecs_scan_operator.core.model import ImageRef, ImageScan, ImageStatus, Resolution, ScanState, Severity
from ecs_scan_operator.core.result import Outcome, RunResult, causes_text
from ecs_scan_operator.core.status import Context, Trigger, finished_status, idle_status, last_run_from_result
from ecs_scan_operator.core.tickets import TicketReport
from ecs_scan_operator.errors import (
    AuthError,
    Cancelled,
    ConflictError,
    ErrorCause,
    NotFoundError,
    TransientError,
)
from ecs_scan_operator.pipeline import run_policy
from tests.support.fakes import FakeDigests, FakeFindings, FakeImageSource, FixedClock, MemorySink
from tests.unit.test_pipeline import FLEET, JIRA, POLICY, RecordingTickets, findings, ports, spec

FOLDER = "scans/2026-11-28/team-a/nightly/r1"
STATE = "scans/state/team-a/nightly.json"


class SlowImages(FakeImageSource):
    def __init__(self, clock: FixedClock, hours: float) -> None:
        super().__init__(FLEET)
        self.clock, self.hours = clock, hours

    def task_definitions(self, *a: Any, **k: Any) -> Any:
        self.clock.advance(hours=self.hours)
        return super().task_definitions(*a, **k)


class SlowDigests(FakeDigests):
    clock: FixedClock

    def resolve(self, refs: Sequence[ImageRef]) -> dict[ImageRef, Resolution]:
        self.clock.advance(hours=2)
        return super().resolve(refs)


class SlowFindings(FakeFindings):
    clock: FixedClock | None = None

    def scans(self, images: Any, severities: Any) -> Any:
        if self.clock is not None:
            self.clock.advance(hours=2)
        return super().scans(images, severities)


class SlowSink(MemorySink):
    """Each per-image report object takes two hours to write."""

    clock: FixedClock | None = None

    def put(self, key: str, body: bytes, content_type: str) -> None:
        if self.clock is not None and "/images/" in key:
            self.clock.advance(hours=2)
        super().put(key, body, content_type)


class SlowTickets(RecordingTickets):
    clock: FixedClock

    def sync(self, request: Any) -> Any:
        self.clock.advance(hours=2)
        return super().sync(request)


@pytest.mark.parametrize("stage", ["taskDefinitions", "digests", "findings", "report", "tickets"])
def test_past_the_deadline_the_run_fails_naming_the_stage(stage: str) -> None:
    clock, sink = FixedClock(), SlowSink()
    if stage == "report":
        sink.clock = clock
    p = ports(sink)
    if stage == "taskDefinitions":
        p.images = SlowImages(clock, 2)
    elif stage == "digests":
        p.digests = SlowDigests()
        p.digests.clock = clock
    elif stage == "findings":
        p.findings = SlowFindings(by_repo=findings().by_repo)
        p.findings.clock = clock
    tickets = SlowTickets(TicketReport(actions={"create": 1}))
    tickets.clock = clock
    if stage != "tickets":
        tickets.clock = FixedClock()  # only the chosen stage is slow
    p.tickets = tickets
    result = run_policy(POLICY, spec(jira=JIRA), p, clock, run_id="r1")
    assert result.outcome is Outcome.FAILED
    assert list(result.stage_failures) == [stage]
    assert "spec.runDeadlineSeconds" in result.stage_failures[stage]  # names the field that stopped it
    assert bool(tickets.requests) is (stage == "tickets")  # no ticket written after the deadline
    # It still commits what it can: a complete folder saying Failed, the old state kept, no lease.
    index = json.loads(sink.objects[f"{FOLDER}/index.json"])
    assert index["result"] == result.to_dict() and index["result"]["result"] == "Failed"
    assert STATE not in sink.objects
    assert not any(k.endswith(".lease") for k in sink.objects)
    log = [json.loads(line) for line in sink.objects[f"{FOLDER}/run.log.jsonl"].splitlines()]
    assert [line["stage"] for line in log if line["event"] == "run_aborted"] == [stage]


def test_deadline_is_a_spec_field_with_bounds() -> None:
    assert spec().run_deadline_seconds == 3600
    assert spec(runDeadlineSeconds=60).run_deadline_seconds == 60
    for bad in (59, 86401, "soon"):
        with pytest.raises(Exception, match="runDeadlineSeconds"):
            spec(runDeadlineSeconds=bad)


def test_within_the_deadline_nothing_changes() -> None:
    clock = FixedClock()
    p = ports(MemorySink(), SlowImages(clock, 0.9))
    result = run_policy(POLICY, spec(taskDefinitions={"include": ["svc-a"]}), p, clock, run_id="r1")
    assert result.outcome is Outcome.SUCCEEDED, result.errors


def test_cancel_from_outside_still_releases_the_lease() -> None:
    cancel, sink = threading.Event(), MemorySink()
    cancel.set()
    with pytest.raises(Cancelled):
        run_policy(POLICY, spec(), ports(sink), FixedClock(), cancel=cancel)
    assert not any(k.endswith(".lease") for k in sink.objects)
    assert not any(k.endswith("index.json") for k in sink.objects)


# --------------------------------------------------------------------------- causes


def client_error(code: str, operation: str, status: int = 400) -> ClientError:
    # The whole ResponseMetadata botocore parses from a real answer.
    return ClientError(
        {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {
                "RequestId": "r",
                "HostId": "h",
                "HTTPStatusCode": status,
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        },
        operation,
    )


@pytest.mark.parametrize(
    ("exc", "what", "cls", "cause"),
    [
        (
            client_error("AccessDeniedException", "DescribeImages", 400),
            "ecr:DescribeImages app",
            AuthError,
            ErrorCause("ecr", "DescribeImages", "AccessDeniedException"),
        ),
        (
            client_error("AccessDenied", "PutObject", 403),
            "s3:PutObject s3://b/k",
            AuthError,
            ErrorCause("s3", "PutObject", "AccessDenied"),
        ),
        (
            client_error("PreconditionFailed", "PutObject", 412),
            "s3:PutObject s3://b/k",
            ConflictError,
            ErrorCause("s3", "PutObject", "PreconditionFailed"),
        ),
        (
            client_error("ConditionalRequestConflict", "PutObject", 409),
            "s3:PutObject s3://b/k",
            ConflictError,
            ErrorCause("s3", "PutObject", "ConditionalRequestConflict"),
        ),
        (
            client_error("ThrottlingException", "ListFindings", 400),
            "inspector2:ListFindings",
            TransientError,
            ErrorCause("inspector2", "ListFindings", "ThrottlingException"),
        ),
        (
            client_error("ClientException", "ListTaskDefinitionFamilies", 400),
            "ecs listing in eu-west-1",
            Exception,
            ErrorCause("ecs", "ListTaskDefinitionFamilies", "ClientException"),
        ),
        (
            client_error("RepositoryNotFoundException", "DescribeImages"),
            "ecr:DescribeImages x",
            NotFoundError,
            ErrorCause("ecr", "DescribeImages", "RepositoryNotFoundException"),
        ),
        (
            EndpointConnectionError(endpoint_url="https://ecr"),
            "ecr:DescribeImages app",
            TransientError,
            ErrorCause("ecr", "DescribeImages", "EndpointConnectionError"),
        ),
        (
            ReadTimeoutError(endpoint_url="https://s3"),
            "s3:GetObject s3://b/k",
            TransientError,
            ErrorCause("s3", "GetObject", "ReadTimeoutError"),
        ),
    ],
)
def test_map_aws_error_names_its_cause(exc: Exception, what: str, cls: type, cause: ErrorCause) -> None:
    err = map_aws_error(exc, what)
    assert isinstance(err, cls) and err.cause == cause
    assert str(err).startswith(what.split(" ", maxsplit=1)[0])


def test_causes_text_is_bounded_and_ordered() -> None:
    causes = {"a:X E": 1, "b:Y E": 5, "c:Z E": 2, "d:W E": 2, "e:V E": 1}
    assert causes_text(causes) == "b:Y E x5, c:Z E x2, d:W E x2 and 2 more"
    assert causes_text({}) == ""


class DeniedDigests(FakeDigests):
    def resolve(self, refs: Sequence[ImageRef]) -> dict[ImageRef, Resolution]:
        out = super().resolve(refs)
        for r in refs:
            if r.repository == "app":
                out[r] = Resolution(
                    None,
                    ImageStatus.FAILED,
                    "ecr:DescribeImages app: AccessDeniedException: no",
                    cause="ecr:DescribeImages AccessDeniedException",
                )
        return out


class DeniedFindings(FakeFindings):
    def scans(self, images: Any, severities: Sequence[Severity]) -> Any:
        out = super().scans(images, severities)
        for key in out:
            if key[0].repository == "broken":
                out[key] = ImageScan(
                    ScanState.FAILED, reason="denied", cause="inspector2:ListFindings AccessDeniedException"
                )
        return out


def test_failed_images_are_summed_by_cause_in_result_cli_status_and_event_text() -> None:
    # app:1 and app:gone are denied by ECR, broken:1 by Inspector
    p = ports(MemorySink(), FakeImageSource(FLEET), DeniedFindings(by_repo=findings().by_repo))
    p.digests = DeniedDigests()
    result = run_policy(POLICY, spec(), p, FixedClock(), run_id="r1")
    assert dict(result.error_causes) == {
        "ecr:DescribeImages AccessDeniedException": 2,
        "inspector2:ListFindings AccessDeniedException": 1,
    }
    text = "ecr:DescribeImages AccessDeniedException x2, inspector2:ListFindings AccessDeniedException x1"
    assert result.causes_text() == text
    assert "2 image(s) failed digest resolution: ecr:DescribeImages AccessDeniedException x2" in result.errors
    assert result.to_dict()["errorCauses"] == {
        "ecr:DescribeImages AccessDeniedException": 2,
        "inspector2:ListFindings AccessDeniedException": 1,
    }
    status = finished_status({}, Context(generation=1, now=FixedClock().now()), result, Trigger.SCHEDULE)
    assert status["lastRun"]["errorCauses"] == text
    assert f"(causes: {text})" in status["message"]


def test_a_result_without_causes_says_nothing_of_them() -> None:
    result = RunResult(run_id="r", policy="a/b", started=FixedClock().now())
    result.finish(FixedClock().now() + timedelta(seconds=1))
    assert "errorCauses" not in last_run_from_result(result, Trigger.SCHEDULE)
    assert (
        "causes"
        not in idle_status(
            {"lastRun": last_run_from_result(result, Trigger.SCHEDULE)},
            Context(generation=1, now=FixedClock().now()),
        )["message"]
    )
