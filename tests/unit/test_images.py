"""Image references as users write them in task definitions."""

from __future__ import annotations

import pytest

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import RefKind

D = "sha256:" + "a" * 64
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"

CASES = [
    # raw, kind, repository, tag, digest, account, region
    (f"{ECR}/app:1.2", RefKind.ECR, "app", "1.2", None, "123456789012", "eu-west-1"),
    (f"{ECR}/team/nested/app", RefKind.ECR, "team/nested/app", "latest", None, "123456789012", "eu-west-1"),
    (f"{ECR}/app@{D}", RefKind.ECR, "app", None, D, "123456789012", "eu-west-1"),
    (f"{ECR}/app:1.2@{D}", RefKind.ECR, "app", "1.2", D, "123456789012", "eu-west-1"),
    (
        f"{ECR}/docker-hub/library/nginx:1.27",
        RefKind.ECR,
        "docker-hub/library/nginx",
        "1.27",
        None,
        "123456789012",
        "eu-west-1",
    ),
    (
        "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app:v1",
        RefKind.ECR,
        "app",
        "v1",
        None,
        "123456789012",
        "us-gov-west-1",
    ),
    (
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app:v1",
        RefKind.ECR,
        "app",
        "v1",
        None,
        "123456789012",
        "cn-north-1",
    ),
    ("nginx", RefKind.DOCKER_HUB, "library/nginx", "latest", None, None, None),
    ("nginx:1.27", RefKind.DOCKER_HUB, "library/nginx", "1.27", None, None, None),
    ("library/nginx", RefKind.DOCKER_HUB, "library/nginx", "latest", None, None, None),
    ("docker.io/datadog/agent:7", RefKind.DOCKER_HUB, "datadog/agent", "7", None, None, None),
    ("public.ecr.aws/nginx/nginx:1.27", RefKind.ECR_PUBLIC, "nginx/nginx", "1.27", None, None, None),
    ("ghcr.io/acme/tool:3", RefKind.OTHER, "acme/tool", "3", None, None, None),
    ("localhost:5000/app:dev", RefKind.OTHER, "app", "dev", None, None, None),
    ("registry.example.com:8443/a/b", RefKind.OTHER, "a/b", "latest", None, None, None),
]


@pytest.mark.parametrize(("raw", "kind", "repo", "tag", "digest", "account", "region"), CASES)
def test_parse(
    raw: str,
    kind: RefKind,
    repo: str,
    tag: str | None,
    digest: str | None,
    account: str | None,
    region: str | None,
) -> None:
    ref = parse_image(raw)
    assert (ref.kind, ref.repository, ref.tag, ref.digest, ref.account, ref.region) == (
        kind,
        repo,
        tag,
        digest,
        account,
        region,
    )
    assert ref.scannable == (kind is RefKind.ECR)
    if not ref.scannable:
        assert ref.reason


MALFORMED = [
    ("", "empty"),
    ("   ", "empty"),
    ("Payments/API:latest", "not a valid repository"),
    ("app:bad tag", "whitespace"),
    ("app:-x", "not a valid tag"),
    (f"{ECR}/app@sha256:xyz", "digest"),
    ("app\x00", "control"),
    ("a" * 2000, "longer than"),
    ("app//x:1", "not a valid repository"),
]


@pytest.mark.parametrize(("raw", "why"), MALFORMED)
def test_malformed_is_reported_never_raised(raw: str, why: str) -> None:
    ref = parse_image(raw)
    assert ref.kind is RefKind.MALFORMED
    assert why in ref.reason
