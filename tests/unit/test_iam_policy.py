"""docs/iam-policy.json grants exactly the AWS actions the adapters can call.

The AWS operations are collected statically: every attribute name in
`operator/ecs_scan_operator/adapters/*.py` that is an operation of a service the module
creates clients for (a service name passed as a call argument, e.g. `clients.registry("ecr", ...)`,
or the service the module is named after), plus `get_paginator("...")` names and calls that
reach AWS indirectly (role assumption, S3 transfers). botocore's service models turn the
snake_case names into API operations and give the IAM prefix; S3 operations map onto IAM
actions through a table, because S3 names its actions differently.

The test fails when an operation is missing from the policy, and when the policy grants an
action that nothing calls (except the few that AWS requires implicitly, listed with the reason).
"""

from __future__ import annotations

import ast
import functools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ROOT / "operator" / "ecs_scan_operator" / "adapters"
POLICY = ROOT / "docs" / "iam-policy.json"

#: Modules that talk to AWS, and the service each is about (used when a module gets its client
#: from elsewhere without naming the service).
MODULE_SERVICE = {
    "ecs.py": "ecs",
    "aws_config.py": "config",
    "ecr.py": "ecr",
    "inspector.py": "inspector2",
    "s3_report.py": "s3",
    "aws_session.py": "sts",
    "organizations.py": "organizations",
}

#: Names that reach AWS without calling a client method of the same name.
INDIRECT = {
    # botocore's assume-role provider calls sts:AssumeRole when the credentials (re)load.
    "AssumeRoleCredentialFetcher": ("sts", ["AssumeRole"]),
    "AssumeRoleProvider": ("sts", ["AssumeRole"]),
    # boto3's S3 transfer manager: PutObject, or a multipart upload for large bodies.
    "upload_file": ("s3", ["PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"]),
    "upload_fileobj": ("s3", ["PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"]),
    "download_file": ("s3", ["HeadObject", "GetObject"]),
    "download_fileobj": ("s3", ["HeadObject", "GetObject"]),
}

#: S3 API operation -> IAM action (S3 does not name its actions after its operations).
S3_ACTIONS = {
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "CopyObject": "s3:PutObject",
    "PutObjectTagging": "s3:PutObjectTagging",
    "GetObjectTagging": "s3:GetObjectTagging",
    "GetBucketLocation": "s3:GetBucketLocation",
}

#: Operations that need no IAM permission at all.
FREE = {"sts:GetCallerIdentity"}

#: Actions AWS checks on the operator's behalf although no adapter calls them; each with why.
IMPLICIT = {
    "kms:GenerateDataKey": "S3 asks KMS for a data key on PutObject with SSE-KMS (spec.report.s3.kmsKeyId)",
    "kms:Decrypt": "S3 asks KMS to decrypt on GetObject of an SSE-KMS object (the state object)",
    "s3:ListBucket": (
        "without it S3 answers GetObject of a missing key with 403 AccessDenied instead of 404, "
        "so the first run (no state object yet) would fail"
    ),
}

#: Client methods that are not API operations.
CLIENT_META = {"get_paginator", "can_paginate", "get_waiter", "close", "generate_presigned_url"}


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def _operations(service: str) -> dict[str, str]:
    """snake_case method name -> API operation name, from botocore's service model."""
    model = _session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


@functools.cache
def _iam_prefix(service: str) -> str:
    model = _session().get_service_model(service)
    return str(model.signing_name or model.endpoint_prefix)


def _iam_action(service: str, operation: str) -> str:
    if service == "s3":
        if operation not in S3_ACTIONS:
            pytest.fail(f"S3 operation {operation} has no IAM action in S3_ACTIONS; add it (see the S3 docs)")
        return S3_ACTIONS[operation]
    return f"{_iam_prefix(service)}:{operation}"


