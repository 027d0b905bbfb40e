"""Requests that moto cannot check, checked with botocore's Stubber.

The Stubber validates every request against the real service model (parameter names, types,
list limits such as 10 entries per Inspector filter list) and fails on any call not expected,
so these tests prove what we send, in what order, and that nothing else is called:
- ENHANCED: ListCoverage then ListFindings batched over up to 10 digests (the documented limit,
  asserted through the expected parameters: botocore does not check maximum lengths), never
  StartImageScan
  (moto has no ListCoverage and ignores ListFindings filters);
- every listing (botocore paginators) followed to the last page with the same filters: moto
  never returns a `nextToken` for ListTaskDefinitionFamilies, ListClusters, ListServices or
  DescribeImageScanFindings, and has no ListCoverage;
- DescribeImages batches of 100 per repository;
- BASIC: a never-scanned image gets exactly one StartImageScan, then is polled with backoff.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.ecr import EcrBasicScanner, EcrDigestResolver
from ecs_scan_operator.adapters.ecs import EcsImageSource
from ecs_scan_operator.adapters.inspector import InspectorScanner, image_arn
from ecs_scan_operator.adapters.scanning import RegistryFindingsSource
from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import ScanState, Severity
from ecs_scan_operator.core.policy import TaskDefinitionsSpec
from ecs_scan_operator.core.state import RevisionCache

pytestmark = pytest.mark.integration
ACCOUNT, REGION = "123456789012", "eu-west-1"
ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


class Stubs:
    """AwsClients whose every client is wrapped by an active Stubber, by service name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        self.stubbers: dict[str, list[Stubber]] = {}
        self.clients = AwsClients(hooks=[self._hook])

    def _hook(self, client: Any) -> None:
        stub = Stubber(client)
        stub.activate()
        self.stubbers.setdefault(client.meta.service_model.service_name, []).append(stub)

    def stub(self, service: str, index: int = 0) -> Stubber:
        return self.stubbers[service][index]

    def assert_done(self) -> None:
        for stubs in self.stubbers.values():
            for s in stubs:
                s.assert_no_pending_responses()


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Stubs:
    return Stubs(monkeypatch)


def eq(*values: str) -> list[dict[str, str]]:
    return [{"comparison": "EQUALS", "value": v} for v in values]


