"""The demo fleet: a realistic ECS + ECR estate seeded into moto's AWS server over HTTP.

Deterministic (a fixed seed): 32 task-definition families of seven teams with several revisions
each (the newest revision of one family deregistered), app + sidecar + init containers, shared
images, ECR images with BASIC-scan findings of every severity, clean images, an image never
scanned (the run starts its scan), Docker Hub / public ECR / GHCR images, an ECR pull-through
cache path, a tag that no longer exists, a malformed reference, and an S3 bucket for reports.

With `running=True` (the CLI's `run --demo`) it adds the running view's story: a cluster `prod`
where the service `orders-checkout` still runs a vulnerable digest of `orders/checkout:v2.4.1`
after that tag was rebuilt and pushed clean (drift, "redeploy needed"), and `payments-api`
running the digest its tag points at.

moto's limits, stated: findings are seeded through moto's `/moto-api/static/ecr/scan-finding-results`
(moto returns a canned finding otherwise), and the registry scans BASIC, because moto has no
Inspector2 `ListCoverage` and ignores `ListFindings` filters. moto's DescribeTasks carries no
`imageDigest`: `task_digest_hook` adds the digest each demo task runs, and checks every answer it
changes against botocore's DescribeTasks output shape. moto deletes an image whose only tag moves
(ECR keeps it untagged), so the old checkout digest keeps a build tag. With `enhanced_region`, a
second region scans ENHANCED (demo/enhanced.py): its Inspector is emulated in-process and checked
against botocore's model (`FleetInfo.inspector`, attached to the run's AWS clients).
"""

from __future__ import annotations

import hashlib
import json
import random
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.validate import ParamValidator

if TYPE_CHECKING:
    from ecs_scan_operator.demo.inspector import InspectorEmulator

ACCOUNT = "123456789012"  # moto's default account
REPORT_BUCKET = "ecs-scan-reports"

# (vulnerability id, package, installed, fixed, severity)
CVE_CATALOG: list[tuple[str, str, str, str, str]] = [
    ("CVE-2024-6387", "openssh-server", "1:9.2p1-2", "1:9.2p1-2+deb12u3", "CRITICAL"),
    ("CVE-2023-44487", "nghttp2", "1.52.0-1", "1.52.0-1+deb12u1", "HIGH"),
    ("CVE-2024-2961", "glibc", "2.36-9", "2.36-9+deb12u7", "HIGH"),
    ("CVE-2023-4911", "glibc", "2.36-9", "2.36-9+deb12u3", "CRITICAL"),
    ("CVE-2024-5535", "openssl", "3.0.11-1", "3.0.14-1", "MEDIUM"),
    ("CVE-2023-5363", "openssl", "3.0.11-1", "3.0.13-1", "HIGH"),
    ("CVE-2024-0727", "openssl", "3.0.11-1", "3.0.13-1", "MEDIUM"),
    ("CVE-2023-45853", "zlib", "1:1.2.13", "", "CRITICAL"),
    ("CVE-2023-38545", "curl", "7.88.1-10", "7.88.1-10+deb12u4", "CRITICAL"),
    ("CVE-2023-38546", "curl", "7.88.1-10", "7.88.1-10+deb12u4", "LOW"),
    ("CVE-2024-2398", "curl", "7.88.1-10", "7.88.1-10+deb12u6", "MEDIUM"),
    ("CVE-2024-25062", "libxml2", "2.9.14", "2.9.14+dfsg-1.3~deb12u1", "HIGH"),
    ("CVE-2023-39615", "libxml2", "2.9.14", "", "MEDIUM"),
    ("CVE-2022-48174", "busybox", "1.35.0", "1.36.1", "CRITICAL"),
    ("CVE-2024-6345", "setuptools", "65.5.0", "70.0.0", "HIGH"),
    ("CVE-2024-35195", "requests", "2.31.0", "2.32.0", "MEDIUM"),
    ("CVE-2024-3651", "idna", "3.6", "3.7", "MEDIUM"),
    ("CVE-2023-45803", "urllib3", "2.0.6", "2.0.7", "MEDIUM"),
    ("CVE-2024-21626", "runc", "1.1.9", "1.1.12", "HIGH"),
    ("CVE-2021-44228", "log4j-core", "2.14.1", "2.15.0", "CRITICAL"),
    ("CVE-2022-22965", "spring-beans", "5.3.17", "5.3.18", "CRITICAL"),
    ("CVE-2024-22259", "spring-web", "6.1.4", "6.1.5", "HIGH"),
    ("CVE-2024-27983", "nodejs", "20.11.1", "20.12.1", "HIGH"),
    ("CVE-2024-22019", "nodejs", "20.11.0", "20.11.1", "HIGH"),
    ("CVE-2023-46809", "nodejs", "20.11.0", "20.11.1", "MEDIUM"),
    ("CVE-2024-24790", "stdlib", "go1.22.3", "go1.22.4", "CRITICAL"),
    ("CVE-2023-45288", "golang.org/x/net", "0.17.0", "0.23.0", "MEDIUM"),
    ("CVE-2023-50868", "libunbound8", "1.17.1", "1.17.1-2+deb12u2", "HIGH"),
    ("CVE-2023-4641", "shadow", "1:4.13", "", "LOW"),
    ("CVE-2022-3219", "gnupg2", "2.2.40-1.1", "", "LOW"),
    ("CVE-2011-3374", "apt", "2.6.1", "", "LOW"),
    ("CVE-2013-4392", "systemd", "252.22-1", "", "INFORMATIONAL"),
    ("CVE-2023-31484", "perl", "5.36.0-7", "5.36.0-7+deb12u1", "HIGH"),
    ("CVE-2005-2541", "tar", "1.34", "", "INFORMATIONAL"),
    ("CVE-2024-28182", "nghttp2", "1.52.0-1", "1.52.0-1+deb12u2", "MEDIUM"),
    ("CVE-2023-52425", "expat", "2.5.0-1", "2.5.0-1+deb12u1", "HIGH"),
    ("CVE-2024-45490", "expat", "2.5.0-1", "2.5.0-1+deb12u1", "CRITICAL"),
    ("CVE-2023-7104", "sqlite3", "3.40.1-2", "3.40.1-2+deb12u1", "HIGH"),
    ("CVE-2022-0563", "util-linux", "2.38.1", "", "LOW"),
    ("CVE-2024-33602", "glibc", "2.36-9", "2.36-9+deb12u7", "UNDEFINED"),
]

