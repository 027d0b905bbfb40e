"""One policy over an AWS Organization, against moto's server over real HTTP.

moto serves Organizations (the organization, nested OUs, accounts, a closed account) and every
account ID: its STS lets any role be assumed, and the credentials it returns are bound to the
role's account, so each account has its own ECS, ECR and S3 in moto. What moto cannot do - refuse
an AssumeRole - is injected at the wire: a `before-send` handler on the operator's base botocore
session answers AssumeRole of the denied account's role with STS's own 403 AccessDenied XML,
which botocore parses as it would AWS's answer (the role is never assumed, nothing else of the
run is faked).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from ecs_scan_operator.adapters.aws_session import AwsClients, core_session
from ecs_scan_operator.bootstrap import build_ports
from ecs_scan_operator.core.grants import AccountScope
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome
from ecs_scan_operator.pipeline import run_policy
from tests.support.fakes import FixedClock

pytestmark = pytest.mark.integration
REGIONS = ("us-east-1", "eu-west-1")
PATTERN = "arn:aws:iam::{account}:role/ecs-scan-read"
ORG_ROLE = "arn:aws:iam::123456789012:role/org-read"  # moto's default account is the management one
MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
)
REF = PolicyRef(namespace="sec", name="org")


def _as(account: str, service: Any, region: str) -> Any:
    """A client in `account`, through moto's STS (the way the operator reaches it)."""
    creds = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=PATTERN.format(account=account), RoleSessionName="seed"
    )["Credentials"]
    return boto3.client(
        service,
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _seed_account(account: str, families: int = 2) -> None:
    """An ECR repository (us-east-1) with one image, and task definitions using it in both regions."""
    ecr = _as(account, "ecr", "us-east-1")
    ecr.create_repository(repositoryName="app")
    digest = "sha256:" + account[-1] * 64
    ecr.put_image(repositoryName="app", imageManifest=MANIFEST, imageTag="v1", imageDigest=digest)
    image = f"{account}.dkr.ecr.us-east-1.amazonaws.com/app:v1"
    for region in REGIONS:
        ecs = _as(account, "ecs", region)
        for i in range(families):
            ecs.register_task_definition(
                family=f"svc-{i}", containerDefinitions=[{"name": "app", "image": image, "memory": 64}]
            )


def _account(org: Any, name: str, parent: str, root: str) -> str:
    status = org.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]
    account = str(
        org.describe_create_account_status(CreateAccountRequestId=status["Id"])["CreateAccountStatus"][
            "AccountId"
        ]
    )
    if parent != root:
        org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=parent)
    return account


@pytest.fixture
def org(aws: str) -> Iterator[dict[str, str]]:
    """OU prod (OU team nested in it): accounts a, c (denies), e (closed), b (in team); d in the root."""
    client = boto3.client("organizations", region_name="us-east-1")
    client.create_organization(FeatureSet="ALL")
    root = client.list_roots()["Roots"][0]["Id"]
    prod = client.create_organizational_unit(ParentId=root, Name="prod")["OrganizationalUnit"]["Id"]
    team = client.create_organizational_unit(ParentId=prod, Name="team")["OrganizationalUnit"]["Id"]
    ids = {
        "a": _account(client, "payments-prod", prod, root),
        "b": _account(client, "orders-prod", team, root),
        "c": _account(client, "legacy-prod", prod, root),
        "d": _account(client, "sandbox", root, root),
        "e": _account(client, "closed-prod", prod, root),
        "root": root,
        "prod": prod,
    }
    for key in ("a", "b", "c", "d", "e"):
        _seed_account(ids[key])
    client.close_account(AccountId=ids["e"])  # SUSPENDED: its role cannot be used, it is not scanned
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="org-reports")
    yield ids


def _denying_clients(denied: str, scope: AccountScope | None = None, **kw: Any) -> AwsClients:
    """AwsClients whose STS refuses the role of account `denied`, as AWS answers (403 AccessDenied)."""
    base = boto3.Session(botocore_session=core_session())
    role = PATTERN.format(account=denied)

    def deny(request: Any, **_: Any) -> AWSResponse | None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        if "Action=AssumeRole" in body and role.replace(":", "%3A").replace("/", "%2F") in body:
            xml = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                "<Code>AccessDenied</Code>"
                f"<Message>not authorized to perform: sts:AssumeRole on {role}</Message>"
                "</Error><RequestId>r-1</RequestId></ErrorResponse>"
            )
            return AWSResponse(request.url, 403, HTTPHeaders(), _Raw(xml.encode()))
        return None

    base._session.register("before-send.sts.AssumeRole", cast(Any, deny))
    return AwsClients(base_session=base, role_arn_pattern=PATTERN, account_scope=scope, **kw)