def test_enhanced_batches_coverage_and_findings_and_never_starts_scans(stubs: Stubs) -> None:
    refs = [(parse_image(f"{ECR}/repo{i % 3}:v{i}"), f"sha256:{i:064x}") for i in range(12)]
    scanner = InspectorScanner(stubs.clients, REGION, workers=1)  # the Stubber answers in order
    i2 = stubs.stub("inspector2")
    arns = [image_arn(r, d) for r, d in refs]
    # ListCoverage: 10 ARNs then 2 (the model allows at most 10 per filter list)
    covered = []
    for batch in (arns[:10], arns[10:]):
        items = []
        for arn in batch:
            reason = "SUCCESSFUL"
            if arn == arns[3]:
                reason = "SCAN_ELIGIBILITY_EXPIRED"
            elif arn == arns[11]:
                reason = "PENDING_INITIAL_SCAN"
            code = "ACTIVE" if reason == "SUCCESSFUL" else "INACTIVE"
            if arn != arns[5]:  # image 5 is not covered at all
                items.append(
                    {
                        "accountId": ACCOUNT,
                        "resourceId": arn,
                        "resourceType": "AWS_ECR_CONTAINER_IMAGE",
                        "scanType": "PACKAGE",
                        "scanStatus": {"statusCode": code, "reason": reason},
                    }
                )
                if reason == "SUCCESSFUL":
                    covered.append(arn)
        i2.add_response(
            "list_coverage",
            {"coveredResources": items},
            {
                "filterCriteria": {"resourceType": eq("AWS_ECR_CONTAINER_IMAGE"), "resourceId": eq(*batch)},
                "maxResults": 200,
            },
        )
    digests = sorted({d for (r, d) in refs if image_arn(r, d) in covered})
    assert len(digests) == 9

    def finding(repo: str, digest: str, vid: str, sev: str) -> dict[str, Any]:
        return {
            "awsAccountId": ACCOUNT,
            "description": "d",
            "findingArn": f"arn:{vid}:{digest[-4:]}",
            "firstObservedAt": datetime(2026, 1, 1, tzinfo=UTC),
            "lastObservedAt": datetime(2026, 1, 2, tzinfo=UTC),
            "remediation": {},
            "severity": sev,
            "status": "ACTIVE",
            "type": "PACKAGE_VULNERABILITY",
            "title": f"{vid} - openssl",
            "packageVulnerabilityDetails": {
                "vulnerabilityId": vid,
                "source": "NVD",
                "sourceUrl": f"https://x/{vid}",
                "vulnerablePackages": [{"name": "openssl", "version": "3.0.1", "fixedInVersion": "3.0.2"}],
            },
            "resources": [
                {
                    "id": "r",
                    "type": "AWS_ECR_CONTAINER_IMAGE",
                    "details": {
                        "awsEcrContainerImage": {
                            "repositoryName": repo,
                            "imageHash": digest,
                            "registry": ACCOUNT,
                        }
                    },
                }
            ],
        }

    sev = ["CRITICAL", "HIGH", "UNTRIAGED"]
    base = {
        "resourceType": eq("AWS_ECR_CONTAINER_IMAGE"),
        "awsAccountId": eq(ACCOUNT),
        "findingStatus": eq("ACTIVE"),
        "severity": eq(*sev),
    }
    d0 = digests[0]
    repo0 = next(r.repository for r, d in refs if d == d0)
    # first batch of 9 digests: two pages
    i2.add_response(
        "list_findings",
        {"findings": [finding(repo0, d0, "CVE-1", "CRITICAL")], "nextToken": "p2"},
        {"filterCriteria": dict(base, ecrImageHash=eq(*digests)), "maxResults": 100},
    )
    i2.add_response(
        "list_findings",
        {"findings": [finding(repo0, d0, "CVE-2", "HIGH")]},
        {"filterCriteria": dict(base, ecrImageHash=eq(*digests)), "maxResults": 100, "nextToken": "p2"},
    )
    out = scanner.scans(refs, [Severity.CRITICAL, Severity.HIGH, Severity.UNTRIAGED])
    stubs.assert_done()
    by_digest = {d: out[(r, d)] for r, d in refs}
    assert [f.vulnerability_id for f in by_digest[d0].findings] == ["CVE-1", "CVE-2"]
    assert by_digest[d0].findings[0].fixed_version == "3.0.2"
    assert by_digest[refs[3][1]].state is ScanState.NOT_COVERED and "EXPIRED" in by_digest[refs[3][1]].reason
    assert by_digest[refs[5][1]].state is ScanState.NOT_COVERED
    assert by_digest[refs[11][1]].state is ScanState.PENDING
    assert by_digest[refs[1][1]].state is ScanState.COMPLETE and not by_digest[refs[1][1]].findings


def test_registry_picks_enhanced_from_scanning_configuration(stubs: Stubs) -> None:
    source = RegistryFindingsSource(stubs.clients)
    ref = parse_image(f"{ECR}/app:v1")
    digest = "sha256:" + "a" * 64
    # Clients are created lazily: call once to create the ECR client and fail fast on the missing stub.
    ecr = stubs.clients.registry("ecr", REGION)
    assert ecr is not None
    stubs.stub("ecr").add_response(
        "get_registry_scanning_configuration",
        {"registryId": ACCOUNT, "scanningConfiguration": {"scanType": "ENHANCED", "rules": []}},
        {},
    )
    i2 = stubs.clients.registry("inspector2", REGION)
    assert i2 is not None
    stubs.stub("inspector2").add_response(
        "list_coverage",
        {"coveredResources": []},
        {
            "filterCriteria": {
                "resourceType": eq("AWS_ECR_CONTAINER_IMAGE"),
                "resourceId": eq(image_arn(ref, digest)),
            },
            "maxResults": 200,
        },
    )
    out = source.scans([(ref, digest)], [Severity.HIGH])
    stubs.assert_done()  # and no StartImageScan: the Stubber would have failed on it
    assert out[(ref, digest)].state is ScanState.NOT_COVERED


