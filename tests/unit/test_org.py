"""Multi-account policies: the spec, the grants' per-account decision, routes, counts, the fan-out."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from ecs_scan_operator.core.grants import Allowed, Grant, GrantSpec, Refused, check
from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import Account, ImageResult, ImageUse
from ecs_scan_operator.core.policy import PolicyRef, RouteMatch, parse_spec
from ecs_scan_operator.core.report import render_csv, render_html
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.core.tickets.grouping import route_matches
from ecs_scan_operator.errors import AuthError, ErrorCause, InvalidPolicy, ScanError
from ecs_scan_operator.pipeline import run_policy
from ecs_scan_operator.ports import FanOut, Ports
from tests.support.fakes import FakeDigests, FakeFindings, FakeImageSource, FixedClock, MemorySink

A, B, C = "111111111111", "222222222222", "333333333333"
PATTERN = "arn:aws:iam::{account}:role/ecs-scan-read"
ORG_ROLE = "arn:aws:iam::999999999999:role/org-read"
REF = PolicyRef(namespace="team-a", name="org")


def spec(aws: dict[str, Any], **over: Any) -> Any:
    doc: dict[str, Any] = {
        "schedule": "@daily",
        "aws": {"regions": ["eu-west-1", "us-east-1"], **aws},
        "report": {"s3": {"bucket": "reports"}},
    }
    return parse_spec(doc | over)


# --------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    "aws",
    [
        {"accounts": [A, B], "roleArnPattern": PATTERN},
        {
            "accounts": [A],
            "roleArnPattern": PATTERN,
            "externalId": "ext-1",
            "inspectorAdminRoleArn": ORG_ROLE,
        },
        {"organization": {"roleArn": ORG_ROLE}, "roleArnPattern": PATTERN},
        {
            "organization": {
                "roleArn": ORG_ROLE,
                "parents": ["ou-ab12-34567890", "r-ab12"],
                "includeAccounts": [A, B],
                "excludeAccounts": [B],
            },
            "roleArnPattern": "arn:aws-us-gov:iam::{account}:role/path/scan",
        },
        {"roleArn": ORG_ROLE, "inspectorAdminRoleArn": ORG_ROLE},
    ],
)
def test_valid_multi_account_forms(aws: dict[str, Any]) -> None:
    parsed = spec(aws)
    if parsed.aws.multi_account:
        assert parsed.aws.account_role(A) == parsed.aws.role_arn_pattern.replace("{account}", A)


@pytest.mark.parametrize(
    ("aws", "field", "words"),
    [
        ({"accounts": ["12345"], "roleArnPattern": PATTERN}, "spec.aws.accounts[0]", "12 digits"),
        ({"accounts": [A, A], "roleArnPattern": PATTERN}, "spec.aws.accounts", "more than once"),
        ({"accounts": [], "roleArnPattern": PATTERN}, "spec.aws.accounts", "at least 1"),
        ({"accounts": [A]}, "spec.aws", "roleArnPattern"),
        ({"roleArnPattern": PATTERN}, "spec.aws", "roleArnPattern"),
        (
            {"accounts": [A], "roleArnPattern": "arn:aws:iam::111111111111:role/x"},
            "spec.aws.roleArnPattern",
            "{account}",
        ),
        (
            {"accounts": [A], "roleArnPattern": "arn:aws:s3:::{account}"},
            "spec.aws.roleArnPattern",
            "role ARN",
        ),
        ({"accounts": [A], "roleArnPattern": PATTERN, "roleArn": ORG_ROLE}, "spec.aws", "at most one"),
        (
            {"accounts": [A], "organization": {"roleArn": ORG_ROLE}, "roleArnPattern": PATTERN},
            "spec.aws",
            "at most one",
        ),
        (
            {"organization": {"roleArn": ORG_ROLE, "parents": ["ou-x"]}, "roleArnPattern": PATTERN},
            "spec.aws.organization.parents[0]",
            "organizational unit",
        ),
        (
            {"organization": {"roleArn": ORG_ROLE, "excludeAccounts": ["x"]}, "roleArnPattern": PATTERN},
            "spec.aws.organization.excludeAccounts[0]",
            "12 digits",
        ),
        (
            {"organization": {"parents": ["r-ab12"]}, "roleArnPattern": PATTERN},
            "spec.aws.organization.roleArn",
            "missing",
        ),
        (
            {"inspectorAdminRoleArn": "nope", "roleArn": ORG_ROLE},
            "spec.aws.inspectorAdminRoleArn",
            "role ARN",
        ),
    ],
)
def test_invalid_forms_name_the_field(aws: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidPolicy) as err:
        spec(aws)
    paths = {e.path: e.reason for e in err.value.errors}
    assert field in paths, paths
    assert words in paths[field]


def test_organization_keeps_include_then_exclude() -> None:
    org = spec(
        {
            "organization": {"roleArn": ORG_ROLE, "includeAccounts": [A, B], "excludeAccounts": [B]},
            "roleArnPattern": PATTERN,
        }
    ).aws.organization
    assert [a for a in (A, B, C) if org.keeps(a)] == [A]


# --------------------------------------------------------------------------- grants


def grant(**aws: Any) -> Grant:
    return Grant(
        "org-grant",
        GrantSpec.model_validate(
            {
                "namespaces": {"names": ["team-a"]},
                "aws": {"regions": ["*"], **aws},
                "reports": [{"bucket": "reports"}],
            }
        ),
    )


ORG_SPEC = spec(
    {
        "organization": {"roleArn": ORG_ROLE, "parents": ["ou-ab12-34567890"]},
        "roleArnPattern": PATTERN,
        "inspectorAdminRoleArn": "arn:aws:iam::888888888888:role/i2",
    }
)
FULL = {
    "accounts": ["1111*", B],
    "roleArns": ["arn:aws:iam::*:role/ecs-scan-read", ORG_ROLE, "arn:aws:iam::888888888888:role/i2"],
    "organizationalUnits": ["ou-ab12-*"],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"accounts": []}, "spec.aws.organization"),
        (
            {"roleArns": ["arn:aws:iam::*:role/ecs-scan-read", "arn:aws:iam::888888888888:role/i2"]},
            "spec.aws.organization.roleArn",
        ),
        ({"organizationalUnits": ["ou-zz99-*"]}, "spec.aws.organization.parents[0]"),
        ({"roleArns": ["arn:aws:iam::*:role/ecs-scan-read", ORG_ROLE]}, "spec.aws.inspectorAdminRoleArn"),
    ],
)
def test_a_grant_refuses_what_it_does_not_give_naming_the_field(change: dict[str, Any], field: str) -> None:
    decision = check(REF, {}, ORG_SPEC, [grant(**(FULL | change))])
    assert isinstance(decision, Refused) and decision.field == field


def test_the_whole_organization_needs_the_star_ou() -> None:
    whole = spec({"organization": {"roleArn": ORG_ROLE}, "roleArnPattern": PATTERN})
    refused = check(REF, {}, whole, [grant(**FULL)])
    assert isinstance(refused, Refused) and refused.field == "spec.aws.organization.parents"
    assert isinstance(check(REF, {}, whole, [grant(**(FULL | {"organizationalUnits": ["*"]}))]), Allowed)


def test_the_allowing_grant_hands_its_account_scope_to_the_run() -> None:
    decision = check(REF, {}, ORG_SPEC, [grant(**FULL)])
    assert isinstance(decision, Allowed) and decision.accounts is not None
    scope = decision.accounts
    assert scope.refusal(A, PATTERN.format(account=A)) is None
    assert scope.refusal(B, PATTERN.format(account=B)) is None
    assert "not in aws.accounts of ScanAccessGrant org-grant" in (
        scope.refusal(C, PATTERN.format(account=C)) or ""
    )
    assert "not in aws.roleArns" in (scope.refusal(A, "arn:aws:iam::111111111111:role/admin") or "")
    # one-account policies carry none
    one = spec({"roleArn": ORG_ROLE})
    assert check(REF, {}, one, [grant(**FULL)]) == Allowed(
        grant="org-grant", accounts=None, notify_destinations=()
    )


# --------------------------------------------------------------------------- routes, counts, report


def image(*uses: tuple[str, str]) -> ImageResult:
    img = ImageResult(ref=parse_image(f"{A}.dkr.ecr.eu-west-1.amazonaws.com/app:1"))
    img.uses = [ImageUse("svc", 1, "app", "arn", region, account=acct) for acct, region in uses]
    return img


@pytest.mark.parametrize(
    ("match", "uses", "hit"),
    [
        ({"accounts": [A]}, [(A, "eu-west-1")], True),
        ({"accounts": ["2222*"]}, [(A, "eu-west-1"), (B, "us-east-1")], True),
        ({"accounts": [C]}, [(A, "eu-west-1")], False),
        ({"regions": ["eu-*"]}, [(A, "eu-west-1")], True),
        ({"regions": ["us-east-1"]}, [(A, "eu-west-1")], False),
        ({"accounts": [A], "regions": ["us-*"]}, [(A, "eu-west-1"), (B, "us-east-1")], True),  # any use, each
        ({"accounts": [A], "families": ["other"]}, [(A, "eu-west-1")], False),  # AND
        ({"accounts": [A]}, [("", "eu-west-1")], False),  # a one-account policy knows no account
    ],
)
def test_routes_match_accounts_and_regions(
    match: dict[str, Any], uses: list[tuple[str, str]], hit: bool
) -> None:
    assert route_matches(RouteMatch.model_validate(match), image(*uses)) is hit


def test_per_account_counts_are_bounded_top_ten_plus_other() -> None:
    result = RunResult(run_id="r", policy="p", started=FixedClock().now())
    images = []
    for i in range(15):
        for _ in range(i + 1):  # account i uses i+1 images
            images.append(image((f"{i:012d}", "eu-west-1")))
    result.add_images(images)
    shown = result.to_dict()["imagesByAccount"]
    assert len(shown) == 11 and shown["other"] == 1 + 2 + 3 + 4 + 5
    assert list(shown)[:2] == [f"{14:012d}", f"{13:012d}"]
    assert sum(shown.values()) == len(images)
    one = RunResult(run_id="r", policy="p", started=FixedClock().now())
    one.add_images([image(("", "eu-west-1"))])
    assert "imagesByAccount" not in one.to_dict()  # one-account policies: no such key


def test_report_shows_the_account_with_its_name() -> None:
    img = image((A, "eu-west-1"), (B, "us-east-1"))
    csv = render_csv([img], {A: "payments"})
    assert csv.splitlines()[0].endswith('"accounts"')
    assert f'"{A} (payments), {B}"' in csv.splitlines()[1]
    result = RunResult(run_id="r", policy="p", started=FixedClock().now())
    html = render_html([img], result, {}, [], {A: "payments <prod>"})
    assert "<th" in html and "Account" in html and f"{A} (payments &lt;prod&gt;)" in html
    plain = render_csv([image(("", "eu-west-1"))])
    assert "accounts" not in plain.splitlines()[0]


# --------------------------------------------------------------------------- the fan-out over fakes


FLEET = {"svc-a": [("app", f"{A}.dkr.ecr.eu-west-1.amazonaws.com/app:1")]}


def org_ports(src: FakeImageSource, refusal: Any = None) -> Ports:
    return Ports(
        images=src,
        digests=FakeDigests(),
        findings=FakeFindings(by_repo={}),
        reports=MemorySink(),
        account_refusal=refusal,
        fanout=FanOut(workers_per_target=2, max_concurrency=4),
    )


def _denied(account: str) -> ScanError:
    err = AuthError("sts:AssumeRole: AccessDenied: not authorized")
    err.cause = ErrorCause("sts", "AssumeRole", "AccessDenied")
    return err


@pytest.mark.parametrize(
    "failure",
    [
        _denied(B),
        ScanError("ecs listing in eu-west-1: UnrecognizedClientException: region not enabled"),
    ],
)
def test_one_failing_account_is_its_own_stage_failure_the_rest_completes(failure: ScanError) -> None:
    src = FakeImageSource(FLEET, fail_accounts={B: failure})
    policy = spec({"accounts": [A, B, C], "roleArnPattern": PATTERN})
    result = run_policy(REF, policy, org_ports(src), FixedClock())
    assert result.outcome is Outcome.PARTIAL
    assert sorted(result.stage_failures) == [
        f"taskDefinitions[{B}/eu-west-1]",
        f"taskDefinitions[{B}/us-east-1]",
    ]
    assert sorted(src.asked) == sorted((a, r) for a in (A, B, C) for r in ("eu-west-1", "us-east-1"))
    assert result.task_definitions == 4  # A and C, both regions
    if failure.cause is not None:
        assert result.error_causes == Counter({f"sts:AssumeRole AccessDenied (account {B})": 2})


def test_a_refused_account_is_reported_and_never_read() -> None:
    src = FakeImageSource(FLEET)
    policy = spec({"accounts": [A, C], "roleArnPattern": PATTERN})
    result = run_policy(
        REF, policy, org_ports(src, lambda a: "not granted" if a == C else None), FixedClock()
    )
    assert result.outcome is Outcome.PARTIAL
    assert result.stage_failures == {f"accounts[{C}]": "AccessNotGranted: not granted"}
    assert {a for a, _ in src.asked} == {A}
    assert result.error_causes == Counter({f"sts:AssumeRole AccessNotGranted (account {C})": 1})


def test_an_organization_that_cannot_be_read_fails_the_accounts_stage() -> None:
    class Broken:
        def accounts(self, org: Any, region: str) -> list[Account]:
            raise AuthError("organizations:ListAccounts: AccessDeniedException")

    src = FakeImageSource(FLEET)
    ports = org_ports(src)
    ports.accounts = Broken()
    result = run_policy(
        REF, spec({"organization": {"roleArn": ORG_ROLE}, "roleArnPattern": PATTERN}), ports, FixedClock()
    )
    assert result.outcome is Outcome.PARTIAL and "accounts" in result.stage_failures
    assert src.asked == []


def test_uses_carry_the_account_and_images_dedupe_across_accounts() -> None:
    shared = f"{C}.dkr.ecr.eu-west-1.amazonaws.com/base:1"
    src = FakeImageSource({}, by_account={A: {"svc-a": [("b", shared)]}, B: {"svc-b": [("b", shared)]}})
    policy = spec({"accounts": [A, B], "roleArnPattern": PATTERN})
    sink = MemorySink()
    ports = org_ports(src)
    ports.reports = sink
    result = run_policy(REF, policy, ports, FixedClock())
    assert result.outcome is Outcome.SUCCEEDED
    index = next(v for k, v in sink.objects.items() if k.endswith("index.json"))

    images = json.loads(index)["images"]
    assert len(images) == 1 and images[0]["image"] == shared
    assert images[0]["accounts"] == [{"id": A, "name": ""}, {"id": B, "name": ""}]


@pytest.mark.parametrize("name", ["scanpolicy-organization.yaml", "scanpolicy-accounts.yaml"])
def test_the_examples_are_valid_and_granted(name: str) -> None:
    from pathlib import Path

    from ecs_scan_operator.cli import main

    examples = Path(__file__).resolve().parents[2] / "examples"
    assert (
        main(["validate", "-f", str(examples / name), "--grants", str(examples / "scanaccessgrants.yaml")])
        == 0
    )


# --------------------------------------------------------------------------- clients and fan-out


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.mark.usefixtures("env")
def test_clients_refuse_an_account_the_grant_does_not_give_before_any_call() -> None:
    from ecs_scan_operator.adapters.aws_session import AwsClients
    from ecs_scan_operator.core.grants import AccountScope

    scope = AccountScope("g", (A,), ("arn:aws:iam::*:role/ecs-scan-read",))
    clients = AwsClients(role_arn_pattern=PATTERN, account_scope=scope)
    assert clients.account_role(A) == PATTERN.format(account=A)
    with pytest.raises(AuthError) as err:
        clients.workload("ecs", "eu-west-1", C)
    assert err.value.cause == ErrorCause("sts", "AssumeRole", "AccessNotGranted", C)
    assert str(err.value.cause) == f"sts:AssumeRole AccessNotGranted (account {C})"
    assert clients.counter.by_operation() == {}


@pytest.mark.usefixtures("env")
def test_registry_role_is_used_in_its_own_account_the_account_role_elsewhere() -> None:
    from ecs_scan_operator.adapters.aws_session import AwsClients

    central = f"arn:aws:iam::{B}:role/ecr-read"
    clients = AwsClients(role_arn_pattern=PATTERN, registry_role_arn=central)
    assert clients.registry("ecr", "eu-west-1", account=B) is clients.with_role("ecr", "eu-west-1", central)
    a = clients.registry("ecr", "eu-west-1", account=A)
    assert a is clients.workload("ecr", "eu-west-1", A) and a is not clients.registry(
        "ecr", "eu-west-1", account=B
    )
    # one client per (service, region, role): separate rate-limit domains get separate clients
    assert clients.workload("ecs", "eu-west-1", A) is not clients.workload("ecs", "us-east-1", A)


@pytest.mark.usefixtures("env")
def test_clients_past_the_cap_go_least_recently_used_first_and_are_made_again() -> None:
    """A multi-account run keeps the clients of the pairs it is reading, not of every pair it read."""
    from ecs_scan_operator.adapters.aws_session import AwsClients

    accounts = [f"{n:012d}" for n in range(1, 9)]
    clients = AwsClients(role_arn_pattern=PATTERN, max_clients=4)
    first = {a: clients.workload("ecs", "eu-west-1", a) for a in accounts[:4]}
    assert clients.workload("ecs", "eu-west-1", accounts[0]) is first[accounts[0]]  # now the newest
    for a in accounts[4:7]:
        clients.workload("ecs", "eu-west-1", a)
    # kept: accounts[0] (used again) and the three newest; accounts[1..3] went, oldest first
    assert clients.workload("ecs", "eu-west-1", accounts[0]) is first[accounts[0]]
    again = clients.workload("ecs", "eu-west-1", accounts[1])
    assert again is not first[accounts[1]] and again.meta.region_name == "eu-west-1"
    assert len(clients._clients) == 4 and len(clients._sessions) <= 2
    unbounded = AwsClients(role_arn_pattern=PATTERN)
    made = [unbounded.workload("ecs", "eu-west-1", a) for a in accounts]
    assert all(unbounded.workload("ecs", "eu-west-1", a) is c for a, c in zip(accounts, made, strict=True))


@pytest.mark.parametrize(
    ("per", "cap", "at_once"), [(4, 64, 16), (8, 8, 1), (8, 4, 1), (2, 256, 128), (1, 1, 1)]
)
def test_pairs_at_once_fit_the_global_cap(per: int, cap: int, at_once: int) -> None:
    fan = FanOut(workers_per_target=per, max_concurrency=cap)
    assert fan.targets_at_once == at_once
    assert fan.targets_at_once * per <= max(cap, per)  # one pair runs even when the cap is below its workers


def test_the_client_cap_follows_the_pairs_read_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from ecs_scan_operator.bootstrap import client_cap

    monkeypatch.setenv("ECS_SCAN_AWS_MAX_CONCURRENCY", "64")
    monkeypatch.setenv("ECS_SCAN_AWS_WORKERS_PER_ACCOUNT_REGION", "4")
    assert client_cap(spec({"accounts": [A, B], "roleArnPattern": PATTERN})) == 4 * 16 + 32
    assert client_cap(spec({})) is None  # one account: a handful of clients
