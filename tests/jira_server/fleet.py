"""Builders for Jira tests: ImageResults with findings, policies with a jira section, requests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import Finding, ImageResult, ImageStatus, ImageUse, ScanType, Severity
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec, parse_spec
from ecs_scan_operator.core.tickets import TicketRequest

ACCOUNT = "123456789012"
REGION = "eu-west-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
POLICY = PolicyRef(namespace="payments", name="prod-scan")

F = tuple[str, str, str]  # (vulnerability id, package, severity)


def finding(vid: str, package: str = "openssl", severity: str = "HIGH", fixed: str = "3.0.15") -> Finding:
    """One finding with a plausible installed -> fixed version."""
    return Finding(
        vulnerability_id=vid,
        severity=Severity(severity),
        package=package,
        installed_version="3.0.1",
        fixed_version=fixed,
        url="",
        title=f"{vid} in {package}",
    )


def image(
    repo: str,
    tag: str = "1.0",
    findings: Iterable[F] = (),
    *,
    families: Sequence[tuple[str, str]] = (("web", "app"),),
    status: ImageStatus = ImageStatus.SCANNED,
    digest: str | None = None,
    td_tags: Mapping[str, str] | None = None,
    repository_tags: Mapping[str, str] | None = None,
) -> ImageResult:
    """A private ECR image used by `families` [(family, container)], with findings."""
    ref = parse_image(f"{REGISTRY}/{repo}:{tag}")
    uses = [
        ImageUse(fam, 3, container, f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{fam}:3", REGION)
        for fam, container in families
    ]
    d = digest or "sha256:" + (repo.replace("/", "0") + tag).encode().hex().ljust(64, "0")[:64]
    return ImageResult(
        ref=ref,
        uses=uses,
        status=status,
        digest=d,
        scan_type=ScanType.ENHANCED,
        findings=[finding(v, p, s) for v, p, s in findings] if status is ImageStatus.SCANNED else [],
        td_tags=dict(td_tags or {}),
        repository_tags=dict(repository_tags or {}),
    )


def spec(
    jira: Mapping[str, Any] | None = None, *, dry_run: bool = False, threshold: str = "MEDIUM"
) -> PolicySpec:
    """A valid policy spec with the given jira section (url filled in by callers)."""
    doc: dict[str, Any] = {
        "schedule": "0 6 * * *",
        "aws": {"region": REGION},
        "report": {"s3": {"bucket": "ecs-scan-reports"}},
        "severityThreshold": threshold,
        "dryRun": dry_run,
    }
    if jira is not None:
        doc["jira"] = {"credentialsSecret": "jira-creds", "project": "SEC", **jira}
    return parse_spec(doc)


def request(
    policy_spec: PolicySpec,
    images: Sequence[ImageResult],
    now: datetime,
    run_id: str = "run-1",
    *,
    policy: PolicyRef = POLICY,
    dry_run: bool = False,
    inventory_complete: bool = True,
) -> TicketRequest:
    """A TicketRequest as the pipeline builds it (report links per image)."""
    prefix = f"s3://ecs-scan-reports/ecs-scan/{now:%Y-%m-%d}/{policy.namespace}/{policy.name}/{run_id}"
    return TicketRequest(
        policy=policy,
        spec=policy_spec,
        images=list(images),
        run_id=run_id,
        now=now,
        report_links={i.ref.display: f"{prefix}/images/{i.ref.repository}/{i.ref.tag}.json" for i in images},
        run_log_link=f"{prefix}/run.log.jsonl",
        index_link=f"{prefix}/index.html",
        dry_run=dry_run,
        inventory_complete=inventory_complete,
    )