def test_family_pagination_followed(stubs: Stubs) -> None:
    source = EcsImageSource(stubs.clients, concurrency=1)
    ecs = stubs.clients.workload("ecs", REGION)
    assert ecs is not None
    s = stubs.stub("ecs")
    s.add_response(
        "list_task_definition_families",
        {"families": ["web-a", "web-b"], "nextToken": "t1"},
        {"status": "ACTIVE", "maxResults": 100, "familyPrefix": "web-"},
    )
    s.add_response(
        "list_task_definition_families",
        {"families": ["web-c", "web-sandbox"]},
        {"status": "ACTIVE", "maxResults": 100, "familyPrefix": "web-", "nextToken": "t1"},
    )
    for fam in ("web-a", "web-b", "web-c"):
        s.add_response(
            "describe_task_definition",
            {
                "taskDefinition": {
                    "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{fam}:7",
                    "family": fam,
                    "revision": 7,
                    "status": "ACTIVE",
                    "containerDefinitions": [{"name": "app", "image": f"{ECR}/{fam}:1"}],
                },
                "tags": [],
            },
            {"taskDefinition": fam, "include": ["TAGS"]},
        )
    listing = source.task_definitions(
        TaskDefinitionsSpec(include=["web-*"], exclude=["*-sandbox"]), REGION, RevisionCache()
    )
    stubs.assert_done()
    assert [td.family for td in listing.task_definitions] == ["web-a", "web-b", "web-c"]


def test_describe_images_batched_per_repository(stubs: Stubs) -> None:
    refs = [parse_image(f"{ECR}/big:t{i:03d}") for i in range(150)]
    resolver = EcrDigestResolver(stubs.clients, workers=1)  # the Stubber answers in order
    assert stubs.clients.registry("ecr", REGION) is not None
    tags = sorted(r.tag or "" for r in refs)
    for chunk in (tags[:100], tags[100:]):
        stubs.stub("ecr").add_response(
            "describe_images",
            {"imageDetails": [{"imageDigest": f"sha256:{int(t[1:]):064x}", "imageTags": [t]} for t in chunk]},
            {"registryId": ACCOUNT, "repositoryName": "big", "imageIds": [{"imageTag": t} for t in chunk]},
        )
    out = resolver.resolve(refs)
    stubs.assert_done()
    assert all(out[r].digest for r in refs)


def test_basic_never_scanned_started_once_then_polled(stubs: Stubs) -> None:
    sleeps: list[float] = []
    scanner = EcrBasicScanner(
        stubs.clients, REGION, sleep=sleeps.append, monotonic=lambda: float(len(sleeps))
    )
    ref, digest = parse_image(f"{ECR}/app:v1"), "sha256:" + "b" * 64
    req = {
        "registryId": ACCOUNT,
        "repositoryName": "app",
        "imageId": {"imageDigest": digest},
        "maxResults": 1000,
    }
    plain = stubs.stub("ecr", 0)
    once = stubs.stub("ecr", 1)
    plain.add_client_error("describe_image_scan_findings", "ScanNotFoundException", expected_params=req)
    once.add_response(
        "start_image_scan",
        {"imageScanStatus": {"status": "IN_PROGRESS"}},
        {"registryId": ACCOUNT, "repositoryName": "app", "imageId": {"imageDigest": digest}},
    )
    plain.add_response("describe_image_scan_findings", {"imageScanStatus": {"status": "IN_PROGRESS"}}, req)
    plain.add_response(
        "describe_image_scan_findings",
        {
            "imageScanStatus": {"status": "COMPLETE"},
            "imageScanFindings": {
                "findings": [
                    {
                        "name": "CVE-9",
                        "severity": "HIGH",
                        "uri": "https://x",
                        "attributes": [{"key": "package_name", "value": "zlib"}],
                    }
                ]
            },
        },
        req,
    )
    out = scanner.scans([(ref, digest)])
    stubs.assert_done()
    assert out[(ref, digest)].state is ScanState.COMPLETE
    assert [f.package for f in out[(ref, digest)].findings] == ["zlib"]
    assert sleeps == [2.0, 4.0]  # backoff, no fixed sleep


def test_stubber_rejects_a_request_off_the_model(stubs: Stubs) -> None:
    """The check is real: a misspelt filter field or a wrong type is refused before anything is sent.

    botocore validates names, types and required members, but not maximum lengths; the 10-entry
    limit of Inspector filter lists is proven by the expected parameters in the tests above.
    """
    from botocore.exceptions import ParamValidationError

    i2 = stubs.clients.registry("inspector2", REGION)
    stubs.stub("inspector2").add_response("list_findings", {"findings": []})
    with pytest.raises(ParamValidationError):
        i2.list_findings(filterCriteria={"ecrImageDigest": eq("sha256:0")})
    with pytest.raises(ParamValidationError):
        i2.list_findings(filterCriteria={"ecrImageHash": eq("sha256:0")}, maxResults="100")


