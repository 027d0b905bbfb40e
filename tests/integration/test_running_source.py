"""source: running against moto's server over HTTP, end to end through the pipeline.

Where the answers are emulated, and why: moto's DescribeTasks returns containers without
`imageDigest` (ECS sets it once a container has pulled its image) and lists only the first
container of a task. `digest_hook` below is a botocore `after-call.ecs.DescribeTasks` handler on the
test's clients that adds `imageDigest` to the containers whose image the test "ran", leaving the
others as ECS leaves a PENDING container. Every injected answer is checked against the DescribeTasks
output shape of botocore's service model (botocore.validate), so the emulation cannot invent a member
or a type AWS does not send. Everything else (clusters, RunTask, ListTasks, ECR images, BASIC scan
findings, S3 reports) is moto.
"""

from __future__ import annotations

import json
import math
from typing import Any

import boto3
import pytest
from botocore.validate import ParamValidator
from pydantic import SecretStr

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.bootstrap import build_ports
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome
from ecs_scan_operator.pipeline import run_policy
from tests.support.fakes import FixedClock

pytestmark = pytest.mark.integration
REGION = "us-east-1"
ACCOUNT = "123456789012"
ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
BUCKET = "running-reports"
D_OLD, D_NEW, D_JOB = ("sha256:" + c * 64 for c in "abc")


