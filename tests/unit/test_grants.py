"""ScanAccessGrant: the grant model and the pure decision `check()` (table tests)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ecs_scan_operator import crd as generator
from ecs_scan_operator.core.grants import (
    _PATTERN_RE,
    Allowed,
    Grant,
    GrantSpec,
    Refused,
    check,
    matches,
    parse_grant,
    pattern_regex,
    role_session,
)
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.errors import InvalidPolicy

ROLE_A = "arn:aws:iam::111111111111:role/scan-team-a"
ROLE_B = "arn:aws:iam::222222222222:role/scan-team-b"


def grant(name: str, **spec: Any) -> Grant:
    return Grant(name, GrantSpec.model_validate(spec))


TEAM_A = grant(
    "team-a",
    namespaces={"names": ["team-a"]},
    aws={
        "roleArns": [ROLE_A],
        "registryRoleArns": ["arn:aws:iam::333333333333:role/ecr-*"],
        "regions": ["eu-*", "us-east-1"],
        "externalIdSecretRef": {"namespace": "ops", "name": "team-a-ext"},
    },
    reports=[
        {"bucket": "reports-team-a", "prefix": "scans/*"},
        {"bucket": "shared-reports", "prefix": "team-a", "kmsKey": "alias/team-a"},
    ],
    jira={"urls": ["https://a.atlassian.net", "http://10.0.0.5:8080"], "allowPrivateHosts": ["10.0.0.5"]},
    notifications={"destinations": ["https://hooks.slack.com/services/TA/", "*.webhook.office.com"]},
)
TEAM_B = grant(
    "team-b",
    namespaces={"selector": {"matchLabels": {"team": "b"}}},
    aws={"roleArns": [ROLE_B], "regions": ["us-west-2"], "allowOperatorIdentity": True},
    reports=[{"bucket": "reports-team-b"}],
    jira={"urls": ["https://b.atlassian.net"]},
)
GRANTS = [TEAM_A, TEAM_B]


def spec(
    role: str | None = ROLE_A,
    region: str = "eu-west-1",
    bucket: str = "reports-team-a",
    prefix: str = "scans/daily",
    **more: Any,
) -> Any:
    aws: dict[str, Any] = {"region": region}
    if role:
        aws["roleArn"] = role
    aws.update(more.pop("aws", {}))
    s3: dict[str, Any] = {"bucket": bucket, "prefix": prefix, **more.pop("s3", {})}
    return parse_spec({"schedule": "@daily", "aws": aws, "report": {"s3": s3}, **more})


def jira(url: str) -> dict[str, Any]:
    return {"jira": {"url": url, "credentialsSecret": "jira", "project": "SEC"}}


A = PolicyRef(namespace="team-a", name="p")
B = PolicyRef(namespace="team-b", name="p")


@pytest.mark.parametrize(
    ("ref", "labels", "policy", "field", "granted"),
    [
        # nobody selects the namespace
        (PolicyRef(namespace="team-c"), {}, spec(), "metadata.namespace", ()),
        # another team's role, bucket, region
        (A, {}, spec(role=ROLE_B), "spec.aws.roleArn", (ROLE_A,)),
        (A, {}, spec(bucket="reports-team-b"), "spec.report.s3.bucket", ("reports-team-a", "shared-reports")),
        (A, {}, spec(region="us-west-2"), "spec.aws.region", ("eu-*", "us-east-1")),
        (
            A,
            {},
            spec(aws={"region": None, "regions": ["eu-west-1", "ap-south-1"]}),
            "spec.aws.regions[1]",
            None,
        ),
        # source: awsConfig reaches the aggregator's region too
        (
            A,
            {},
            spec(
                taskDefinitions={
                    "source": "awsConfig",
                    "configAggregator": {"name": "org", "region": "us-west-2"},
                }
            ),
            "spec.taskDefinitions.configAggregator.region",
            ("eu-*", "us-east-1"),
        ),
        # the operator's own identity is not granted to team-a
        (A, {}, spec(role=None), "spec.aws.roleArn", (ROLE_A,)),
        # a registry role outside the pattern; the pattern is anchored
        (
            A,
            {},
            spec(aws={"registryRoleArn": "arn:aws:iam::444444444444:role/ecr-x"}),
            "spec.aws.registryRoleArn",
            None,
        ),
        # the grant supplies the external ID: the tenant may not set it
        (A, {}, spec(aws={"externalId": "chosen-by-tenant"}), "spec.aws.externalId", ()),
        # prefix outside the granted one (a granted bucket, another team's folder)
        (A, {}, spec(prefix="other"), "spec.report.s3.prefix", ("scans/*",)),
        # KMS: required where the destination names one, refused where it does not
        (A, {}, spec(bucket="shared-reports", prefix="team-a"), "spec.report.s3.kmsKeyId", None),
        (A, {}, spec(s3={"kmsKeyId": "alias/other"}), "spec.report.s3.kmsKeyId", None),
        (
            A,
            {},
            spec(bucket="shared-reports", prefix="team-a", s3={"kmsKeyId": "alias/b"}),
            "spec.report.s3.kmsKeyId",
            None,
        ),
        # Jira: exact site only (no prefix trick, no subdomain trick)
        (A, {}, spec(**jira("https://b.atlassian.net")), "spec.jira.url", None),
        (A, {}, spec(**jira("https://a.atlassian.net.evil.com")), "spec.jira.url", None),
        (A, {}, spec(**jira("https://a.atlassian.net/../x")), "spec.jira.url", None),
        # label selector: wrong label value
        (
            B,
            {"team": "a"},
            spec(role=ROLE_B, region="us-west-2", bucket="reports-team-b"),
            "metadata.namespace",
            (),
        ),
    ],
)
def test_refused_names_the_field_and_what_is_granted(
    ref: PolicyRef, labels: dict[str, str], policy: Any, field: str, granted: tuple[str, ...] | None
) -> None:
    decision = check(ref, labels, policy, GRANTS)
    assert isinstance(decision, Refused), decision
    assert decision.field == field
    if granted is not None:
        assert decision.granted == granted
    assert decision.field in decision.message


@pytest.mark.parametrize(
    ("ref", "labels", "policy", "grant_name"),
    [
        (A, {}, spec(), "team-a"),
        (A, {}, spec(region="us-east-1", prefix="/scans/x/"), "team-a"),
        (
            A,
            {},
            spec(
                taskDefinitions={
                    "source": "awsConfig",
                    "configAggregator": {"name": "org", "region": "us-east-1"},
                }
            ),
            "team-a",
        ),
        (A, {}, spec(aws={"registryRoleArn": "arn:aws:iam::333333333333:role/ecr-read"}), "team-a"),
        (A, {}, spec(bucket="shared-reports", prefix="team-a", s3={"kmsKeyId": "alias/team-a"}), "team-a"),
        (A, {}, spec(**jira("https://a.atlassian.net/")), "team-a"),
        (A, {}, spec(**jira("http://10.0.0.5:8080")), "team-a"),
        # by label; the operator identity is granted to team-b
        (B, {"team": "b"}, spec(role=None, region="us-west-2", bucket="reports-team-b"), "team-b"),
        (
            B,
            {"team": "b"},
            spec(role=ROLE_B, region="us-west-2", bucket="reports-team-b", prefix="x"),
            "team-b",
        ),
        (
            B,
            {"team": "b"},
            spec(role=ROLE_B, region="us-west-2", bucket="reports-team-b", **jira("https://b.atlassian.net")),
            "team-b",
        ),
    ],
)
def test_allowed_names_the_grant(
    ref: PolicyRef, labels: dict[str, str], policy: Any, grant_name: str
) -> None:
    decision = check(ref, labels, policy, GRANTS)
    granting = next(g for g in GRANTS if g.name == grant_name)
    assert decision == Allowed(
        grant=grant_name,
        external_id_secret=granting.spec.aws.external_id_secret_ref,
        jira_private_hosts=tuple(granting.spec.jira.allow_private_hosts),
        notify_destinations=tuple(granting.spec.notifications.destinations),
    )


def test_a_private_jira_host_needs_allow_private_hosts_in_the_same_grant() -> None:
    no_private = grant(
        "lab",
        namespaces={"names": ["team-a"]},
        aws={"roleArns": [ROLE_A], "regions": ["*"]},
        reports=[{"bucket": "*"}],
        jira={
            "urls": ["http://127.0.0.1:8080", "http://169.254.169.254", "http://[::1]:80", "http://localhost"]
        },
    )
    for url in ("http://127.0.0.1:8080", "http://169.254.169.254", "http://[::1]:80", "http://localhost"):
        decision = check(A, {}, spec(**jira(url)), [no_private])
        assert isinstance(decision, Refused) and "jira.allowPrivateHosts" in decision.reason, url


def test_one_grant_must_allow_everything_not_a_union() -> None:
    roles_only = grant(
        "roles", namespaces={"names": ["team-a"]}, aws={"roleArns": [ROLE_A], "regions": ["*"]}
    )
    buckets_only = grant(
        "buckets", namespaces={"names": ["team-a"]}, aws={"regions": ["*"]}, reports=[{"bucket": "*"}]
    )
    decision = check(A, {}, spec(), [roles_only, buckets_only])
    assert isinstance(decision, Refused) and decision.field == "spec.report.s3.bucket"
    # and what is granted is read from the grants still in the running (those granting the role)
    assert decision.granted == ()


def test_of_several_grants_the_first_by_name_that_allows_supplies_the_external_id() -> None:
    ext = {"namespace": "ops", "name": "x"}
    g1 = grant(
        "z",
        namespaces={"names": ["team-a"]},
        aws={"roleArns": ["*"], "regions": ["*"]},
        reports=[{"bucket": "*"}],
    )
    g2 = grant(
        "a",
        namespaces={"names": ["team-a"]},
        aws={"roleArns": [ROLE_A], "regions": ["*"], "externalIdSecretRef": ext},
        reports=[{"bucket": "*"}],
    )
    decision = check(A, {}, spec(), [g1, g2])
    assert isinstance(decision, Allowed) and decision.grant == "a"
    assert decision.external_id_secret is not None and decision.external_id_secret.name == "x"


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({"matchLabels": {"t": "a"}}, {"t": "a", "x": "y"}, True),
        ({"matchLabels": {"t": "a"}}, {"t": "b"}, False),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]}, {"t": "b"}, True),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]}, {"t": "a"}, False),
        ({"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {"t": ""}, True),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {"t": ""}, False),
        (
            {"matchLabels": {"t": "a"}, "matchExpressions": [{"key": "u", "operator": "Exists"}]},
            {"t": "a"},
            False,
        ),
        # an empty selector selects nothing (not every namespace)
        ({}, {"t": "a"}, False),
    ],
)
def test_namespace_selector_semantics(
    selector: dict[str, Any], labels: dict[str, str], selected: bool
) -> None:
    g = grant(
        "g",
        namespaces={"selector": selector},
        aws={"roleArns": ["*"], "regions": ["*"]},
        reports=[{"bucket": "*"}],
    )
    assert isinstance(check(A, labels, spec(), [g]), Allowed) is selected


@pytest.mark.parametrize(
    ("pattern", "value", "matched"),
    [
        ("a.b", "a.b", True),
        ("a.b", "axb", False),  # '.' is literal
        ("a+b", "a+b", True),
        ("a+b", "aab", False),  # '+' is literal
        ("(x)", "(x)", True),
        ("team-*", "team-a/b", True),  # * crosses '/'
        ("team-*", "xteam-a", False),  # anchored
        ("*", "", True),
    ],
)
def test_patterns_are_literal_but_for_star(pattern: str, value: str, matched: bool) -> None:
    assert matches(pattern, value) is matched
    assert pattern_regex(pattern).startswith("^") and pattern_regex(pattern).endswith("$")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"namespaces": {"names": ["Team_A"]}}, "spec.namespaces.names"),
        ({"namespaces": {}, "aws": {"roleArns": ["arn:aws:iam::1:role/[x]"]}}, "spec.aws.roleArns[0]"),
        ({"namespaces": {}, "aws": {"regions": ["eu-?"]}}, "spec.aws.regions[0]"),
        ({"namespaces": {}, "jira": {"urls": ["https://*.atlassian.net"]}}, "spec.jira.urls[0]"),
        ({"namespaces": {}, "jira": {"urls": ["https://u:p@x.net"]}}, "spec.jira.urls[0]"),
        ({"namespaces": {}, "jira": {"urls": ["https://x.net/"]}}, "spec.jira.urls[0]"),
        ({"namespaces": {}, "reports": [{"bucket": "b", "prefix": "/x"}]}, "spec.reports[0].prefix"),
        ({"namespaces": {}, "reports": [{"prefix": "x"}]}, "spec.reports[0].bucket"),
        ({"namespaces": {}, "bogus": 1}, "spec.bogus"),
        ({}, "spec.namespaces"),
    ],
)
def test_parse_grant_names_the_bad_field(doc: dict[str, Any], field: str) -> None:
    manifest = {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanAccessGrant",
        "metadata": {"name": "g"},
        "spec": doc,
    }
    with pytest.raises(InvalidPolicy) as info:
        parse_grant(manifest)
    assert any(e.path.startswith(field) for e in info.value.errors), info.value.errors


def test_parse_grant_checks_the_envelope() -> None:
    with pytest.raises(InvalidPolicy) as info:
        parse_grant({"apiVersion": "v1", "kind": "ScanPolicy", "metadata": {}, "spec": {"namespaces": {}}})
    assert {e.path for e in info.value.errors} == {"apiVersion", "kind", "metadata.name"}


# --------------------------------------------------------------------------- the generated CRD

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path",
    [
        ROOT / "crds" / generator.GRANT_FILE_NAME,
        ROOT / "helm/ecs-scan-operator/crds" / generator.GRANT_FILE_NAME,
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_committed_grant_crd_is_the_generated_one(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == generator.render_grants(), f"{path}: run `make crds`"


def test_the_grant_crd_is_cluster_scoped_with_the_patterns_the_model_checks() -> None:
    doc = generator.grant_crd()
    assert doc["spec"]["scope"] == "Cluster"
    version = doc["spec"]["versions"][0]
    assert "subresources" not in version  # a grant has no status: nobody but admins writes it
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    roles = spec["properties"]["aws"]["properties"]["roleArns"]["items"]
    assert roles["pattern"] == _PATTERN_RE.pattern
    assert spec["required"] == ["namespaces"]
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Namespaces", "Roles", "Buckets"}


def test_make_crds_picks_the_crd_by_file_name(tmp_path: Path) -> None:
    grants, policies = tmp_path / generator.GRANT_FILE_NAME, tmp_path / generator.FILE_NAME
    assert generator.main([str(grants), str(policies)]) == 0
    assert grants.read_text(encoding="utf-8") == generator.render_grants()
    assert policies.read_text(encoding="utf-8") == generator.render()


# --------------------------------------------------------------------------- identity at STS

STS_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{2,64}$")


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("team-a", "nightly"),
        ("a" * 63, "p"),
        ("ns", "x" * 253),
        ("a" * 63, "b.c" * 80),
    ],
)
def test_role_session_names_fit_sts(namespace: str, name: str) -> None:
    session = role_session(PolicyRef(namespace=namespace, name=name))
    assert STS_NAME.match(session.name) and STS_NAME.match(session.source_identity)
    full = f"ecsscan-{namespace}-{name}"
    if len(full) <= 64:
        assert session.name == full
    else:
        assert len(session.name) == 64 and session.name.startswith(full[:55])
    assert session.tags == {"ecsscan-namespace": namespace, "ecsscan-policy": name}
    assert all(len(v) <= 256 for v in session.tags.values())  # STS's limit on a tag value


def test_long_names_sharing_a_prefix_get_different_session_names() -> None:
    one = role_session(PolicyRef(namespace="team-a", name="x" * 70 + "1"))
    two = role_session(PolicyRef(namespace="team-a", name="x" * 70 + "2"))
    assert one.name != two.name and one.name[:55] == two.name[:55]


def test_the_allowing_grant_hands_its_private_jira_hosts_to_the_run() -> None:
    # team-a's grant allows its private Jira; the run's destination check learns it from here.
    allowed = check(A, {"team": "a"}, spec(**jira("http://10.0.0.5:8080")), GRANTS)
    assert isinstance(allowed, Allowed) and allowed.jira_private_hosts == ("10.0.0.5",)
    public = check(B, {"team": "b"}, spec(role=ROLE_B, region="us-west-2", bucket="reports-team-b"), GRANTS)
    assert isinstance(public, Allowed) and public.jira_private_hosts == ()


NOTIFY: dict[str, Any] = {"notify": [{"name": "chat", "type": "slack", "secret": "chat-hook"}]}


def test_notifications_need_a_grant_that_lists_destinations() -> None:
    # The URL is in a Secret the operator reads when sending; at plan time a grant without any
    # destination already refuses the policy, naming the entry.
    policy_b = spec(role=ROLE_B, region="us-west-2", bucket="reports-team-b", **NOTIFY)
    refused = check(B, {"team": "b"}, policy_b, GRANTS)
    assert isinstance(refused, Refused) and refused.field == "spec.notify[0]"
    assert "destination chat" in refused.reason and refused.granted == ()
    allowed = check(A, {"team": "a"}, spec(**NOTIFY), GRANTS)
    assert isinstance(allowed, Allowed)
    assert allowed.notify_destinations == ("https://hooks.slack.com/services/TA/", "*.webhook.office.com")


@pytest.mark.parametrize(
    "entry",
    [
        "https://hooks.slack.com/services/T1?x=1",  # a query is no prefix
        "https://user@hooks.slack.com/",  # credentials
        "javascript:alert(1)",
        "hooks slack com",
        "https://hooks.slack.com/a b",
        "ftp://hooks.slack.com/",
        "hooks.slack.com/x",  # a path needs the scheme
    ],
)
def test_a_notification_destination_entry_is_a_url_prefix_or_a_host_pattern(entry: str) -> None:
    with pytest.raises(ValueError, match="destinations"):
        GrantSpec.model_validate({"namespaces": {"names": ["a"]}, "notifications": {"destinations": [entry]}})


@pytest.mark.parametrize("pattern", ["role", "arn:aws:iam::1:role/*", "*", "eu-*"])
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\n\n", "\nx"])
def test_grant_patterns_match_the_whole_value_never_up_to_a_line_break(pattern: str, suffix: str) -> None:
    # re.match with "$" would accept "role\n": every pattern form, every line-break tail.
    value = pattern.replace("*", "x")
    assert matches(pattern, value)
    assert not matches(pattern, value + suffix)


@pytest.mark.parametrize(
    ("account", "patterns", "allowed"),
    [
        (None, [], True),  # the default Job ServiceAccount needs no grant
        ("scanner", [], False),
        ("scanner", ["scanner"], True),
        ("scanner-x", ["scanner"], False),
        ("ecs-scan-nightly", ["ecs-scan-*"], True),
        ("default", ["ecs-scan-*"], False),
    ],
)
def test_a_policy_may_name_only_the_service_accounts_its_grant_allows(
    account: str | None, patterns: list[str], allowed: bool
) -> None:
    g = grant(
        "team-a-jobs",
        namespaces={"names": ["team-a"]},
        aws={"roleArns": [ROLE_A], "regions": ["eu-*"]},
        reports=[{"bucket": "reports-team-a"}],
        serviceAccountNames=patterns,
    )
    extra = {"serviceAccountName": account} if account else {}
    decision = check(A, {}, spec(**extra), [g])
    if allowed:
        assert isinstance(decision, Allowed)
        return
    assert isinstance(decision, Refused) and decision.field == "spec.serviceAccountName"
    assert f"ServiceAccount {account} is not granted" in decision.message
    assert decision.granted == tuple(patterns)


def test_a_service_account_name_that_is_not_a_kubernetes_name_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidPolicy) as caught:
        spec(serviceAccountName="Not_A/Name")
    assert [e.path for e in caught.value.errors] == ["spec.serviceAccountName"]