def test_every_listing_follows_next_token(stubs: Stubs) -> None:
    """ListClusters, ListServices, ListCoverage and DescribeImageScanFindings pages are all read.

    moto never returns a `nextToken` for these, so only the Stubber can prove the paginators
    are followed to the last page with the same filters.
    """
    ecs = stubs.clients.workload("ecs", REGION)
    assert ecs is not None
    s = stubs.stub("ecs")
    prod = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod-{i}" for i in range(2)]
    s.add_response("list_clusters", {"clusterArns": [prod[0]], "nextToken": "c2"}, {"maxResults": 100})
    s.add_response(
        "list_clusters", {"clusterArns": [prod[1], "x/staging"]}, {"maxResults": 100, "nextToken": "c2"}
    )
    td = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:3"
    for cluster in prod:
        svc = [f"{cluster}/svc-{i}" for i in range(2)]
        s.add_response(
            "list_services",
            {"serviceArns": svc[:1], "nextToken": "s2"},
            {"cluster": cluster, "maxResults": 100},
        )
        s.add_response(
            "list_services",
            {"serviceArns": svc[1:]},
            {"cluster": cluster, "maxResults": 100, "nextToken": "s2"},
        )
        s.add_response(
            "describe_services",
            {"services": [{"serviceArn": a, "taskDefinition": td} for a in svc]},
            {"cluster": cluster, "services": svc},
        )
    s.add_response(
        "describe_task_definition",
        {
            "taskDefinition": {
                "taskDefinitionArn": td,
                "family": "web",
                "revision": 3,
                "containerDefinitions": [{"name": "app", "image": f"{ECR}/web:1"}],
            },
            "tags": [],
        },
        {"taskDefinition": td, "include": ["TAGS"]},
    )
    listing = EcsImageSource(stubs.clients, concurrency=1).task_definitions(
        TaskDefinitionsSpec(source="services", clusters=["prod-*"]), REGION, RevisionCache()
    )
    assert [t.arn for t in listing.task_definitions] == [td]

    ref, digest = parse_image(f"{ECR}/web:1"), "sha256:" + "c" * 64
    i2 = stubs.clients.registry("inspector2", REGION)
    assert i2 is not None
    criteria = {"resourceType": eq("AWS_ECR_CONTAINER_IMAGE"), "resourceId": eq(image_arn(ref, digest))}
    stubs.stub("inspector2").add_response(
        "list_coverage",
        {"coveredResources": [], "nextToken": "v2"},
        {"filterCriteria": criteria, "maxResults": 200},
    )
    stubs.stub("inspector2").add_response(
        "list_coverage",
        {
            "coveredResources": [
                {
                    "accountId": ACCOUNT,
                    "resourceId": image_arn(ref, digest),
                    "resourceType": "AWS_ECR_CONTAINER_IMAGE",
                    "scanType": "PACKAGE",
                    "scanStatus": {"statusCode": "INACTIVE", "reason": "SCAN_ELIGIBILITY_EXPIRED"},
                }
            ]
        },
        {"filterCriteria": criteria, "maxResults": 200, "nextToken": "v2"},
    )
    scans = InspectorScanner(stubs.clients, REGION, workers=1).scans([(ref, digest)], [Severity.HIGH])
    assert "EXPIRED" in scans[(ref, digest)].reason  # found on the second page only

    scanner = EcrBasicScanner(stubs.clients, REGION, sleep=lambda _: None)
    req = {
        "registryId": ACCOUNT,
        "repositoryName": "web",
        "imageId": {"imageDigest": digest},
        "maxResults": 1000,
    }
    page = {"imageScanStatus": {"status": "COMPLETE"}}
    for i, extra in enumerate(({"nextToken": "f2"}, {})):
        stubs.stub("ecr").add_response(
            "describe_image_scan_findings",
            {**page, **extra, "imageScanFindings": {"findings": [{"name": f"CVE-{i}", "severity": "HIGH"}]}},
            {**req, "nextToken": "f2"} if i else req,
        )
    basic = scanner.scans([(ref, digest)])
    stubs.assert_done()
    assert [f.vulnerability_id for f in basic[(ref, digest)].findings] == ["CVE-0", "CVE-1"]


