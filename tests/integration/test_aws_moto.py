"""The AWS adapters against moto's server over real HTTP.

What each test proves, and what moto cannot prove (those requests are checked with botocore's
Stubber in test_aws_stubbed.py): moto ignores ListTaskDefinition(Families) pagination and sort,
answers a bare-family DescribeTaskDefinition with the newest revision even when INACTIVE, has no
Inspector2 ListCoverage, ignores ListFindings filters and returns a canned BASIC finding unless
results are seeded.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.ecr import EcrBasicScanner, EcrDigestResolver
from ecs_scan_operator.adapters.ecs import EcsImageSource
from ecs_scan_operator.adapters.s3_report import S3ReportSink
from ecs_scan_operator.bootstrap import build_ports
from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import ImageStatus, ScanState, TaskDefinitionImages
from ecs_scan_operator.core.policy import PolicyRef, TaskDefinitionsSpec, parse_spec
from ecs_scan_operator.core.result import Outcome
from ecs_scan_operator.core.state import RevisionCache
from ecs_scan_operator.demo.fleet import ACCOUNT, REPORT_BUCKET, seed_fleet
from ecs_scan_operator.pipeline import run_policy
from tests.support.fakes import FixedClock

pytestmark = pytest.mark.integration
REGION = "us-east-1"
ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_KEY = SecretStr("integration-state-key-0123456789abcdef")


def client(service: Any) -> Any:
    return boto3.client(service, region_name=REGION)


def register(family: str, *images: str) -> str:
    out = client("ecs").register_task_definition(
        family=family,
        containerDefinitions=[{"name": f"c{i}", "image": img, "memory": 64} for i, img in enumerate(images)],
    )
    return str(out["taskDefinition"]["taskDefinitionArn"])


def params_recorder(clients: AwsClients) -> list[tuple[str, dict[str, Any]]]:
    """Record (operation, params) of every call made through `clients`."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def hook(c: Any) -> None:
        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            seen.append((model.name, dict(params)))

        c.meta.events.register("provide-client-params.*.*", record)

    clients._hooks.append(hook)  # test-only access to the hook list
    return seen


def test_latest_revision_include_exclude(aws: str) -> None:
    for rev in range(3):
        register("payments-api", f"{ECR}/payments/api:v{rev}", f"{ECR}/sidecar:1")
    newest = register("payments-api", f"{ECR}/payments/api:rc")
    client("ecs").deregister_task_definition(taskDefinition=newest)
    register("payments-sandbox", "nginx")
    register("orders-web", "nginx")
    clients = AwsClients()
    calls = params_recorder(clients)
    listing = EcsImageSource(clients).task_definitions(
        TaskDefinitionsSpec(include=["payments-*"], exclude=["*-sandbox"]), REGION, RevisionCache()
    )
    assert [(td.family, td.revision) for td in listing.task_definitions] == [("payments-api", 3)]
    assert [c.image for c in listing.task_definitions[0].containers] == [
        f"{ECR}/payments/api:v2",
        f"{ECR}/sidecar:1",
    ]
    listed = [p for op, p in calls if op == "ListTaskDefinitionFamilies"]
    assert listed and listed[0]["familyPrefix"] == "payments-" and listed[0]["status"] == "ACTIVE"
    # only the selected family was described (plus moto's INACTIVE answer being corrected)
    described = [p["taskDefinition"] for op, p in calls if op == "DescribeTaskDefinition"]
    assert described[0] == "payments-api"
    assert all("sandbox" not in d and "orders" not in d for d in described)


def test_warm_cache_describes_nothing(aws: str) -> None:
    for i in range(5):
        for rev in range(2):
            register(f"svc-{i}", f"{ECR}/svc{i}:v{rev}")
    clients = AwsClients()
    source, cache = EcsImageSource(clients), RevisionCache()
    first = source.task_definitions(TaskDefinitionsSpec(), REGION, cache)
    assert len(first.task_definitions) == 5
    before = clients.counter.calls["ecs:DescribeTaskDefinition"]
    cache.used.clear()
    second = source.task_definitions(TaskDefinitionsSpec(), REGION, cache)
    assert {td.arn for td in second.task_definitions} == {td.arn for td in first.task_definitions}
    assert clients.counter.calls["ecs:DescribeTaskDefinition"] == before
    assert clients.counter.calls["ecs:ListTaskDefinitions"] >= 1
    # a new revision is described (only that one)
    register("svc-0", f"{ECR}/svc0:v9")
    third = source.task_definitions(TaskDefinitionsSpec(), REGION, cache)
    assert clients.counter.calls["ecs:DescribeTaskDefinition"] == before + 1
    assert any(td.family == "svc-0" and td.revision == 3 for td in third.task_definitions)