TEAMS = {
    "payments": ["api", "worker", "ledger", "fraud-check", "webhooks", "sandbox"],
    "orders": ["api", "web", "fulfilment", "returns", "notifier"],
    "identity": ["auth", "directory", "mfa", "session-cleaner"],
    "search": ["indexer", "query", "crawler", "suggest"],
    "ml": ["inference", "training-launcher", "feature-store"],
    "platform": ["ingress", "metrics-gateway", "config-server", "cron-runner", "log-shipper"],
    "legacy": ["batch", "reporting", "ftp-bridge", "mailer", "sandbox"],
}


def digest_of(text: str) -> str:
    """A deterministic sha256 digest for a demo image."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FleetInfo:
    """What was seeded, for the demo's printout and for tests."""

    endpoint: str
    region: str
    families: list[str] = field(default_factory=list)
    repositories: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # repo:tag -> digest
    findings: dict[str, list[str]] = field(default_factory=dict)  # repo:tag -> vulnerability ids
    never_scanned: list[str] = field(default_factory=list)
    bucket: str = REPORT_BUCKET
    running: dict[str, str] = field(default_factory=dict)  # image of a running demo task -> its digest
    inspector: InspectorEmulator | None = None  # the ENHANCED region's emulated Inspector

    @property
    def hooks(self) -> list[Any]:
        """AwsClients hooks the demo's run needs (the Inspector emulation), if any."""
        return [self.inspector.attach] if self.inspector is not None else []


def _registry(region: str) -> str:
    return f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com"


def _finding(cve: tuple[str, str, str, str, str]) -> dict[str, Any]:
    vid, pkg, installed, _fixed, sev = cve
    return {
        "name": vid,
        "description": f"{vid} in {pkg} {installed}.",
        "uri": f"https://nvd.nist.gov/vuln/detail/{vid}",
        "severity": sev,
        "attributes": [
            {"key": "package_name", "value": pkg},
            {"key": "package_version", "value": installed},
        ],
    }


