"""source: running, the pure parts: family from a task's ARN, include/exclude over running tasks,
one record per (revision, service, launch type, digests), PENDING containers kept and reported.

The AWS side (ListClusters -> ListTasks -> DescribeTasks against moto, with the digests moto lacks
injected by a validated hook) is tests/integration/test_running_source.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from ecs_scan_operator.adapters.ecs import parse_td_arn, running_task_definitions
from ecs_scan_operator.core.images import running_image
from ecs_scan_operator.core.model import (
    Finding,
    ImageRef,
    Resolution,
    Severity,
    TaskDefinitionImages,
    TaskDefinitionListing,
)
from ecs_scan_operator.core.policy import PolicyRef, TaskDefinitionsSpec, parse_spec
from ecs_scan_operator.core.state import RevisionCache
from ecs_scan_operator.pipeline import run_policy
from ecs_scan_operator.ports import Ports
from tests.support.fakes import FakeDigests, FakeFindings, FixedClock, MemorySink

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def td_arn(family: str, rev: int) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task-definition/{family}:{rev}"


def task(
    family: str, rev: int, *containers: tuple[str, str, str | None], group: str = "", launch: str = "FARGATE"
) -> dict[str, Any]:
    """A DescribeTasks `tasks[]` entry (only the members the source reads)."""
    return {
        "taskDefinitionArn": td_arn(family, rev),
        "group": group or f"family:{family}",
        "launchType": launch,
        "containers": [{"name": n, "image": i} | ({"imageDigest": d} if d else {}) for n, i, d in containers],
    }


@pytest.mark.parametrize(
    ("arn", "family", "rev"),
    [
        (td_arn("web", 3), "web", 3),
        (td_arn("payments-api-v2", 120), "payments-api-v2", 120),
        ("arn:aws-cn:ecs:cn-north-1:123456789012:task-definition/a_b-c:1", "a_b-c", 1),
        ("arn:aws-us-gov:ecs:us-gov-west-1:123456789012:task-definition/x:99999", "x", 99999),
    ],
)
def test_family_and_revision_from_a_task_definition_arn(arn: str, family: str, rev: int) -> None:
    assert parse_td_arn(arn) == (family, rev)


@pytest.mark.parametrize(
    ("image", "digest", "expected"),
    [
        (f"{ECR}/app:v1", D1, f"{ECR}/app:v1@{D1}"),  # the tag, pinned to what runs
        (f"{ECR}/app", D1, f"{ECR}/app:latest@{D1}"),  # no tag: ECS pulled latest, the tag is kept
        ("busybox", D1, f"busybox:latest@{D1}"),
        (f"{ECR}/app@{D2}", D2, f"{ECR}/app@{D2}"),  # already pinned: as written
        (f"{ECR}/app:v1", None, f"{ECR}/app:v1"),  # PENDING: no digest yet
        (f"{ECR}/app:v1", "", f"{ECR}/app:v1"),
    ],
)
def test_running_image(image: str, digest: str | None, expected: str) -> None:
    assert running_image(image, digest) == expected


def test_include_exclude_apply_to_the_family_of_each_task() -> None:
    tasks = [
        task("pay-api", 4, ("app", f"{ECR}/app:v1", D1), group="service:pay-api"),
        task("pay-sandbox", 1, ("app", f"{ECR}/app:v1", D1)),
        task("orders", 2, ("app", f"{ECR}/orders:1", D2)),
        task("pay-batch", 7, ("job", f"{ECR}/batch:1", D3), group="family:pay-batch"),
    ]
    sel = TaskDefinitionsSpec(source="running", include=["pay-*"], exclude=["*-sandbox"])
    out = running_task_definitions(tasks, sel, "us-east-1")
    assert [(t.family, t.revision, t.service) for t in out] == [
        ("pay-api", 4, "pay-api"),
        ("pay-batch", 7, ""),
    ]
    # With no include every family runs through; exclude alone still applies.
    everything = running_task_definitions(
        tasks, TaskDefinitionsSpec(source="running", exclude=["orders"]), "r"
    )
    assert sorted(t.family for t in everything) == ["pay-api", "pay-batch", "pay-sandbox"]


def test_tasks_with_the_same_revision_service_launch_type_and_digests_are_counted_once() -> None:
    same = ("app", f"{ECR}/app:v1", D1)
    tasks = [
        *[task("web", 3, same, group="service:web") for _ in range(5)],
        task("web", 3, ("app", f"{ECR}/app:v1", D2), group="service:web"),  # the tag moved mid-deployment
        task("web", 3, same, group="service:web", launch="EC2"),
        task("web", 2, same, group="service:web-canary"),
    ]
    out = running_task_definitions(tasks, TaskDefinitionsSpec(source="running"), "eu-west-1")
    got = sorted((t.revision, t.service, t.launch_type, t.containers[0].digest, t.tasks) for t in out)
    assert got == [
        (2, "web-canary", "FARGATE", D1, 1),
        (3, "web", "EC2", D1, 1),
        (3, "web", "FARGATE", D1, 5),
        (3, "web", "FARGATE", D2, 1),
    ]
    assert {t.region for t in out} == {"eu-west-1"}
    assert sum(t.tasks for t in out) == len(tasks)  # no task lost


def test_a_pending_container_is_kept_without_a_digest() -> None:
    out = running_task_definitions(
        [task("web", 1, ("app", f"{ECR}/app:v1", None), ("log", f"{ECR}/log:2", D2))],
        TaskDefinitionsSpec(source="running"),
        "us-east-1",
    )
    assert [(c.name, c.digest) for c in out[0].containers] == [("app", None), ("log", D2)]


@dataclass
class RunningTasks:
    """An ImageSource answering with DescribeTasks-shaped tasks, through the adapter's pure grouping."""

    tasks: list[dict[str, Any]]

    def task_definitions(
        self,
        selection: TaskDefinitionsSpec,
        region: str,
        cache: RevisionCache,
        account: str = "",
        found: Callable[[TaskDefinitionImages], None] | None = None,
    ) -> TaskDefinitionListing:
        tds = running_task_definitions(self.tasks, selection, region)
        return TaskDefinitionListing(task_definitions=tds, families_matched=len({t.family for t in tds}))