def test_found_hears_every_revision_as_it_is_described_and_not_those_from_the_cache(aws: str) -> None:
    for i in range(6):
        register(f"svc-{i}", f"{ECR}/svc{i}:v1", "nginx")
    register("other", f"{ECR}/other:1")
    source, cache = EcsImageSource(AwsClients(), concurrency=3), RevisionCache()
    selection = TaskDefinitionsSpec(include=["svc-*"])
    heard: list[TaskDefinitionImages] = []
    lock = threading.Lock()

    def found(td: TaskDefinitionImages) -> None:
        with lock:
            heard.append(td)

    cold = source.task_definitions(selection, REGION, cache, found=found)
    assert sorted(heard, key=lambda t: t.family) == sorted(cold.task_definitions, key=lambda t: t.family)
    assert len(heard) == 6
    heard.clear()
    register("svc-2", f"{ECR}/svc2:v2")
    warm = source.task_definitions(selection, REGION, cache, found=found)  # the rest from the cache
    assert len(warm.task_definitions) == 6
    assert [(td.family, td.revision) for td in heard] == [("svc-2", 2)]  # only what was described
    heard.clear()
    ecs = client("ecs")
    ecs.create_cluster(clusterName="prod")
    source.task_definitions(
        TaskDefinitionsSpec(source="running", clusters=["prod"]), REGION, cache, found=found
    )
    assert heard == []  # the running sources never tell early


def test_release_reads_lets_the_read_clients_go_and_keeps_s3(aws: str) -> None:
    clients = AwsClients(role_arn=f"arn:aws:iam::{ACCOUNT}:role/reader")
    ecs, ecr, s3 = (
        clients.workload("ecs", REGION),
        clients.registry("ecr", REGION),
        clients.base("s3", REGION),
    )
    ecs.list_clusters()
    clients.release_reads()
    assert clients.base("s3", REGION) is s3
    again = clients.workload("ecs", REGION)
    assert again is not ecs and clients.registry("ecr", REGION) is not ecr
    assert again.list_clusters()["clusterArns"] == []  # a fresh client (and role session) works


def test_services_source(aws: str) -> None:
    ecs = client("ecs")
    ecs.create_cluster(clusterName="prod-eu")
    ecs.create_cluster(clusterName="staging")
    used = register("web", f"{ECR}/web:2")
    register("web", f"{ECR}/web:3")  # newest revision, but no service runs it
    staging = register("worker", f"{ECR}/worker:1")
    ecs.create_service(cluster="prod-eu", serviceName="web", taskDefinition=used, desiredCount=0)
    ecs.create_service(cluster="staging", serviceName="worker", taskDefinition=staging, desiredCount=0)
    listing = EcsImageSource(AwsClients()).task_definitions(
        TaskDefinitionsSpec(source="services", clusters=["prod-*"]), REGION, RevisionCache()
    )
    assert [(td.family, td.revision) for td in listing.task_definitions] == [("web", 1)]


