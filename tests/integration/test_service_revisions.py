"""source: services, the running view from service revisions; the running view's task-definition tags;
Inspector's in-use counts.

moto has no service revisions (DescribeServices carries no `currentServiceRevisions`, and there is
no DescribeServiceRevisions), so the ECS answers here are emulated with botocore's Stubber: it
checks every request we send against the ECS service model (names, types, the order of calls, and
nothing else called) and every emulated answer against the operation's output shape, so the
emulation cannot invent a member AWS does not send. The batch sizes (10 services, 20 service
revisions, 100 tasks) are asserted through the expected parameters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.ecs import EcsImageSource
from ecs_scan_operator.adapters.inspector import InspectorScanner, image_arn
from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import ScanState, Severity
from ecs_scan_operator.core.policy import TaskDefinitionsSpec
from ecs_scan_operator.core.state import TD_TAGS_TTL, RevisionCache

pytestmark = pytest.mark.integration
ACCOUNT, REGION = "123456789012", "eu-west-1"
ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod"
TD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:3"
OLD, NEW = ("sha256:" + c * 64 for c in "ab")
NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


class Stubs:
    """AwsClients whose ECS client is wrapped by an active Stubber."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        self.stubbers: list[Stubber] = []
        self.clients = AwsClients(hooks=[self._hook])
        self.ecs = self.clients.workload("ecs", REGION)
        assert len(self.stubbers) == 1

    def _hook(self, client: Any) -> None:
        stub = Stubber(client)
        stub.activate()
        self.stubbers.append(stub)

    @property
    def stub(self) -> Stubber:
        return self.stubbers[0]


def eq(*values: str) -> list[dict[str, str]]:
    return [{"comparison": "EQUALS", "value": v} for v in values]


def service(name: str, *, revisions: list[tuple[str, int]] | None = None, running: int = 0) -> dict[str, Any]:
    """A DescribeServices `services[]` entry; revisions None: deployed before service revisions existed."""
    svc: dict[str, Any] = {
        "serviceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/prod/{name}",
        "serviceName": name,
        "clusterArn": CLUSTER,
        "taskDefinition": TD,
        "runningCount": running,
        "deployments": [{"taskDefinition": TD, "status": "PRIMARY"}],
    }
    if revisions is not None:
        svc["currentServiceRevisions"] = [{"arn": a, "runningTaskCount": n} for a, n in revisions]
    return svc