class _Seeder:
    def __init__(self, endpoint: str, region: str, seed: int) -> None:
        kw: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": region,
            "aws_access_key_id": "demo",
            "aws_secret_access_key": "demo",
        }
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self.ecs = boto3.client("ecs", **kw)
        self.ecr = boto3.client("ecr", **kw)
        self.s3 = boto3.client("s3", **kw)
        self.kw = kw
        self.rng = random.Random(seed)  # noqa: S311 -- a reproducible demo, not security
        self.info = FleetInfo(endpoint=endpoint, region=region)
        self.scan_results: list[dict[str, Any]] = []

    def repo(self, name: str) -> None:
        if name not in self.info.repositories:
            self.ecr.create_repository(
                repositoryName=name, tags=[{"Key": "team", "Value": name.split("/", maxsplit=1)[0]}]
            )
            self.info.repositories.append(name)

    def image(
        self, repo: str, tag: str, findings: list[tuple[str, str, str, str, str]] | None, scanned: bool = True
    ) -> str:
        self.repo(repo)
        digest = digest_of(f"{repo}:{tag}")
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": digest},
                "layers": [],
            }
        )
        self.ecr.put_image(
            repositoryName=repo,
            imageManifest=manifest,
            imageTag=tag,
            imageDigest=digest,
            imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
        )
        self.info.images[f"{repo}:{tag}"] = digest
        if findings is not None:
            if scanned:  # scanned on push, as ECR's scan-on-push would have done
                self.ecr.start_image_scan(repositoryName=repo, imageId={"imageDigest": digest})
            else:
                self.info.never_scanned.append(f"{repo}:{tag}")
            counts: dict[str, int] = {}
            for f in findings:
                counts[f[4]] = counts.get(f[4], 0) + 1
            self.scan_results.append(
                {
                    "registryId": ACCOUNT,
                    "repositoryName": repo,
                    "imageId": {"imageDigest": digest},
                    "imageScanStatus": {
                        "status": "COMPLETE",
                        "description": "The scan was completed successfully.",
                    },
                    "imageScanFindings": {
                        "imageScanCompletedAt": "2026-11-27T03:00:00Z",
                        "findings": [_finding(f) for f in findings],
                        "findingSeverityCounts": counts,
                    },
                }
            )
            self.info.findings[f"{repo}:{tag}"] = [f[0] for f in findings]
        return f"{_registry(self.region)}/{repo}:{tag}"

    def pick_findings(self, n: int) -> list[tuple[str, str, str, str, str]]:
        return self.rng.sample(CVE_CATALOG, n)

    def flush_scan_results(self) -> None:
        body = json.dumps({"results": self.scan_results, "region": self.region}).encode()
        req = urllib.request.Request(  # noqa: S310 -- the local emulator's own admin endpoint
            f"{self.endpoint}/moto-api/static/ecr/scan-finding-results",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            resp.read()


def task_digest_hook(running: dict[str, str]) -> Callable[[Any], None]:
    """An AwsClients hook: moto's DescribeTasks answers gain the `imageDigest` each demo task runs.

    ECS records the digest a container pulled; moto does not. Every changed answer is validated
    against botocore's DescribeTasks output shape, so the emulation sends nothing AWS would not.
    """

    def add_digests(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        for task in parsed.get("tasks", []):
            for c in task.get("containers", []):
                if c.get("image") in running:
                    c["imageDigest"] = running[c["image"]]
        body = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
        report = ParamValidator().validate(body, model.output_shape)
        if report.has_errors():
            raise AssertionError(report.generate_report())

    def hook(client: Any) -> None:
        if client.meta.service_model.service_name == "ecs":
            client.meta.events.register("after-call.ecs.DescribeTasks", add_digests)

    return hook


def _running_view(s: _Seeder) -> None:
    """A cluster `prod`: one service runs a digest its tag no longer points at, one runs the current."""
    registry = _registry(s.region)
    s.ecs.create_cluster(clusterName="prod")
    # orders/checkout:v2.4.1 was built with a critical OpenSSH and a critical curl, deployed, then
    # rebuilt on a patched base image and pushed under the same tag; nobody redeployed the service.
    vulnerable = [c for c in CVE_CATALOG if c[0] in ("CVE-2024-6387", "CVE-2023-38545", "CVE-2024-5535")]
    s.image("orders/checkout", "v2.4.1-build.7", vulnerable)
    old = s.info.images["orders/checkout:v2.4.1-build.7"]
    image = s.image("orders/checkout", "v2.4.1", [])  # the rebuilt, clean digest the tag points at now
    out = s.ecs.register_task_definition(
        family="orders-checkout",
        containerDefinitions=[{"name": "app", "image": image, "essential": True, "memory": 512}],
        tags=[{"key": "team", "value": "orders"}, {"key": "service", "value": "checkout"}],
    )
    s.info.families.append("orders-checkout")
    s.ecs.run_task(
        cluster="prod",
        taskDefinition=out["taskDefinition"]["taskDefinitionArn"],
        count=4,
        launchType="FARGATE",
        group="service:orders-checkout",
    )
    s.info.running[image] = old
    # payments-api runs the digest its tag points at: a running view without drift.
    api = f"{registry}/payments/api:v1.3.0"
    arn = s.ecs.describe_task_definition(taskDefinition="payments-api")["taskDefinition"]["taskDefinitionArn"]
    s.ecs.run_task(
        cluster="prod", taskDefinition=arn, count=2, launchType="FARGATE", group="service:payments-api"
    )
    s.info.running[api] = s.info.images["payments/api:v1.3.0"]
    s.info.running[f"{registry}/platform/fluent-bit:2.2.0"] = s.info.images["platform/fluent-bit:2.2.0"]
    s.info.running[f"{registry}/platform/db-migrate:1.4.2"] = s.info.images["platform/db-migrate:1.4.2"]


def _enhanced(s: _Seeder, region: str | None) -> None:
    """The ENHANCED part in `region` (demo/enhanced.py), its Inspector emulated; None: none."""
    if region is None:
        return
    from ecs_scan_operator.demo.enhanced import SERVICES, seed_enhanced

    s.info.inspector = seed_enhanced(s.kw, ACCOUNT, region, digest_of)
    s.info.families += list(SERVICES)
    s.info.repositories += [repo for repo, *_ in SERVICES.values()]


def seed_fleet(
    endpoint_url: str,
    *,
    region: str = "us-east-1",
    seed: int = 20261128,
    running: bool = False,
    enhanced_region: str | None = None,
) -> FleetInfo:
    """Seed the demo fleet into the moto server at `endpoint_url`; returns what was made.

    `running`: also the running view's story (a cluster with tasks, one service with drift).
    `enhanced_region`: also seed the ENHANCED part there (demo/enhanced.py).
    """
    s = _Seeder(endpoint_url, region, seed)
    _enhanced(s, enhanced_region)
    s.s3.create_bucket(Bucket=REPORT_BUCKET)
    # Shared sidecars and init containers, in ECR.
    fluent = s.image("platform/fluent-bit", "2.2.0", s.pick_findings(3))
    migrate = s.image("platform/db-migrate", "1.4.2", [])  # clean
    nginx_cache = s.image("docker-hub/library/nginx", "1.27", s.pick_findings(5))  # pull-through cache path
    envoy_public = "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.4.0-prod"
    datadog = "datadog/agent:7"
    for team, services in sorted(TEAMS.items()):
        for svc in services:
            family = f"{team}-{svc}"
            repo = f"{team}/{svc}"
            revisions = 3 if svc != "sandbox" else 1
            for rev in range(1, revisions + 1):
                tag = f"v1.{rev}.0"
                newest = rev == revisions
                n = 0 if (not newest or svc in ("notifier", "suggest", "mfa")) else s.rng.randint(1, 12)
                findings = s.pick_findings(n) if newest else []
                # One image was pushed after scanning stopped: the run starts its scan once.
                scanned = not (newest and family == "search-crawler")
                app = s.image(repo, tag, findings, scanned=scanned)
                containers = [{"name": "app", "image": app, "essential": True, "memory": 512}]
                if team != "legacy":
                    containers.append(
                        {"name": "log-router", "image": fluent, "essential": False, "memory": 64}
                    )
                if svc in ("api", "auth", "query", "inference"):
                    containers.append(
                        {"name": "db-migrate", "image": migrate, "essential": False, "memory": 64}
                    )
                if team == "platform" and svc == "ingress":
                    containers.append(
                        {"name": "nginx", "image": nginx_cache, "essential": True, "memory": 128}
                    )
                    containers.append(
                        {"name": "envoy", "image": envoy_public, "essential": True, "memory": 128}
                    )
                if team == "ml":
                    containers.append(
                        {"name": "datadog", "image": datadog, "essential": False, "memory": 128}
                    )
                if family == "orders-returns" and newest:
                    # A tag that was deleted from ECR (lifecycle policy) while the task definition kept it.
                    containers[0]["image"] = f"{_registry(region)}/{repo}:v0.9.9-deleted"
                if family == "identity-directory" and newest:
                    containers.append(
                        {
                            "name": "ldap-proxy",
                            "image": "ghcr.io/acme/ldap-proxy:3.1",
                            "essential": False,
                            "memory": 64,
                        }
                    )
                if family == "legacy-mailer" and newest:
                    containers[0]["image"] = "Legacy/Mailer:latest"  # uppercase: not a valid reference
                s.ecs.register_task_definition(
                    family=family,
                    containerDefinitions=containers,  # type: ignore[arg-type]
                    tags=[{"key": "team", "value": team}, {"key": "service", "value": svc}],
                )
            if family == "payments-ledger":
                # A newest revision that was deregistered: the latest ACTIVE one is revision 3.
                bad = s.image(repo, "v2.0.0-rc1", s.pick_findings(2))
                out = s.ecs.register_task_definition(
                    family=family,
                    containerDefinitions=[{"name": "app", "image": bad, "essential": True, "memory": 512}],
                )
                s.ecs.deregister_task_definition(taskDefinition=out["taskDefinition"]["taskDefinitionArn"])
            s.info.families.append(family)
    if running:
        _running_view(s)
    s.flush_scan_results()
    return s.info