def _services_named(tree: ast.AST, available: set[str]) -> set[str]:
    """Service names passed as string arguments of calls (client factories)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            args = [*node.args, *(kw.value for kw in node.keywords)]
            for arg in args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value in available:
                    out.add(arg.value)
    return out


def collect_calls(adapters: Path = ADAPTERS) -> dict[str, set[str]]:
    """IAM action -> the modules that can call it."""
    available = set(_session().get_available_services())
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(adapters.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        services = _services_named(tree, available)
        own = MODULE_SERVICE.get(path.name)
        if own:
            services.add(own)
        names: set[str] = set()
        paginators: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Name):
                names.add(node.id)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get_paginator"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                paginators.add(str(node.args[0].value))
        for name in sorted(names | paginators):
            if name in INDIRECT:
                service, ops = INDIRECT[name]
                for op in ops:
                    found[_iam_action(service, op)].add(path.name)
                continue
            if name in CLIENT_META or name.startswith("_"):
                continue
            owners = [s for s in sorted(services) if name in _operations(s)]
            if len(owners) > 1 and own in owners:
                owners = [own]  # e.g. list_tags_for_resource exists in ecs and ecr alike
            for service in owners:
                found[_iam_action(service, _operations(service)[name])].add(path.name)
    for action in FREE:
        found.pop(action, None)
    return dict(found)


def _load_policy() -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(POLICY.read_text())
    return policy


def granted_actions(policy: dict[str, Any]) -> set[str]:
    """Every action an Allow statement of the policy grants."""
    out: set[str] = set()
    for stmt in policy["Statement"]:
        actions = stmt["Action"]
        out.update([actions] if isinstance(actions, str) else actions)
    return out


@pytest.fixture(scope="module")
def called() -> dict[str, set[str]]:
    present = [name for name in MODULE_SERVICE if (ADAPTERS / name).exists()]
    if not present:
        where = ADAPTERS.relative_to(ROOT)
        pytest.skip(f"no AWS adapter module in {where} yet (looked for {sorted(MODULE_SERVICE)})")
    return collect_calls()


def test_policy_is_well_formed() -> None:
    """Version, Sids, Allow only, no wildcard actions; scoped resources where IAM supports them."""
    policy = _load_policy()
    assert policy["Version"] == "2012-10-17"
    sids = [s.get("Sid") for s in policy["Statement"]]
    assert all(sids), "every statement needs a Sid (docs/iam.md refers to them)"
    assert len(set(sids)) == len(sids), f"duplicate Sids: {sids}"
    for stmt in policy["Statement"]:
        assert stmt["Effect"] == "Allow", stmt["Sid"]
        actions = [stmt["Action"]] if isinstance(stmt["Action"], str) else stmt["Action"]
        assert actions == sorted(actions), f"{stmt['Sid']}: keep actions sorted"
        assert not [a for a in actions if "*" in a], f"{stmt['Sid']}: no wildcard actions"
        assert "NotAction" not in stmt and "NotResource" not in stmt, stmt["Sid"]
        resources = [stmt["Resource"]] if isinstance(stmt["Resource"], str) else stmt["Resource"]
        if any(a.split(":")[0] in ("s3", "sts", "kms") for a in actions):
            assert "*" not in resources, f"{stmt['Sid']}: S3, STS and KMS actions must name their resources"


def test_policy_actions_exist() -> None:
    """No typos: every granted action is an operation of botocore's model (or a known S3/implicit one)."""
    for action in sorted(granted_actions(_load_policy())):
        prefix, name = action.split(":", 1)
        if prefix == "s3":
            assert action in set(S3_ACTIONS.values()) | set(IMPLICIT), action
            continue
        assert prefix in ("config", "ecr", "ecs", "inspector2", "organizations", "sts", "kms"), (
            f"{action}: unknown service {prefix}"
        )
        service = prefix  # for these services the IAM prefix is the botocore service name
        assert name in _operations(service).values(), f"{action}: not an operation of {service}"


def test_every_called_operation_is_granted(called: dict[str, set[str]]) -> None:
    """An adapter call the policy forgets fails in production with AccessDenied."""
    granted = granted_actions(_load_policy())
    missing = {a: sorted(m) for a, m in called.items() if a not in granted}
    assert not missing, f"add to docs/iam-policy.json (and docs/iam.md): {missing}"


def test_nothing_granted_that_is_never_called(called: dict[str, set[str]]) -> None:
    """Least privilege: every granted action is called by an adapter or implicitly required."""
    extra = sorted(granted_actions(_load_policy()) - set(called) - set(IMPLICIT))
    assert not extra, f"granted but never called by operator/ecs_scan_operator/adapters: {extra}"


def test_collector_sees_through_the_usual_shapes(tmp_path: Path) -> None:
    """The scanner finds bound-method references, paginators and indirect calls, not unrelated names."""
    (tmp_path / "ecr.py").write_text(
        "def f(clients, region):\n"
        "    ecr = clients.registry('ecr', region)\n"
        "    pages(ecr.describe_images, 'imageDetails')\n"
        "    ecr.get_paginator('describe_image_scan_findings')\n"
        "    ecr.list_tags_for_resource(resourceArn='x')\n"
        "    {}.get('x'); [].append(1)\n"
    )
    (tmp_path / "aws_session.py").write_text(
        "from botocore.credentials import AssumeRoleCredentialFetcher\n"
        "def g(s):\n    s.client('sts').get_caller_identity()\n    return AssumeRoleCredentialFetcher\n"
    )
    (tmp_path / "s3_report.py").write_text("def h(s3):\n    s3.upload_fileobj(b, 'b', 'k')\n")
    assert collect_calls(tmp_path) == {
        "ecr:DescribeImages": {"ecr.py"},
        "ecr:DescribeImageScanFindings": {"ecr.py"},
        "ecr:ListTagsForResource": {"ecr.py"},
        "sts:AssumeRole": {"aws_session.py"},
        "s3:PutObject": {"s3_report.py"},
    }