def test_digests_and_not_found(aws: str) -> None:
    ecr = client("ecr")
    ecr.create_repository(repositoryName="team/app", tags=[{"Key": "team", "Value": "payments"}])
    digest = "sha256:" + "1" * 64
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    )
    ecr.put_image(repositoryName="team/app", imageManifest=manifest, imageTag="v1", imageDigest=digest)
    refs = [
        parse_image(f"{ECR}/team/app:v1"),
        parse_image(f"{ECR}/team/app:gone"),
        parse_image(f"{ECR}/nope:1"),
        parse_image(f"{ECR}/team/app@sha256:{'2' * 64}"),
    ]
    clients = AwsClients()
    out = EcrDigestResolver(clients).resolve(refs)
    assert out[refs[0]].digest == digest
    # the missing tag and repository answered with errors; they are counted as such
    assert clients.counter.errors_by_operation()["ecr:DescribeImages"] >= 2
    assert out[refs[1]].status is ImageStatus.NOT_FOUND and "gone" in out[refs[1]].reason
    assert out[refs[2]].status is ImageStatus.NOT_FOUND and "repository" in out[refs[2]].reason
    assert out[refs[3]].digest == "sha256:" + "2" * 64  # a pinned digest needs no lookup
    tags = EcrDigestResolver(AwsClients()).repository_tags(refs)
    assert tags[(ACCOUNT, REGION, "team/app")] == {"team": "payments"}
    assert (ACCOUNT, REGION, "nope") not in tags  # a missing repository is logged, not fatal


def test_basic_scan_limit_exceeded_is_not_retried(aws: str) -> None:
    ecr = client("ecr")
    ecr.create_repository(repositoryName="app")
    digest = "sha256:" + "3" * 64
    ecr.put_image(
        repositoryName="app",
        imageManifest=json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
        ),
        imageTag="v1",
        imageDigest=digest,
    )
    ecr.start_image_scan(repositoryName="app", imageId={"imageDigest": digest})  # scanned earlier today
    clients = AwsClients()
    sends: list[str] = []
    clients._hooks.append(
        lambda c: c.meta.events.register("before-send.ecr.StartImageScan", lambda **kw: sends.append("x"))
    )
    scanner = EcrBasicScanner(clients, REGION, sleep=lambda s: None)
    scan = scanner._start(parse_image(f"{ECR}/app:v1"), digest)
    assert scan is not None and scan.state is ScanState.NOT_COVERED and "24 h" in scan.reason
    assert sends == ["x"]  # one HTTP attempt: the quota error is not retried as throttling


def test_s3_sink_encrypts(aws: str) -> None:
    client("s3").create_bucket(Bucket="reports")
    sink = S3ReportSink(AwsClients(), "reports", REGION)
    sink.put("a/b.json", b"{}", "application/json")
    head = client("s3").head_object(Bucket="reports", Key="a/b.json")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "application/json"
    assert sink.get("a/b.json") == b"{}" and sink.get("missing") is None
    kms = S3ReportSink(AwsClients(), "reports", REGION, kms_key_id="alias/reports")
    kms.put("k.json", b"{}", "application/json")
    assert client("s3").head_object(Bucket="reports", Key="k.json")["ServerSideEncryption"] == "aws:kms"


def test_assume_role_reads_the_other_account(aws: str) -> None:
    role = "arn:aws:iam::210987654321:role/scan-read"
    other = boto3.client("sts", region_name=REGION).assume_role(RoleArn=role, RoleSessionName="seed")[
        "Credentials"
    ]
    boto3.client(
        "ecs",
        region_name=REGION,
        aws_access_key_id=other["AccessKeyId"],
        aws_secret_access_key=other["SecretAccessKey"],
        aws_session_token=other["SessionToken"],
    ).register_task_definition(
        family="remote-svc", containerDefinitions=[{"name": "app", "image": "nginx", "memory": 64}]
    )
    register("local-svc", "nginx")
    mine = EcsImageSource(AwsClients()).task_definitions(TaskDefinitionsSpec(), REGION, RevisionCache())
    theirs = EcsImageSource(AwsClients(role_arn=role, external_id="ext-1")).task_definitions(
        TaskDefinitionsSpec(), REGION, RevisionCache()
    )
    assert [td.family for td in mine.task_definitions] == ["local-svc"]
    assert [td.family for td in theirs.task_definitions] == ["remote-svc"]
    assert ":210987654321:" in theirs.task_definitions[0].arn


def policy(**over: Any) -> Any:
    doc = json.loads(
        json.dumps(
            {
                "schedule": "@daily",
                "aws": {"region": REGION},
                "taskDefinitions": {
                    "include": ["payments-*", "orders-*", "platform-*"],
                    "exclude": ["*-sandbox"],
                },
                "report": {"s3": {"bucket": REPORT_BUCKET, "prefix": "scans"}},
            }
        )
    )
    doc.update(over)
    return parse_spec(doc)