class _Raw:
    """The raw body botocore reads from an AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _spec(aws: dict[str, Any]) -> Any:
    return parse_spec(
        {
            "schedule": "@daily",
            "aws": {"regions": list(REGIONS), "roleArnPattern": PATTERN, **aws},
            "report": {"s3": {"bucket": "org-reports", "prefix": "scans"}},
        }
    )


def test_organization_run_over_three_accounts_and_two_regions_one_denying(
    org: dict[str, str], tmp_path: Path
) -> None:
    spec = _spec({"organization": {"roleArn": ORG_ROLE, "parents": [org["prod"]]}})
    clients = _denying_clients(org["c"])
    ports = build_ports(REF, spec, output_dir=tmp_path, clients=clients)
    result = run_policy(REF, spec, ports, FixedClock())

    # Discovery found a, b (nested OU) and c; d (in the root, not under prod) and e (SUSPENDED)
    # are not scanned.
    assert result.outcome is Outcome.PARTIAL
    denied = {k for k in result.stage_failures if org["c"] in k}
    assert denied == {f"taskDefinitions[{org['c']}/{r}]" for r in REGIONS}
    assert all(org["a"] not in k and org["b"] not in k for k in result.stage_failures)
    assert not any(org["e"] in k or org["d"] in k for k in result.stage_failures)
    assert result.error_causes[f"sts:AssumeRole AccessDenied (account {org['c']})"] == 2
    # The others completed: 2 families x 2 regions each, one image per account, scanned (BASIC,
    # per registry account, through that account's role).
    assert result.task_definitions == 8
    index = json.loads(next(tmp_path.rglob("index.json")).read_text())
    images = {i["image"]: i for i in index["images"]}
    assert set(images) == {f"{org[k]}.dkr.ecr.us-east-1.amazonaws.com/app:v1" for k in ("a", "b")}
    for key, name in (("a", "payments-prod"), ("b", "orders-prod")):
        img = images[f"{org[key]}.dkr.ecr.us-east-1.amazonaws.com/app:v1"]
        assert img["accounts"] == [{"id": org[key], "name": name}]
        assert img["status"] == "scanned" and img["scanType"] == "BASIC"
    assert index["result"]["imagesByAccount"] == {org["a"]: 1, org["b"]: 1}
    csv = next(tmp_path.rglob("summary.csv")).read_text()
    assert f"{org['a']} (payments-prod)" in csv.splitlines()[1] + csv.splitlines()[2]
    # Organizations was read through the organization role, recursing into the nested OU.
    calls = result.aws_calls
    assert calls["organizations:ListAccountsForParent"] == 2
    assert calls["organizations:ListOrganizationalUnitsForParent"] == 2


def test_accounts_list_with_a_grant_refusing_one_reports_it(org: dict[str, str], tmp_path: Path) -> None:
    spec = _spec({"accounts": [org["a"], org["b"], org["d"]]})
    scope = AccountScope("team-grant", (org["a"], org["b"]), ("arn:aws:iam::*:role/ecs-scan-read",))
    clients = _denying_clients("000000000000", scope)
    ports = build_ports(REF, spec, output_dir=tmp_path, clients=clients, account_scope=scope)
    result = run_policy(REF, spec, ports, FixedClock())

    assert result.outcome is Outcome.PARTIAL
    assert list(result.stage_failures) == [f"accounts[{org['d']}]"]
    assert "AccessNotGranted" in result.stage_failures[f"accounts[{org['d']}]"]
    assert "team-grant" in result.stage_failures[f"accounts[{org['d']}]"]
    # The refused account's role is never assumed: only a and b were read.
    assert result.task_definitions == 8
    assert not any(
        org["d"] in i
        for i in json.dumps(json.loads(next(tmp_path.rglob("index.json")).read_text())["images"])
    )
