"""Issue #12's scenario across runs: a tag moved to a clean digest is not a fix while tasks still
run the vulnerable one; replacing the tasks is. moto's server over HTTP and the Jira contract server.

1. v1 (vulnerable) deployed: a ticket is created.
2. The tag is rebuilt and pushed as a clean v2; the service's tasks still run v1: the ticket stays
   open, its description now starts with "Redeploy needed" (one update, one comment) and the run
   counts the image (index.json, lastRun, per-image JSON).
3. Nothing redeployed: no Jira write at all (the description path does not churn).
4. The tasks are replaced and run v2: the ticket is closed as fixed.

Emulated, and where: moto's DescribeTasks carries no `imageDigest`, so `digest_hook` (from
test_running_source, validated against botocore's DescribeTasks output shape) adds the digest each
task runs. The two digests' scan results are moto's own: its ECR API takes configured
DescribeImageScanFindings answers per image (`moto-api/static/ecr/scan-finding-results`), so v1
has a HIGH finding and v2 none; each configured answer is validated against botocore's output shape
before it is handed to moto. The tag's current digest is resolved by the pipeline (ECR DescribeImages
on drift), nothing here. moto deletes an image whose only tag moves on (ECR keeps it untagged), so
v1 carries a second tag.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
import requests
from botocore.validate import ParamValidator
from pydantic import SecretStr

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.jira_credentials import JiraCredentials
from ecs_scan_operator.bootstrap import build_ports
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.pipeline import run_policy
from tests.integration.test_running_source import (
    ECR,
    REGION,
    client,
    digest_hook,
    manifest,
    register,
    run_tasks,
)
from tests.jira_server.server import JiraTestServer
from tests.jira_server.state import RESOLUTIONS, STATUSES, Issue
from tests.support.fakes import FixedClock

pytestmark = pytest.mark.integration
BUCKET = "redeploy-reports"
V1, V2 = ("sha256:" + c * 64 for c in "12")
IMAGE = f"{ECR}/web:prod"
POLICY = PolicyRef(namespace="payments", name="running")


def _scan_result(digest: str, findings: list[dict[str, Any]]) -> dict[str, Any]:
    """A DescribeImageScanFindings answer for `digest`, checked against the service model."""
    answer: dict[str, Any] = {
        "registryId": ECR.split(".", 1)[0],
        "repositoryName": "web",
        "imageId": {"imageDigest": digest},
        "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
        "imageScanFindings": {
            "findings": findings,
            "findingSeverityCounts": {f["severity"]: 1 for f in findings},
        },
    }
    model = botocore.session.get_session().get_service_model("ecr")
    shape = model.operation_model("DescribeImageScanFindings").output_shape
    assert shape is not None
    report = ParamValidator().validate(answer, shape)
    assert not report.has_errors(), report.generate_report()
    return answer


def _configure_scans(endpoint: str) -> None:
    vulnerable = {
        "name": "CVE-2024-6387",
        "uri": "https://nvd.nist.gov/vuln/detail/CVE-2024-6387",
        "severity": "HIGH",
        "attributes": [
            {"key": "package_name", "value": "openssh"},
            {"key": "package_version", "value": "9.6p1"},
        ],
    }
    body: dict[str, Any] = {
        "results": [_scan_result(V1, [vulnerable]), _scan_result(V2, [])],
        "region": REGION,
    }
    resp = requests.post(f"{endpoint}/moto-api/static/ecr/scan-finding-results", json=body, timeout=10)
    resp.raise_for_status()


@pytest.fixture
def creds(jira_server: JiraTestServer) -> Iterator[JiraCredentials]:
    found = JiraCredentials.from_env(jira_server.credentials_env())
    assert found is not None
    yield found


def _text(issue: Issue) -> str:
    return issue.description if isinstance(issue.description, str) else json.dumps(issue.description)


def _open_issues(server: JiraTestServer) -> list[Issue]:
    return [i for i in server.state.issues.values() if STATUSES[i.status].category != "done"]


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_tag_moved_is_not_a_fix_until_the_tasks_are_replaced(
    aws: str, jira_server: JiraTestServer, creds: JiraCredentials
) -> None:
    ecr, ecs, s3 = client("ecr"), client("ecs"), client("s3")
    s3.create_bucket(Bucket=BUCKET)
    ecr.create_repository(repositoryName="web")
    # v1 also carries its build tag: moto deletes an image whose only tag moves to another digest,
    # where ECR keeps it (untagged), so tasks can still run it.
    for tag in ("build-41", "prod"):
        ecr.put_image(repositoryName="web", imageManifest=manifest(V1), imageTag=tag, imageDigest=V1)
    ecs.create_cluster(clusterName="prod")
    web = register("web", IMAGE)
    run_tasks("prod", web, 3, group="service:web")
    _configure_scans(aws)

    running = {IMAGE: V1}  # what the tasks run, as ECS records it (the emulated imageDigest)
    injected: list[dict[str, Any]] = []
    spec = parse_spec(
        {
            "schedule": "@daily",
            "aws": {"region": REGION},
            "taskDefinitions": {"source": "running", "clusters": ["prod"]},
            "report": {"s3": {"bucket": BUCKET}},
            "severityThreshold": "HIGH",
            "jira": {"url": jira_server.url, "credentialsSecret": "jira", "project": "SEC"},
        }
    )
    clock = FixedClock()
    server = jira_server

    def run(run_id: str) -> tuple[RunResult, dict[str, Any], int]:
        ports = build_ports(
            POLICY,
            spec,
            clients=AwsClients(hooks=[digest_hook(running, injected)]),
            state_key=SecretStr("k" * 32),
            jira_credentials=creds,
        )
        server.state.now = clock.now()
        mark = server.mark()
        result = run_policy(POLICY, spec, ports, clock, run_id=run_id)
        assert result.outcome is Outcome.SUCCEEDED, (result.errors, result.stage_failures)
        folder = f"ecs-scan/{clock.now():%Y-%m-%d}/{POLICY.namespace}/{POLICY.name}/{run_id}"
        index = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{folder}/index.json")["Body"].read())
        writes = sum(1 for r in server.since(mark) if r.write)
        clock.advance(days=1)
        return result, index, writes

    # 1. v1 runs and is vulnerable: one ticket.
    result, index, _ = run("run-1")
    assert result.tickets.get("create") == 1, result.tickets
    (key,) = [i.key for i in server.state.issues.values()]

    def ticket() -> Issue:
        (issue,) = [i for i in server.state.issues.values() if i.key == key]
        return issue

    assert not _text(ticket()).startswith("*Redeploy needed:*")

    # 2. The tag is rebuilt as a clean v2; the tasks still run v1.
    ecr.put_image(repositoryName="web", imageManifest=manifest(V2), imageTag="prod", imageDigest=V2)
    result, index, writes = run("run-2")
    (row,) = [i for i in index["images"] if i["digest"] == V1]
    assert row["redeployNeeded"] is True
    assert (row["runtime"]["tagDigest"], row["runtime"]["drift"]) == (V2, True)
    assert index["result"]["redeployNeeded"] == 1 and result.redeploy_needed == 1
    assert result.tickets.get("update") == 1 and "close" not in result.tickets, result.tickets
    assert [i.key for i in _open_issues(server)] == [key]
    text = _text(ticket())
    assert text.startswith("*Redeploy needed:*") and V1 in text and V2 in text
    assert "h3. Where it runs" in text
    assert any("redeploy needed" in json.dumps(c.body) for c in ticket().comments)
    assert ticket().properties["ecsscan"]["redeploy"] is True
    comments = len(ticket().comments)

    # 3. Nothing redeployed: the same facts, no write.
    result, index, writes = run("run-3")
    assert writes == 0, result.tickets
    assert result.tickets.get("unchanged") == 1 and len(ticket().comments) == comments

    # 4. The tasks are replaced and run v2: fixed.
    for arn in ecs.list_tasks(cluster="prod")["taskArns"]:
        ecs.stop_task(cluster="prod", task=arn)
    run_tasks("prod", web, 3, group="service:web")
    running[IMAGE] = V2
    result, index, writes = run("run-4")
    assert result.tickets.get("close") == 1, result.tickets
    assert _open_issues(server) == []
    assert STATUSES[ticket().status].category == "done"
    assert RESOLUTIONS[ticket().resolution or ""] in ("Fixed", "Done")
    assert "redeployed" in json.dumps(ticket().comments[-1].body)
    assert [i["digest"] for i in index["images"]] == [V2]
    assert index["result"]["redeployNeeded"] == 0
    assert injected, "the digest emulation never ran"