@pytest.mark.parametrize(
    ("host", "region", "arn_partition"),
    [
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1", "aws-cn"),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1", "aws-us-gov"),
        (ECR, REGION, "aws"),
    ],
)
def test_enhanced_coverage_matches_in_every_partition(
    stubs: Stubs, host: str, region: str, arn_partition: str
) -> None:
    """ENHANCED in aws-cn and aws-us-gov: the coverage `resourceId` we ask for and match is the image
    ARN as Inspector writes it there (`arn:aws-cn:ecr:...`); with `arn:aws:` it never matched.

    moto has no ListCoverage, so the request is checked with the Stubber against the service
    model, and the answer carries the ARN written out literally, as the service would return it.
    """
    ref, digest = parse_image(f"{host}/team/app:v1"), "sha256:" + "d" * 64
    arn = f"arn:{arn_partition}:ecr:{region}:{ACCOUNT}:repository/team/app/{digest}"
    assert stubs.clients.registry("ecr", region) is not None
    stubs.stub("ecr").add_response(
        "get_registry_scanning_configuration",
        {"registryId": ACCOUNT, "scanningConfiguration": {"scanType": "ENHANCED", "rules": []}},
        {},
    )
    assert stubs.clients.registry("inspector2", region) is not None
    i2 = stubs.stub("inspector2")
    i2.add_response(
        "list_coverage",
        {
            "coveredResources": [
                {
                    "accountId": ACCOUNT,
                    "resourceId": arn,
                    "resourceType": "AWS_ECR_CONTAINER_IMAGE",
                    "scanType": "PACKAGE",
                    "scanStatus": {"statusCode": "ACTIVE", "reason": "SUCCESSFUL"},
                }
            ]
        },
        {
            "filterCriteria": {"resourceType": eq("AWS_ECR_CONTAINER_IMAGE"), "resourceId": eq(arn)},
            "maxResults": 200,
        },
    )
    i2.add_response(
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
    out = RegistryFindingsSource(stubs.clients).scans([(ref, digest)], [Severity.HIGH])
    stubs.assert_done()
    assert out[(ref, digest)].state is ScanState.COMPLETE, out[(ref, digest)].reason


def test_running_tasks_pages_followed_and_described_by_100(stubs: Stubs) -> None:
    """source: running: ListTasks (RUNNING, 100 a page) pages are followed, DescribeTasks takes 100 at
    a time, a task that stopped in between (MISSING) is not an error, any other failure is.

    moto never pages ListTasks, so only the Stubber proves the nextToken is followed.
    """
    source = EcsImageSource(stubs.clients, concurrency=1)
    assert stubs.clients.workload("ecs", REGION) is not None
    s = stubs.stub("ecs")
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod"
    s.add_response(
        "list_clusters",
        {"clusterArns": [cluster, f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/staging"]},
        {"maxResults": 100},
    )
    arns = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/prod/{i:032x}" for i in range(250)]
    base = {"cluster": cluster, "desiredStatus": "RUNNING", "maxResults": 100}
    s.add_response("list_tasks", {"taskArns": arns[:100], "nextToken": "p2"}, base)
    s.add_response("list_tasks", {"taskArns": arns[100:200], "nextToken": "p3"}, base | {"nextToken": "p2"})
    s.add_response("list_tasks", {"taskArns": arns[200:]}, base | {"nextToken": "p3"})
    td = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:3"
    for start in (0, 100, 200):
        batch = arns[start : start + 100]
        tasks = [
            {
                "taskArn": a,
                "taskDefinitionArn": td,
                "group": "service:web",
                "launchType": "EC2",
                "containers": [
                    {"name": "app", "image": f"{ECR}/web:v1", "imageDigest": "sha256:" + "e" * 64}
                ],
            }
            for a in batch[:-1]
        ]
        if start == 200:
            tasks[0]["taskDefinitionArn"] = "not-an-arn"  # reported, not fatal for the other tasks
        failures = [{"arn": batch[-1], "reason": "MISSING" if start else "ACCESS_DENIED"}]
        s.add_response(
            "describe_tasks", {"tasks": tasks, "failures": failures}, {"cluster": cluster, "tasks": batch}
        )
    listing = source.task_definitions(
        TaskDefinitionsSpec(source="running", clusters=["prod"]), REGION, RevisionCache()
    )
    stubs.assert_done()
    assert [(t.family, t.service, t.launch_type, t.tasks) for t in listing.task_definitions] == [
        ("web", "web", "EC2", 246)
    ]
    assert listing.errors == [
        f"task {arns[99]}: ACCESS_DENIED",
        f"task {arns[200]}: unreadable taskDefinitionArn",
    ]