def test_pipeline_on_demo_fleet_to_s3_and_rerun(aws: str) -> None:
    fleet = seed_fleet(aws, region=REGION)
    ref = PolicyRef(namespace="sec", name="daily")
    spec = policy()
    ports = build_ports(ref, spec, state_key=STATE_KEY)
    clock = FixedClock()
    first = run_policy(ref, spec, ports, clock, run_id="run-1")
    assert first.outcome is Outcome.SUCCEEDED, first.errors
    assert first.families_matched == 15
    assert first.images_by_status["not_found"] == 1  # orders-returns points at a deleted tag
    assert first.findings_total > 0
    s3 = client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=REPORT_BUCKET, Prefix="scans/")["Contents"]}
    folder = "scans/2026-11-28/sec/daily/run-1"
    assert {
        f"{folder}/index.json",
        f"{folder}/index.html",
        f"{folder}/summary.csv",
        f"{folder}/run.log.jsonl",
        "scans/state/sec/daily.json",
    } <= keys
    index = json.loads(s3.get_object(Bucket=REPORT_BUCKET, Key=f"{folder}/index.json")["Body"].read())
    affected = [i for i in index["images"] if i["report"]]
    assert len(affected) == first.affected_images
    for img in affected:
        assert f"{folder}/{img['report']}" in keys
        assert fleet.findings[f"{img['repository']}:{img['tag']}"]  # only images seeded with findings
        # Each image's page for people, next to its JSON, in the commit protocol's index.json.
        assert img["page"] == img["report"].removesuffix(".json") + ".html"
        head = s3.head_object(Bucket=REPORT_BUCKET, Key=f"{folder}/{img['page']}")
        assert head["ContentType"] == "text/html; charset=utf-8" and head["ServerSideEncryption"] == "AES256"
    assert (
        s3.head_object(Bucket=REPORT_BUCKET, Key=f"{folder}/index.json")["ServerSideEncryption"] == "AES256"
    )
    # A rerun with nothing changed describes no task definition (revisions are immutable, cached in S3).
    ports2 = build_ports(ref, spec, state_key=STATE_KEY)
    clock.advance(days=1)
    second = run_policy(ref, spec, ports2, clock, run_id="run-2")
    assert second.findings_by_severity == first.findings_by_severity
    assert first.aws_calls["ecs:DescribeTaskDefinition"] >= 15
    assert "ecs:DescribeTaskDefinition" not in second.aws_calls
    ecs_calls = sum(n for op, n in second.aws_calls.items() if op.startswith("ecs:"))
    assert ecs_calls < sum(n for op, n in first.aws_calls.items() if op.startswith("ecs:"))