@dataclass
class RecordingDigests(FakeDigests):
    asked: list[ImageRef] = field(default_factory=list)

    def resolve(self, refs: Sequence[ImageRef]) -> dict[ImageRef, Resolution]:
        self.asked.extend(refs)
        return super().resolve(refs)


def test_pipeline_reports_running_digests_and_pending_containers() -> None:
    tasks = [
        task("web", 3, ("app", f"{ECR}/app:v1", D1), group="service:web"),
        task("web", 3, ("app", f"{ECR}/app:v1", D1), group="service:web"),
        task("web", 4, ("app", f"{ECR}/app:v1", D2), group="service:web"),
        task("cron", 1, ("job", f"{ECR}/job:1", None), launch="EC2"),  # PENDING
        task("cron", 1, ("job", "busybox:1", None), launch="EC2"),  # PENDING and not ECR: unscannable wins
    ]
    spec = parse_spec(
        {
            "schedule": "@daily",
            "aws": {"region": "us-east-1"},
            "taskDefinitions": {"source": "running", "clusters": ["prod-*"]},
            "report": {"s3": {"bucket": "reports", "prefix": "scans"}},
        }
    )
    sink, digests = MemorySink(), RecordingDigests()
    findings = FakeFindings(by_repo={"app": [Finding("CVE-1", Severity.CRITICAL, "openssl")]})
    ports = Ports(images=RunningTasks(tasks), digests=digests, findings=findings, reports=sink)
    result = run_policy(PolicyRef(namespace="ns", name="p"), spec, ports, FixedClock())
    index_key = next(k for k in sink.objects if k.endswith("/index.json"))
    images = {i["image"]: i for i in json.loads(sink.objects[index_key])["images"]}
    assert set(images) == {f"{ECR}/app:v1@{D1}", f"{ECR}/app:v1@{D2}", f"{ECR}/job:1", "busybox:1"}
    assert images[f"{ECR}/app:v1@{D1}"]["digest"] == D1
    assert images[f"{ECR}/app:v1@{D1}"]["status"] == "scanned"
    pending = images[f"{ECR}/job:1"]
    assert pending["status"] == "not_scanned" and "PENDING" in pending["reason"]
    assert images["busybox:1"]["status"] == "unscannable"
    # The running digests pass through as they are; the tag is asked once for the digest it points
    # at now (drift, redeploy needed); nothing is asked about the PENDING image.
    assert [r.raw for r in digests.asked if not r.digest] == [f"{ECR}/app:v1"]
    assert f"{ECR}/job:1" not in {r.raw for r in digests.asked}
    assert result.images_by_status["not_scanned"] == 1
    # Each running digest has its own per-image object (one tag, two digests) with the runtime context.
    objects = [json.loads(v) for k, v in sink.objects.items() if "/images/" in k and k.endswith(".json")]
    assert sorted(o["digest"] for o in objects) == [D1, D2]
    uses = next(o["uses"] for o in objects if o["digest"] == D1)
    assert uses == [
        {
            "family": "web",
            "revision": 3,
            "container": "app",
            "region": "us-east-1",
            "service": "web",
            "launchType": "FARGATE",
            "runningTasks": 2,
        }
    ]
