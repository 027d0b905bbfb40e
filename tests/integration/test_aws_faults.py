"""AWS faults through a fault-injecting proxy in front of moto: every stage ends, and says why.

The whole pipeline runs over the demo fleet with every AWS client pointed at the proxy
(tests/support/fault_proxy.py). A dead endpoint (accepts, never answers) of each stage - ECS
listing, ECR DescribeImages, ECR BASIC / Inspector ENHANCED findings, S3 reports - ends the run
with that stage's failure recorded and the other stages done; faults that clear after a few
tries (503, throttling, a reset connection, a slow answer) end in a successful run.

The time limits are shortened here through the same environment variables an operator uses
(`ECS_SCAN_AWS_*`) so the suite stays fast; outcomes are asserted, never times. The figures
with the default limits are measured by `python -m tests.support.measure_aws_faults` and
written in docs/timeouts.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ecs_scan_operator.bootstrap import build_ports
from ecs_scan_operator.core.model import ImageStatus
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.demo.fleet import REPORT_BUCKET, seed_fleet
from ecs_scan_operator.errors import TransientError
from ecs_scan_operator.pipeline import run_policy
from tests.support.fakes import FixedClock
from tests.support.fault_proxy import FaultProxy, Rule

pytestmark = pytest.mark.integration
REGION = "us-east-1"
REF = PolicyRef(namespace="sec", name="faults")
FAST = {
    "ECS_SCAN_AWS_CONNECT_TIMEOUT_SECONDS": "1",
    "ECS_SCAN_AWS_READ_TIMEOUT_SECONDS": "1",
    "ECS_SCAN_AWS_MAX_ATTEMPTS": "3",
    "ECS_SCAN_AWS_ENDPOINT_COOLDOWN_SECONDS": "600",
}


@pytest.fixture
def proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The demo fleet in moto; every client the run creates goes through the proxy."""
    seed_fleet(aws, region=REGION)
    with FaultProxy(aws, lifetime=240, trickle_interval=0.002) as p:
        monkeypatch.setenv("AWS_ENDPOINT_URL", p.url)
        for key, value in FAST.items():
            monkeypatch.setenv(key, value)
        yield p


def run(**spec_over: Any) -> RunResult:
    doc: dict[str, Any] = {
        "schedule": "@daily",
        "aws": {"region": REGION},
        "taskDefinitions": {"include": ["payments-*", "orders-*"], "exclude": ["*-sandbox"]},
        "report": {"s3": {"bucket": REPORT_BUCKET, "prefix": "scans"}},
    }
    doc.update(spec_over)
    spec = parse_spec(doc)
    return run_policy(REF, spec, build_ports(REF, spec), FixedClock(), run_id="run-f")


def index_written(moto: str) -> dict[str, Any] | None:
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto)
    key = "scans/2026-11-28/sec/faults/run-f/index.json"
    try:
        return dict(json.loads(s3.get_object(Bucket=REPORT_BUCKET, Key=key)["Body"].read()))
    except s3.exceptions.NoSuchKey:
        return None


def failed_images(result: RunResult) -> int:
    return result.images_by_status[ImageStatus.FAILED.value]


def test_dead_ecs_endpoint_fails_the_listing_stage(proxy: FaultProxy, aws: str) -> None:
    proxy.add(Rule("blackhole", service="ecs"))
    result = run()
    assert result.outcome is not Outcome.SUCCEEDED
    assert "connection problem" in result.stage_failures[f"taskDefinitions[{REGION}]"]
    assert result.images_total == 0
    assert index_written(aws) is not None  # the other stages (the report) still ran