def test_an_edited_state_object_cannot_steer_the_scan(aws: str) -> None:
    """A writer of the report bucket points a cached revision at a clean image: the rerun notices."""
    fleet = seed_fleet(aws, region=REGION)
    ref = PolicyRef(namespace="sec", name="daily")
    spec = policy()
    clock = FixedClock()
    first = run_policy(ref, spec, build_ports(ref, spec, state_key=STATE_KEY), clock, run_id="run-1")
    assert first.outcome is Outcome.SUCCEEDED and first.findings_total > 0
    s3 = client("s3")
    skey = "scans/state/sec/daily.json"
    state = json.loads(s3.get_object(Bucket=REPORT_BUCKET, Key=skey)["Body"].read())
    clean = next(img for img in fleet.images if not fleet.findings.get(img))
    clean_ref = f"{ECR}/{clean}"
    edited = 0
    for rev in state["revisions"].values():
        for container in rev["containers"]:
            repo_tag = container[1].removeprefix(f"{ECR}/")
            if fleet.findings.get(repo_tag):  # every vulnerable image now "is" the clean one
                container[1] = clean_ref
                edited += 1
    assert edited > 0
    # Written back in the same compact form, the MAC kept: only the images differ.
    s3.put_object(Bucket=REPORT_BUCKET, Key=skey, Body=json.dumps(state, separators=(",", ":")).encode())

    clock.advance(days=1)
    second = run_policy(ref, spec, build_ports(ref, spec, state_key=STATE_KEY), clock, run_id="run-2")
    assert second.outcome is Outcome.SUCCEEDED
    assert second.findings_by_severity == first.findings_by_severity  # the right images were scanned
    assert second.affected_images == first.affected_images
    assert second.aws_calls["ecs:DescribeTaskDefinition"] >= 15  # a cold listing, not the edited cache
    log = s3.get_object(Bucket=REPORT_BUCKET, Key="scans/2026-11-29/sec/daily/run-2/run.log.jsonl")
    lines = [json.loads(line) for line in log["Body"].read().splitlines()]
    untrusted = [line for line in lines if line["event"] == "state_untrusted"]
    assert len(untrusted) == 1 and "MAC does not match" in untrusted[0]["reason"]
    # The key is in nothing the run wrote.
    for obj in s3.list_objects_v2(Bucket=REPORT_BUCKET, Prefix="scans/")["Contents"]:
        body = s3.get_object(Bucket=REPORT_BUCKET, Key=obj["Key"])["Body"].read()
        assert STATE_KEY.get_secret_value().encode() not in body, obj["Key"]

    # run-2 rewrote a state with a valid MAC: run-3 trusts it again and describes nothing.
    clock.advance(days=1)
    third = run_policy(ref, spec, build_ports(ref, spec, state_key=STATE_KEY), clock, run_id="run-3")
    assert "ecs:DescribeTaskDefinition" not in third.aws_calls
    assert third.findings_by_severity == first.findings_by_severity