def revision_arn(name: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:service-revision/prod/{name}/1"


def revision(name: str, digest: str) -> dict[str, Any]:
    return {
        "serviceRevisionArn": revision_arn(name),
        "serviceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/prod/{name}",
        "clusterArn": CLUSTER,
        "taskDefinition": TD,
        "launchType": "FARGATE",
        "containerImages": [{"containerName": "app", "image": f"{ECR}/web:v1", "imageDigest": digest}],
    }


def describe_td(stub: Stubber, tags: list[dict[str, str]]) -> None:
    stub.add_response(
        "describe_task_definition",
        {
            "taskDefinition": {
                "taskDefinitionArn": TD,
                "family": "web",
                "revision": 3,
                "containerDefinitions": [{"name": "app", "image": f"{ECR}/web:v1"}],
            },
            "tags": tags,
        },
        {"taskDefinition": TD, "include": ["TAGS"]},
    )


def test_services_running_view_from_revisions_with_task_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    stubs = Stubs(monkeypatch)
    s = stubs.stub
    # 22 services with a current revision (2 tasks each), 1 whose revision runs no task, 1 deployed
    # before service revisions with 3 running tasks, 1 such with none.
    names = [f"svc-{i:02d}" for i in range(25)]
    services = [service(n, revisions=[(revision_arn(n), 2)], running=2) for n in names[:22]]
    services += [
        service(names[22], revisions=[(revision_arn(names[22]), 0)]),
        service(names[23], running=3),
        service(names[24]),
    ]
    s.add_response("list_clusters", {"clusterArns": [CLUSTER]}, {"maxResults": 100})
    s.add_response(
        "list_services",
        {"serviceArns": [x["serviceArn"] for x in services]},
        {"cluster": CLUSTER, "maxResults": 100},
    )
    for i in range(0, 25, 10):
        batch = services[i : i + 10]
        s.add_response(
            "describe_services",
            {"services": batch},
            {"cluster": CLUSTER, "services": [x["serviceArn"] for x in batch]},
        )
    describe_td(s, [])  # the declared view, as before
    arns = sorted(revision_arn(n) for n in names[:23])
    # The second batch answers one revision as a failure: its service falls back to its tasks.
    s.add_response(
        "describe_service_revisions",
        {"serviceRevisions": [revision(a.split("/")[-2], OLD) for a in arns[:20]]},
        {"serviceRevisionArns": arns[:20]},
    )
    s.add_response(
        "describe_service_revisions",
        {
            "serviceRevisions": [revision(a.split("/")[-2], NEW) for a in arns[20:22]],
            "failures": [{"arn": arns[22], "reason": "MISSING"}],
        },
        {"serviceRevisionArns": arns[20:]},
    )
    for name, digest, count in ((names[22], NEW, 0), (names[23], OLD, 3)):
        task_arns = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/prod/{name}-{k}" for k in range(count)]
        s.add_response(
            "list_tasks",
            {"taskArns": task_arns},
            {"cluster": CLUSTER, "desiredStatus": "RUNNING", "maxResults": 100, "serviceName": name},
        )
        if count:
            tasks = [
                {
                    "taskArn": t,
                    "clusterArn": CLUSTER,
                    "taskDefinitionArn": TD,
                    "group": f"service:{name}",
                    "launchType": "EC2",
                    "containers": [{"name": "app", "image": f"{ECR}/web:v1", "imageDigest": digest}],
                }
                for t in task_arns
            ]
            s.add_response("describe_tasks", {"tasks": tasks}, {"cluster": CLUSTER, "tasks": task_arns})

    listing = EcsImageSource(stubs.clients, concurrency=1).task_definitions(
        TaskDefinitionsSpec(source="services", clusters=["prod"]), REGION, RevisionCache()
    )
    s.assert_no_pending_responses()
    assert not listing.errors
    declared = [td for td in listing.task_definitions if not td.tasks]
    running = [td for td in listing.task_definitions if td.tasks]
    assert [td.arn for td in declared] == [TD]
    by_service = {td.service: td for td in running}
    # 22 from revisions (svc-22's revision runs nothing), svc-23 from its 3 tasks; svc-24 runs nothing.
    assert sorted(by_service) == [*names[:22], names[23]]
    assert all(td.cluster == "prod" for td in running)
    assert by_service["svc-00"].containers[0].digest == OLD and by_service["svc-00"].tasks == 2
    assert by_service["svc-20"].containers[0].digest == NEW
    assert (by_service["svc-23"].tasks, by_service["svc-23"].launch_type) == (3, "EC2")


def test_revisions_not_granted_fall_back_to_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    stubs = Stubs(monkeypatch)
    s = stubs.stub
    svc = service("web", revisions=[(revision_arn("web"), 1)], running=1)
    s.add_response("list_clusters", {"clusterArns": [CLUSTER]}, {"maxResults": 100})
    s.add_response(
        "list_services", {"serviceArns": [svc["serviceArn"]]}, {"cluster": CLUSTER, "maxResults": 100}
    )
    s.add_response(
        "describe_services", {"services": [svc]}, {"cluster": CLUSTER, "services": [svc["serviceArn"]]}
    )
    describe_td(s, [])
    s.add_client_error("describe_service_revisions", "AccessDeniedException", http_status_code=400)
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/prod/t1"
    s.add_response(
        "list_tasks",
        {"taskArns": [task]},
        {"cluster": CLUSTER, "desiredStatus": "RUNNING", "maxResults": 100, "serviceName": "web"},
    )
    s.add_response(
        "describe_tasks",
        {
            "tasks": [
                {
                    "taskArn": task,
                    "clusterArn": CLUSTER,
                    "taskDefinitionArn": TD,
                    "group": "service:web",
                    "containers": [{"name": "app", "image": f"{ECR}/web:v1", "imageDigest": OLD}],
                }
            ]
        },
        {"cluster": CLUSTER, "tasks": [task]},
    )
    listing = EcsImageSource(stubs.clients, concurrency=1).task_definitions(
        TaskDefinitionsSpec(source="services"), REGION, RevisionCache()
    )
    s.assert_no_pending_responses()
    assert [
        (td.service, td.tasks, td.containers[0].digest) for td in listing.task_definitions if td.tasks
    ] == [("web", 1, OLD)]


def test_running_view_tags_read_once_per_revision_and_refreshed_after_the_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stubs = Stubs(monkeypatch)
    s = stubs.stub
    source, cache = EcsImageSource(stubs.clients, concurrency=1), RevisionCache()
    describe_td(s, [{"key": "team", "value": "pay"}])
    tags, errors = source.revision_tags([TD, TD], cache, NOW)
    assert (tags, errors) == ({TD: (("team", "pay"),)}, [])
    # A rerun within the TTL asks nothing (the Stubber fails on any call not expected).
    assert source.revision_tags([TD], cache, NOW + TD_TAGS_TTL - timedelta(minutes=1))[0] == tags
    s.assert_no_pending_responses()
    # After the TTL the tags are read again: a tag changed on the revision reaches routing.
    describe_td(s, [{"key": "team", "value": "core"}])
    assert source.revision_tags([TD], cache, NOW + TD_TAGS_TTL)[0] == {TD: (("team", "core"),)}
    s.add_client_error("describe_task_definition", "ClientException", http_status_code=400)
    tags, errors = source.revision_tags([TD], cache, NOW + 3 * TD_TAGS_TTL)
    assert tags == {} and len(errors) == 1 and TD in errors[0]
    s.assert_no_pending_responses()


def test_inspector_coverage_in_use_count_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """ListCoverage's resourceMetadata.ecrImage.inUseCount / lastInUseAt reach the scan (no extra call)."""
    stubs = Stubs(monkeypatch)
    i2 = stubs.clients.registry("inspector2", REGION)
    assert i2 is not None
    s = stubs.stubbers[-1]
    ref, digest = parse_image(f"{ECR}/web:v1"), OLD
    criteria = {"resourceType": eq("AWS_ECR_CONTAINER_IMAGE"), "resourceId": eq(image_arn(ref, digest))}
    s.add_response(
        "list_coverage",
        {
            "coveredResources": [
                {
                    "accountId": ACCOUNT,
                    "resourceId": image_arn(ref, digest),
                    "resourceType": "AWS_ECR_CONTAINER_IMAGE",
                    "scanType": "PACKAGE",
                    "scanStatus": {"statusCode": "ACTIVE", "reason": "SUCCESSFUL"},
                    "resourceMetadata": {"ecrImage": {"inUseCount": 12, "lastInUseAt": NOW}},
                }
            ]
        },
        {"filterCriteria": criteria, "maxResults": 200},
    )
    s.add_response(
        "list_findings",
        {"findings": []},
        {
            "filterCriteria": {
                "resourceType": eq("AWS_ECR_CONTAINER_IMAGE"),
                "awsAccountId": eq(ACCOUNT),
                "ecrImageHash": eq(digest),
                "findingStatus": eq("ACTIVE"),
                "severity": eq("HIGH"),
            },
            "maxResults": 100,
        },
    )
    scan = InspectorScanner(stubs.clients, REGION, workers=1).scans([(ref, digest)], [Severity.HIGH])[
        (ref, digest)
    ]
    s.assert_no_pending_responses()
    assert (scan.state, scan.in_use_count, scan.last_in_use_at) == (ScanState.COMPLETE, 12, NOW)