def manifest(digest: str) -> str:
    """A manifest of its own per image (moto keys images by manifest: equal ones would be one image)."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": digest},
        }
    )


def client(service: Any) -> Any:
    return boto3.client(service, region_name=REGION)


def digest_hook(running: dict[str, str], injected: list[dict[str, Any]]) -> Any:
    """A client hook: DescribeTasks answers gain `imageDigest` for the images in `running`."""

    def add_digests(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        for t in parsed.get("tasks", []):
            for c in t.get("containers", []):
                if c.get("image") in running:
                    c["imageDigest"] = running[c["image"]]
                else:
                    c["lastStatus"] = "PENDING"
        body = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
        report = ParamValidator().validate(body, model.output_shape)
        assert not report.has_errors(), report.generate_report()
        injected.append(body)

    def hook(c: Any) -> None:
        if c.meta.service_model.service_name == "ecs":
            c.meta.events.register("after-call.ecs.DescribeTasks", add_digests)

    return hook


def run_tasks(cluster: str, td: str, count: int, group: str | None = None) -> None:
    kwargs: dict[str, Any] = {"group": group} if group else {}
    while count > 0:  # RunTask starts at most 10 tasks a call
        client("ecs").run_task(
            cluster=cluster, taskDefinition=td, count=min(count, 10), launchType="FARGATE", **kwargs
        )
        count -= 10


def register(family: str, image: str) -> str:
    out = client("ecs").register_task_definition(
        family=family, containerDefinitions=[{"name": "app", "image": image, "memory": 64}]
    )
    return str(out["taskDefinition"]["taskDefinitionArn"])


def test_running_digests_end_to_end(aws: str) -> None:
    ecr, ecs = client("ecr"), client("ecs")
    client("s3").create_bucket(Bucket=BUCKET)
    for repo in ("web", "job"):
        ecr.create_repository(repositoryName=repo)
    # web:v1 was pushed as D_OLD, then rebuilt and pushed again: the tag now points at D_NEW.
    for repo, tag, digest in (("web", "v1-old", D_OLD), ("web", "v1", D_NEW), ("job", "1", D_JOB)):
        ecr.put_image(repositoryName=repo, imageManifest=manifest(digest), imageTag=tag, imageDigest=digest)
    for name in ("prod-a", "prod-b", "staging"):
        ecs.create_cluster(clusterName=name)
    web = register("web", f"{ECR}/web:v1")
    job = register("job", f"{ECR}/job:1")
    pending = register("report", f"{ECR}/job:2")  # no digest recorded yet: PENDING
    sandbox = register("web-sandbox", f"{ECR}/web:v1")
    run_tasks("prod-a", web, 130, group="service:web")  # a service: 2 DescribeTasks calls
    run_tasks("prod-a", sandbox, 3)  # excluded family
    run_tasks("prod-b", job, 4)  # RunTask / scheduled: group family:job
    run_tasks("prod-b", pending, 1)
    run_tasks("staging", job, 5)  # not a selected cluster
    tasks_in = {"prod-a": 133, "prod-b": 5}

    injected: list[dict[str, Any]] = []
    hook = digest_hook({f"{ECR}/web:v1": D_OLD, f"{ECR}/job:1": D_JOB}, injected)
    spec = parse_spec(
        {
            "schedule": "@daily",
            "aws": {"region": REGION},
            "taskDefinitions": {"source": "running", "clusters": ["prod-*"], "exclude": ["*-sandbox"]},
            "report": {"s3": {"bucket": BUCKET, "prefix": "scans"}},
        }
    )
    ref = PolicyRef(namespace="sec", name="running")
    ports = build_ports(ref, spec, clients=AwsClients(hooks=[hook]), state_key=SecretStr("s" * 32))
    result = run_policy(ref, spec, ports, FixedClock(), run_id="run-1")
    assert result.outcome is Outcome.SUCCEEDED, result.errors
    assert injected, "the digest emulation never ran"

    folder = "scans/2026-11-28/sec/running/run-1"
    index = json.loads(client("s3").get_object(Bucket=BUCKET, Key=f"{folder}/index.json")["Body"].read())
    images = {i["image"]: i for i in index["images"]}
    # The digest that runs, not the one the tag points at now; the PENDING container is reported.
    assert set(images) == {f"{ECR}/web:v1@{D_OLD}", f"{ECR}/job:1@{D_JOB}", f"{ECR}/job:2"}
    assert images[f"{ECR}/web:v1@{D_OLD}"]["digest"] == D_OLD
    assert images[f"{ECR}/web:v1@{D_OLD}"]["status"] == "scanned"
    assert images[f"{ECR}/job:1@{D_JOB}"]["families"] == ["job"]
    assert images[f"{ECR}/job:2"]["status"] == "not_scanned"
    assert "PENDING" in images[f"{ECR}/job:2"]["reason"]
    assert result.families_matched == 3

    calls = result.aws_calls
    assert calls["ecs:ListClusters"] == 1
    assert calls["ecs:ListTasks"] == 2  # one page per selected cluster (moto never pages ListTasks)
    assert calls["ecs:DescribeTasks"] == sum(math.ceil(n / 100) for n in tasks_in.values())
    # Digests come from the tasks: no tag resolution, no task-definition read.
    # Digests come from the tasks; the tags' current digests (drift) cost one DescribeImages per
    # repository; no task-definition read (no route asks for task-definition tags).
    assert calls["ecr:DescribeImages"] == 2
    assert "ecs:DescribeTaskDefinition" not in calls
    # The running view: web:v1 was rebuilt (the tag now points at D_NEW) while 130 tasks still run
    # D_OLD: drift, and D_NEW's findings are read too (one more findings read) to decide "redeploy".
    web = images[f"{ECR}/web:v1@{D_OLD}"]["runtime"]
    assert web["tagDigest"] == D_NEW and web["drift"] is True and web["runningDigests"] == [D_OLD]
    assert (web["clusters"], web["services"], web["runningTasks"]) == (["prod-a"], ["web"], 130)
    assert web["firstSeenRunning"] == web["lastSeenRunning"] == FixedClock().now().isoformat()
    # moto gives every BASIC scan the same canned finding: the new digest has it too, so no redeploy.
    assert images[f"{ECR}/web:v1@{D_OLD}"]["redeployNeeded"] is False
    job = images[f"{ECR}/job:1@{D_JOB}"]["runtime"]
    assert (job["tagDigest"], job["drift"], job["services"], job["runningTasks"]) == (D_JOB, False, [], 4)
    pending = images[f"{ECR}/job:2"]["runtime"]
    assert (pending["runningDigests"], pending["runningTasks"]) == ([], 1)

    # The per-image object (moto's canned BASIC finding makes the image affected) carries the service,
    # revision, launch type and task count.
    report = images[f"{ECR}/web:v1@{D_OLD}"]["report"]
    assert report
    doc = json.loads(client("s3").get_object(Bucket=BUCKET, Key=f"{folder}/{report}")["Body"].read())
    assert doc["uses"] == [
        {
            "family": "web",
            "revision": 1,
            "container": "app",
            "region": REGION,
            "service": "web",
            "launchType": "FARGATE",
            "runningTasks": 130,
        }
    ]


def test_latest_revision_with_clusters_adds_the_running_view(aws: str) -> None:
    ecr, ecs = client("ecr"), client("ecs")
    client("s3").create_bucket(Bucket=BUCKET)
    ecr.create_repository(repositoryName="web")
    for tag, digest in (("v1-old", D_OLD), ("v1", D_NEW)):
        ecr.put_image(repositoryName="web", imageManifest=manifest(digest), imageTag=tag, imageDigest=digest)
    ecs.create_cluster(clusterName="prod")
    web = register("web", f"{ECR}/web:v1")
    run_tasks("prod", web, 3, group="service:web")
    injected: list[dict[str, Any]] = []
    hook = digest_hook({f"{ECR}/web:v1": D_OLD}, injected)
    spec = parse_spec(
        {
            "schedule": "@daily",
            "aws": {"region": REGION},
            "taskDefinitions": {"clusters": ["prod"]},  # source latestRevision (the default)
            "report": {"s3": {"bucket": BUCKET, "prefix": "scans"}},
        }
    )
    ref = PolicyRef(namespace="sec", name="latest")
    ports = build_ports(ref, spec, clients=AwsClients(hooks=[hook]), state_key=SecretStr("s" * 32))
    result = run_policy(ref, spec, ports, FixedClock(), run_id="run-1")
    assert result.outcome is Outcome.SUCCEEDED, result.errors
    folder = "scans/2026-11-28/sec/latest/run-1"
    index = json.loads(client("s3").get_object(Bucket=BUCKET, Key=f"{folder}/index.json")["Body"].read())
    images = {i["image"]: i for i in index["images"]}
    # The declared view stays (the tag's current digest); the digest that runs is a row of its own.
    assert set(images) == {f"{ECR}/web:v1", f"{ECR}/web:v1@{D_OLD}"}
    declared = images[f"{ECR}/web:v1"]
    assert declared["digest"] == D_NEW
    assert (declared["runtime"]["runningDigests"], declared["runtime"]["drift"]) == ([D_OLD], True)
    assert declared["runtime"]["runningTasks"] == 0  # nothing runs the tag's current digest
    running = images[f"{ECR}/web:v1@{D_OLD}"]["runtime"]
    assert (running["tagDigest"], running["runningTasks"], running["services"]) == (D_NEW, 3, ["web"])
    calls = result.aws_calls
    assert calls["ecs:DescribeTaskDefinition"] == 1 and calls["ecs:DescribeTasks"] == 1
    assert calls["ecr:DescribeImages"] == 1  # the declared tag and the running row's tag: one call