def test_cli_demo_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecs_scan_operator.cli",
            "run",
            "--demo",
            "-f",
            str(REPO_ROOT / "examples" / "scanpolicy.yaml"),
            "--output-dir",
            str(tmp_path),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["result"] == "Succeeded"
    assert result["imagesByStatus"]["unscannable"] == 3 and result["expiredSuppressions"] == 1
    assert result["suppressedFindings"] >= 1
    index = Path(result["reportUri"])
    assert index.is_file() and (index.parent / "index.html").is_file()
    assert str(index).startswith(str(tmp_path))
    # The running view's story: orders-checkout's tasks still run a vulnerable digest of a tag that
    # was rebuilt clean - one "redeploy needed" row, in index.json and summary.csv.
    assert result["redeployNeeded"] == 1
    rows = json.loads(index.read_text())["images"]
    (row,) = [r for r in rows if r.get("redeployNeeded")]
    assert row["repository"] == "orders/checkout" and row["runtime"]["drift"] is True
    assert row["runtime"]["services"] == ["orders-checkout"] and row["runtime"]["runningTasks"] == 4
    assert row["counts"]["CRITICAL"] == 2
    (clean,) = [r for r in rows if r["image"].endswith("orders/checkout:v2.4.1")]
    assert clean["counts"]["CRITICAL"] == 0 and clean["redeployNeeded"] is False
    with (index.parent / "summary.csv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert [r["image"] for r in table if r["redeploy_needed"] == "yes"] == [row["image"]]
    pages = [i["page"] for i in json.loads(index.read_text())["images"] if i["report"]]
    assert pages and all((index.parent / p).is_file() for p in pages)  # the local sink stores them too


def _cli_demo(out_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecs_scan_operator.cli", "run", "--demo", "-f",
         str(REPO_ROOT / "examples" / "scanpolicy.yaml"), "--output-dir", str(out_dir), "--format", "json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_cli_demo_output_dir_failing_during_the_run(tmp_path: Path) -> None:
    """The lease and the state can be written, but the run's dated folder is a file: every report
    object fails, the run is Failed (no index.json), exit 1, the path and the reason in the
    result, no traceback."""
    (tmp_path / "ecs-scan").mkdir()
    dated = tmp_path / "ecs-scan" / datetime.now(UTC).strftime("%Y-%m-%d")  # the CLI's clock
    dated.write_text("in the way")
    out = _cli_demo(tmp_path)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    result = json.loads(out.stdout)
    assert result["result"] == "Failed"
    assert "index.json" in result["stageFailures"]["report"]
    failure = json.dumps(result)
    assert "cannot write" in failure and str(dated) in failure and "Not a directory" in failure
    assert not list((tmp_path / "ecs-scan" / "state").rglob("*.lease"))  # the lease was released


def test_cli_demo_refused_before_the_run_when_the_lease_cannot_be_taken(tmp_path: Path) -> None:
    """The report prefix itself is a file: not even the lease can be read, so nothing runs."""
    (tmp_path / "ecs-scan").write_text("in the way")  # the policy's report prefix
    out = _cli_demo(tmp_path)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert "run not started" in out.stderr
    assert str(tmp_path / "ecs-scan" / "state") in out.stderr and "Not a directory" in out.stderr


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecs_scan_operator.cli",
            "validate",
            "-f",
            str(REPO_ROOT / "examples" / "scanpolicy.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule: nope\naws: {region: x}\nreport: {s3: {bucket: B}}\n")
    out = subprocess.run(
        [sys.executable, "-m", "ecs_scan_operator.cli", "validate", "-f", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert (
        "spec.schedule:" in out.stderr
        and "spec.aws.region:" in out.stderr
        and "spec.report.s3.bucket:" in out.stderr
    )


def test_china_region_image_end_to_end(aws: str, tmp_path: Path) -> None:
    """A cn-north-1 task definition naming a `.amazonaws.com.cn` ECR image: listing, digest, BASIC
    findings and the repository ARN all in the aws-cn partition.

    moto serves cn-north-1 with aws-cn ARNs, but its ListTagsForResource ignores the partition
    of the ARN it is given, so the ARN we send is compared with the one moto issued for the
    repository. ENHANCED (Inspector ListCoverage, which moto lacks) is checked with the Stubber in
    test_aws_stubbed.py::test_enhanced_coverage_matches_in_every_partition.
    """
    cn = "cn-north-1"
    ecr = boto3.client("ecr", region_name=cn)
    repo = ecr.create_repository(repositoryName="team/app", tags=[{"Key": "team", "Value": "cn"}])
    repo_arn = repo["repository"]["repositoryArn"]
    assert repo_arn.startswith("arn:aws-cn:ecr:cn-north-1:")
    digest = "sha256:" + "c" * 64
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    )
    ecr.put_image(repositoryName="team/app", imageManifest=manifest, imageTag="v1", imageDigest=digest)
    image = f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/team/app:v1"
    boto3.client("ecs", region_name=cn).register_task_definition(
        family="cn-web", containerDefinitions=[{"name": "app", "image": image, "memory": 64}]
    )

    clients = AwsClients()
    calls = params_recorder(clients)
    listing = EcsImageSource(clients).task_definitions(TaskDefinitionsSpec(), cn, RevisionCache())
    assert [td.arn for td in listing.task_definitions] == [
        f"arn:aws-cn:ecs:cn-north-1:{ACCOUNT}:task-definition/cn-web:1"
    ]
    ref = parse_image(listing.task_definitions[0].containers[0].image)
    assert (ref.account, ref.region, ref.repository) == (ACCOUNT, cn, "team/app")
    resolver = EcrDigestResolver(clients)
    assert resolver.resolve([ref])[ref].digest == digest
    assert resolver.repository_tags([ref]) == {(ACCOUNT, cn, "team/app"): {"team": "cn"}}
    assert [p["resourceArn"] for op, p in calls if op == "ListTagsForResource"] == [repo_arn]

    # The whole pipeline over the same fleet: BASIC scan started once, moto's canned finding read.
    spec = parse_spec(
        {
            "schedule": "@daily",
            "aws": {"region": cn},
            "report": {"s3": {"bucket": "reports-cn"}},
        }
    )
    ports = build_ports(PolicyRef(namespace="sec", name="cn"), spec, output_dir=tmp_path, clients=clients)
    result = run_policy(PolicyRef(namespace="sec", name="cn"), spec, ports, FixedClock(), run_id="run-cn")
    assert result.outcome is Outcome.SUCCEEDED, (result.errors, result.stage_failures)
    assert result.images_by_status["scanned"] == 1 and result.findings_total >= 1
    assert result.aws_calls["ecr:StartImageScan"] == 1