def test_dead_describe_images_fails_each_image_and_is_called_once_per_attempt(
    proxy: FaultProxy, aws: str
) -> None:
    proxy.add(Rule("blackhole", service="ecr", operation="DescribeImages"))
    result = run()
    assert result.outcome is Outcome.PARTIAL
    scannable = result.images_total - result.images_by_status[ImageStatus.UNSCANNABLE.value]
    assert scannable > 8 and failed_images(result) == scannable
    assert any("failed digest resolution" in e for e in result.errors)
    # The first calls (one per worker) time out; every later one is refused without being sent.
    assert proxy.count("blackhole", "ecr") <= 8 * 3
    assert index_written(aws) is not None


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param(
            [Rule("blackhole", service="ecr", operation="GetRegistryScanningConfiguration")],
            id="scan-type",
        ),
        pytest.param([Rule("blackhole", service="ecr", operation="DescribeImageScanFindings")], id="basic"),
    ],
)
def test_dead_findings_endpoint_fails_each_image(proxy: FaultProxy, aws: str, rules: list[Rule]) -> None:
    proxy.add(*rules)
    result = run()
    assert result.outcome is Outcome.PARTIAL
    resolved = result.images_total - result.images_by_status[ImageStatus.UNSCANNABLE.value]
    assert failed_images(result) == resolved - result.images_by_status[ImageStatus.NOT_FOUND.value]
    # every failed image is counted under the operation that was dead, whatever its error code
    dead = f"{rules[0].service}:{rules[0].operation}"
    assert {cause.split(" ", 1)[0] for cause in result.error_causes} == {dead}
    assert sum(result.error_causes.values()) == failed_images(result)
    assert result.findings_total == 0
    assert index_written(aws) is not None


def test_dead_inspector_endpoint_fails_each_enhanced_image(proxy: FaultProxy, aws: str) -> None:
    """ENHANCED registry: moto has no ListCoverage, but a dead Inspector needs none."""
    boto3.client("ecr", region_name=REGION, endpoint_url=aws).put_registry_scanning_configuration(
        scanType="ENHANCED", rules=[]
    )
    proxy.add(Rule("blackhole", service="inspector2"))
    result = run()
    assert result.outcome is Outcome.PARTIAL
    assert failed_images(result) > 0 and result.findings_total == 0
    assert proxy.count("blackhole", "inspector2") >= 1
    assert proxy.count("pass", "inspector2") == 0


def test_dead_s3_stops_the_run_at_the_lease_before_any_other_call(proxy: FaultProxy, aws: str) -> None:
    # The run lease lives in the report bucket and is taken before anything else: with S3 dead
    # no lease can be had, so the run stops there, having called nothing else.
    proxy.add(Rule("blackhole", service="s3"))
    with pytest.raises(TransientError, match=r"s3:GetObject .*\.lease"):
        run()
    assert index_written(aws) is None
    assert proxy.count("blackhole", "s3") <= 3  # one call's attempts, then the endpoint is down
    for service in ("ecs", "ecr", "inspector2"):
        assert proxy.count("pass", service) == 0, service


def test_s3_dying_after_the_lease_fails_the_report_stage(proxy: FaultProxy, aws: str) -> None:
    # The lease passes; every other write hangs.
    proxy.add(Rule("blackhole", service="s3", method="PUT", path=r"^(?!.*\.lease(\?|$))"))
    result = run()
    assert "report" in result.stage_failures
    assert result.images_total > 0  # the scan itself was done
    assert index_written(aws) is None  # no index.json: the folder is not complete


@pytest.mark.parametrize("mode", ["503", "throttle", "reset"])
@pytest.mark.parametrize(
    ("service", "operation", "method"),
    [
        ("ecs", "ListTaskDefinitionFamilies", None),
        ("ecr", "DescribeImages", None),
        ("ecr", "DescribeImageScanFindings", None),
        ("s3", "", "PUT"),
    ],
)
def test_faults_that_clear_within_the_attempts_end_in_success(
    proxy: FaultProxy, aws: str, mode: Any, service: str, operation: str, method: str | None
) -> None:
    proxy.add(Rule(mode, service=service, operation=operation or None, method=method, times=2))
    result = run()
    assert result.outcome is Outcome.SUCCEEDED, (result.stage_failures, result.errors[:3])
    assert proxy.count(mode, service) == 2
    assert index_written(aws) is not None


def test_a_slow_answer_under_the_read_timeout_is_waited_for(proxy: FaultProxy, aws: str) -> None:
    """A trickling answer is slow, not dead: the read timeout is per read, so it is not cut off."""
    proxy.add(Rule("trickle", service="ecs", operation="ListTaskDefinitionFamilies"))
    result = run()
    assert result.outcome is Outcome.SUCCEEDED, result.stage_failures
    assert proxy.count("trickle", "ecs") == 1


def test_an_answer_slower_than_the_read_timeout_is_a_dead_endpoint(proxy: FaultProxy, aws: str) -> None:
    proxy.trickle_interval = 2.0  # each byte later than the 1 s read timeout
    proxy.add(Rule("trickle", service="ecs", operation="ListTaskDefinitionFamilies"))
    result = run()
    assert "connection problem" in result.stage_failures[f"taskDefinitions[{REGION}]"]
