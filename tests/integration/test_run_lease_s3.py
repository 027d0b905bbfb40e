"""The run lease and the state object against moto's S3 server: real conditional writes over HTTP.

moto 5.2.5 implements PutObject If-None-Match / If-Match and DeleteObject If-Match with S3's
answers (412 PreconditionFailed; 404 NoSuchKey for If-Match on a missing key), checked here
through our adapter, so the lease's compare-and-swap is exercised end to end.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.s3_report import S3ReportSink
from ecs_scan_operator.bootstrap import build_ports
from ecs_scan_operator.core.lease import LEASE_TTL_SECONDS, load_lease
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome
from ecs_scan_operator.core.tickets import TicketReport, TicketRequest
from ecs_scan_operator.demo.fleet import REPORT_BUCKET, seed_fleet
from ecs_scan_operator.errors import ConflictError, ErrorCause, LeaseHeld
from ecs_scan_operator.leasing import RunLease, break_lease, show
from ecs_scan_operator.pipeline import run_policy
from tests.support.fakes import FixedClock

pytestmark = pytest.mark.integration
REGION = "us-east-1"
KEY = "scans/state/sec/payments.lease"
POLICY = PolicyRef(namespace="sec", name="payments")


@pytest.fixture
def sink(aws: str) -> S3ReportSink:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="reports")
    return S3ReportSink(AwsClients(), "reports", REGION)


def test_conditional_writes_and_deletes(sink: S3ReportSink) -> None:
    etag = sink.put_if("k", b"1", "application/json", etag=None)
    with pytest.raises(ConflictError) as create_again:
        sink.put_if("k", b"2", "application/json", etag=None)
    assert create_again.value.cause == ErrorCause("s3", "PutObject", "PreconditionFailed")
    found = sink.read("k")
    assert found is not None and found.body == b"1" and found.etag == etag
    newer = sink.put_if("k", b"3", "application/json", etag=etag)
    with pytest.raises(ConflictError):
        sink.put_if("k", b"4", "application/json", etag=etag)  # stale ETag
    with pytest.raises(ConflictError):
        sink.delete_if("k", etag=etag)  # stale ETag: not deleted
    assert sink.get("k") == b"3"
    sink.delete_if("k", etag=newer)
    assert sink.read("k") is None
    sink.delete_if("k", etag=newer)  # already gone: fine
    with pytest.raises(ConflictError, match="deleted since it was read"):
        sink.put_if("k", b"5", "application/json", etag=newer)


def acquire(sink: S3ReportSink, clock: FixedClock, run_id: str) -> RunLease:
    return RunLease.acquire(
        sink,
        KEY,
        policy=POLICY.key,
        run_id=run_id,
        holder="test:1",
        clock=clock,
        deadline=clock.now() + timedelta(hours=1),
    )


def test_lease_take_renew_refuse_steal_release(sink: S3ReportSink) -> None:
    clock = FixedClock()
    first = acquire(sink, clock, "r1")
    with pytest.raises(LeaseHeld, match=r"another run of sec/payments holds the lease since .* \(run r1\)"):
        acquire(sink, clock, "r2")
    clock.advance(seconds=60)
    assert first.renew()
    stored = load_lease(sink.get(KEY) or b"")
    assert stored is not None and stored.renewed == clock.now()
    # The holder crashes (no more renewals); once expired, the next run steals it.
    clock.advance(seconds=LEASE_TTL_SECONDS)
    second = acquire(sink, clock, "r3")
    assert second.how.startswith("stolen")
    assert first.renew() is False  # the crashed holder, had it come back, learns it lost
    assert first.release() is None and sink.get(KEY) is not None
    assert second.release() is None and sink.get(KEY) is None


def test_lease_break_as_a_person_does_it(sink: S3ReportSink) -> None:
    clock = FixedClock()
    held = acquire(sink, clock, "r1")
    record, etag, _ = show(sink, KEY)
    assert record is not None and record.run_id == "r1" and etag
    break_lease(sink, KEY, etag)
    assert held.renew() is False and held.lost
    acquire(sink, clock, "r2").release()


class OtherWriter:
    """A TicketSink that, mid-run, lets another process write the state object (a lost race)."""

    def __init__(self, sink: S3ReportSink, key: str) -> None:
        self.sink, self.key = sink, key

    def sync(self, request: TicketRequest) -> TicketReport:
        self.sink.put(self.key, b'{"version":1,"lastRunId":"the-other-run"}', "application/json")
        return TicketReport()


@pytest.mark.parametrize("state_existed", [False, True])
def test_state_lost_race_is_reported_not_overwritten(aws: str, state_existed: bool) -> None:
    seed_fleet(aws)
    spec = parse_spec(
        {
            "schedule": "@daily",
            "aws": {"region": REGION},
            "taskDefinitions": {"include": ["payments-*"]},
            "report": {"s3": {"bucket": REPORT_BUCKET, "prefix": "scans"}},
            "jira": {"url": "https://jira.example", "credentialsSecret": "jira", "project": "SEC"},
        }
    )
    ports = build_ports(POLICY, spec)
    state_key = "scans/state/sec/payments.json"
    if state_existed:
        run_policy(POLICY, spec, ports, FixedClock(), run_id="r0")
    assert isinstance(ports.reports, S3ReportSink)
    ports.tickets = OtherWriter(ports.reports, state_key)
    result = run_policy(POLICY, spec, ports, FixedClock(), run_id="r1")
    assert "state" in result.stage_failures
    assert result.outcome is Outcome.PARTIAL
    assert json.loads(ports.reports.get(state_key) or b"")["lastRunId"] == "the-other-run"
    index: Any = json.loads(
        ports.reports.get("scans/" + result.started.strftime("%Y-%m-%d") + "/sec/payments/r1/index.json")
        or b""
    )
    assert index["result"]["stageFailures"]["state"] == result.stage_failures["state"]
