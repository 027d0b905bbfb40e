"""The policy model: valid specs pass; each bad value is refused naming the field and the reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ecs_scan_operator.core.policy import (
    MAX_ECHO,
    MAX_REASON,
    PolicySpec,
    clip_reason,
    normalize_cron,
    parse_document,
    parse_spec,
)
from ecs_scan_operator.errors import InvalidPolicy

BASE: dict[str, Any] = {
    "schedule": "0 6 * * 1-5",
    "aws": {"region": "eu-west-1"},
    "report": {"s3": {"bucket": "scan-reports"}},
}


def spec_with(path: str, value: Any) -> dict[str, Any]:
    """BASE with one dotted path set (creating mappings on the way)."""
    data = copy.deepcopy(BASE)
    node = data
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return data


def test_defaults() -> None:
    spec = parse_spec(BASE)
    assert spec.time_zone == "UTC"
    assert spec.severity_threshold == "MEDIUM"
    assert spec.include_untriaged is True
    assert spec.task_definitions.source.value == "latestRevision"
    assert spec.task_definitions.include == []
    assert spec.report.s3.prefix == "ecs-scan"
    assert spec.dry_run is False and spec.suspend is False
    assert spec.aws.all_regions == ["eu-west-1"]


VALID = [
    ("schedule", "@daily"),
    ("schedule", "*/15 * * * *"),
    ("timeZone", "Asia/Tokyo"),
    ("aws", {"regions": ["eu-west-1", "us-east-1"]}),
    (
        "aws",
        {
            "region": "us-gov-west-1",
            "roleArn": "arn:aws-us-gov:iam::123456789012:role/scan",
            "externalId": "x-1",
        },
    ),
    ("aws.registryRoleArn", "arn:aws:iam::210987654321:role/path/ecr-read"),
    ("taskDefinitions", {"include": ["payments-*", "orders-[ab]*"], "exclude": ["*-sandbox"]}),
    ("taskDefinitions", {"source": "services", "clusters": ["prod-*"]}),
    ("taskDefinitions", {"source": "awsConfig", "configAggregator": {"name": "org-aggregator"}}),
    (
        "taskDefinitions",
        {
            "source": "awsConfig",
            "configAggregator": {"name": "Org_1-x", "region": "us-east-1"},
            "include": ["p-*"],
        },
    ),
    ("severityThreshold", "CRITICAL"),
    ("suppressions", [{"vulnerabilityId": "CVE-2024-1234", "reason": "r", "expires": "2020-01-01"}]),
    (
        "suppressions",
        [
            {
                "vulnerabilityId": "GHSA-abcd-1234-wxyz",
                "images": ["repo/*"],
                "reason": "r",
                "expires": "2099-01-01",
            }
        ],
    ),
    ("report.s3.kmsKeyId", "alias/reports"),
    ("report.s3.kmsKeyId", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
    ("report.s3.prefix", "/a/b/"),
    ("jira", {"url": "https://acme.atlassian.net", "credentialsSecret": "jira", "project": "SEC"}),
    ("dryRun", True),
]


@pytest.mark.parametrize(("path", "value"), VALID)
def test_valid(path: str, value: Any) -> None:
    assert isinstance(parse_spec(spec_with(path, value)), PolicySpec)


INVALID = [
    ("schedule", "61 * * * *", "spec.schedule", "not a valid cron"),
    ("schedule", "* * * *", "spec.schedule", "5 fields"),
    ("schedule", "CRON_TZ=UTC 0 * * * *", "spec.schedule", "timeZone"),
    ("timeZone", "Mars/Olympus", "spec.timeZone", "IANA"),
    ("aws", {"region": "europe"}, "spec.aws.region", "region name"),
    ("aws", {}, "spec.aws", "exactly one of region or regions"),
    ("aws", {"region": "eu-west-1", "regions": ["eu-west-1"]}, "spec.aws", "exactly one"),
    ("aws", {"regions": ["eu-west-1", "eu-west-1"]}, "spec.aws.regions", "more than once"),
    ("aws.roleArn", "arn:aws:iam::12:role/x", "spec.aws.roleArn", "IAM role ARN"),
    ("aws.externalId", "abc", "spec.aws", "only used with roleArn"),
    ("taskDefinitions.include", ["a[b"], "spec.taskDefinitions.include[0]", "without a matching ']'"),
    ("taskDefinitions.include", [""], "spec.taskDefinitions.include[0]", "empty pattern"),
    ("taskDefinitions.exclude", ["x y"], "spec.taskDefinitions.exclude[0]", "characters"),
    ("taskDefinitions.clusters", ["a[b"], "spec.taskDefinitions.clusters[0]", "without a matching ']'"),
    ("taskDefinitions.source", "everything", "spec.taskDefinitions.source", "latestRevision"),
    ("taskDefinitions.source", "everything", "spec.taskDefinitions.source", "awsConfig"),
    (
        "taskDefinitions.source",
        "awsConfig",
        "spec.taskDefinitions",
        "configAggregator is required with source: awsConfig",
    ),
    (
        "taskDefinitions",
        {"configAggregator": {"name": "org"}},
        "spec.taskDefinitions",
        "only used with source: awsConfig",
    ),
    (
        "taskDefinitions",
        {"source": "running", "configAggregator": {"name": "org"}},
        "spec.taskDefinitions",
        "only used with source: awsConfig",
    ),
    (
        "taskDefinitions",
        {"source": "awsConfig", "configAggregator": {"name": "my aggregator"}},
        "spec.taskDefinitions.configAggregator.name",
        "not an AWS Config aggregator name",
    ),
    (
        "taskDefinitions",
        {"source": "awsConfig", "configAggregator": {"name": "a" * 257}},
        "spec.taskDefinitions.configAggregator.name",
        "not an AWS Config aggregator name",
    ),
    (
        "taskDefinitions",
        {"source": "awsConfig", "configAggregator": {}},
        "spec.taskDefinitions.configAggregator.name",
        "required field is missing",
    ),
    (
        "taskDefinitions",
        {"source": "awsConfig", "configAggregator": {"name": "org", "region": "global"}},
        "spec.taskDefinitions.configAggregator.region",
        "region name",
    ),
    (
        "taskDefinitions",
        {"source": "awsConfig", "configAggregator": {"name": "org", "arn": "x"}},
        "spec.taskDefinitions.configAggregator.arn",
        "unknown field",
    ),
    ("severityThreshold", "SEVERE", "spec.severityThreshold", "CRITICAL"),
    ("severityThreshold", "UNTRIAGED", "spec.severityThreshold", "CRITICAL"),
    (
        "suppressions",
        [{"vulnerabilityId": "CVE-1", "expires": "2030-01-01"}],
        "spec.suppressions[0].reason",
        "required",
    ),
    (
        "suppressions",
        [{"vulnerabilityId": "CVE-2024-1", "reason": "r"}],
        "spec.suppressions[0].expires",
        "required",
    ),
    (
        "suppressions",
        [{"vulnerabilityId": "CVE-2024-1", "reason": "", "expires": "2030-01-01"}],
        "spec.suppressions[0].reason",
        "at least 1",
    ),
    (
        "suppressions",
        [{"vulnerabilityId": "!!", "reason": "r", "expires": "2030-01-01"}],
        "spec.suppressions[0].vulnerabilityId",
        "vulnerability id",
    ),
    ("report.s3.bucket", "Bad_Bucket", "spec.report.s3.bucket", "S3 bucket name"),
    ("report.s3.bucket", "192.168.1.1", "spec.report.s3.bucket", "S3 bucket name"),
    ("report.s3.prefix", "a/../b", "spec.report.s3.prefix", "safe key prefix"),
    ("report.s3.kmsKeyId", "my key", "spec.report.s3.kmsKeyId", "KMS"),
    (
        "jira",
        {"url": "ftp://x", "credentialsSecret": "jira", "project": "SEC"},
        "spec.jira.url",
        "http(s) URL",
    ),
    (
        "jira",
        {"url": "https://u:p@x.net", "credentialsSecret": "j", "project": "SEC"},
        "spec.jira.url",
        "credentials",
    ),
    (
        "jira",
        {"url": "https://x.net", "credentialsSecret": "j", "project": "sec"},
        "spec.jira.project",
        "project key",
    ),
    ("bogus", 1, "spec.bogus", "unknown field"),
    ("aws.bogus", 1, "spec.aws.bogus", "unknown field"),
]


@pytest.mark.parametrize(("path", "value", "where", "why"), INVALID)
def test_invalid_names_field_and_reason(path: str, value: Any, where: str, why: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        parse_spec(spec_with(path, value))
    messages = [f"{e.path}: {e.reason}" for e in info.value.errors]
    assert any(m.startswith(where + ":") and why in m for m in messages), messages


def test_every_error_reported_at_once() -> None:
    data = spec_with("schedule", "bad")
    data["severityThreshold"] = "NOPE"
    data["report"] = {"s3": {"bucket": "X"}}
    with pytest.raises(InvalidPolicy) as info:
        parse_spec(data)
    paths = {e.path for e in info.value.errors}
    assert {"spec.schedule", "spec.severityThreshold", "spec.report.s3.bucket"} <= paths


def test_missing_required() -> None:
    with pytest.raises(InvalidPolicy) as info:
        parse_spec({})
    assert {e.path for e in info.value.errors} == {"spec.schedule", "spec.aws", "spec.report"}


def test_manifest_and_bare_spec() -> None:
    ref, spec = parse_document(
        {
            "apiVersion": "ecsscan.io/v1alpha1",
            "kind": "ScanPolicy",
            "metadata": {"name": "nightly", "namespace": "team-a"},
            "spec": BASE,
        }
    )
    assert (ref.namespace, ref.name) == ("team-a", "nightly")
    ref2, spec2 = parse_document(BASE)
    assert ref2.key == "default/policy" and spec2 == spec


def test_manifest_header_errors() -> None:
    with pytest.raises(InvalidPolicy) as info:
        parse_document({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad Name"}, "spec": BASE})
    paths = {e.path for e in info.value.errors}
    assert paths == {"apiVersion", "kind", "metadata.name"}


@pytest.mark.parametrize(("expr", "norm"), [("@hourly", "0 * * * *"), ("0  6 * *  1", "0 6 * * 1")])
def test_normalize_cron(expr: str, norm: str) -> None:
    assert normalize_cron(expr) == norm


def test_wire_round_trip() -> None:
    spec = parse_spec(
        spec_with(
            "jira",
            {
                "url": "https://acme.atlassian.net/",
                "credentialsSecret": "jira",
                "project": "SEC",
                "priorityMap": {"CRITICAL": "Highest"},
            },
        )
    )
    wire = spec.to_wire()
    assert wire["jira"]["credentialsSecret"] == "jira"
    assert wire["jira"]["url"] == "https://acme.atlassian.net"
    assert parse_spec(wire) == spec


HUGE = "Q" * 4_000_000  # a 4 MB value: never echoed whole into a status, an Event or stderr


@pytest.mark.parametrize(
    "path",
    [
        "schedule",
        "timeZone",
        "aws.roleArn",
        "aws.region",
        "report.s3.bucket",
        "report.s3.kmsKeyId",
        "severityThreshold",
        "taskDefinitions.include",
    ],
)
def test_errors_quote_at_most_a_clipped_input(path: str) -> None:
    value: Any = [HUGE] if path == "taskDefinitions.include" else HUGE
    with pytest.raises(InvalidPolicy) as err:
        parse_spec(spec_with(path, value))
    for problem in err.value.errors:
        assert len(problem.reason) <= MAX_REASON + 30 and "Q" * (MAX_ECHO + 1) not in problem.reason
        assert len(problem.path) < 200


def test_a_clipped_value_says_how_long_it_was() -> None:
    with pytest.raises(InvalidPolicy) as err:
        parse_spec(spec_with("schedule", HUGE))
    (problem,) = err.value.errors
    assert problem.path == "spec.schedule"
    assert f"'{'Q' * MAX_ECHO}…' ({len(HUGE)} characters)" in problem.reason


def test_a_huge_unknown_key_is_clipped_in_the_path() -> None:
    with pytest.raises(InvalidPolicy) as err:
        parse_spec({**BASE, HUGE: 1})
    (problem,) = err.value.errors
    assert problem.path == f"spec.{'Q' * MAX_ECHO}… ({len(HUGE)} characters)"
    assert problem.reason == "unknown field"


@pytest.mark.parametrize(
    "text",
    ["", "short 'quoted' and \"double\"", "don't 'x' it's", "'" + "a" * 100 + "'", '"' + "b" * 100 + '"'],
)
def test_clip_reason_keeps_short_messages(text: str) -> None:
    assert clip_reason(text) == text


# ---- spec.actOn, noFix, dueDays and the P keys of jira.priorityMap / dueDays (issue #13)

JIRA: dict[str, Any] = {"url": "https://jira.example.com", "credentialsSecret": "jira", "project": "SEC"}


@pytest.mark.parametrize(
    ("path", "value", "field", "reason"),
    [
        ("actOn", [], "spec.actOn", "at least 1 item"),
        ("actOn", [{}], "spec.actOn[0]", "set at least one of severityAtLeast"),
        ("actOn", [{"kev": False}], "spec.actOn[0].kev", "only true is a rule"),
        ("actOn", [{"exploitAvailable": False}], "spec.actOn[0].exploitAvailable", "only true is a rule"),
        ("actOn", [{"epssAtLeast": 1.5}], "spec.actOn[0].epssAtLeast", "less than or equal to 1"),
        ("actOn", [{"epssAtLeast": -0.1}], "spec.actOn[0].epssAtLeast", "greater than or equal to 0"),
        ("actOn", [{"severityAtLeast": "SEVERE"}], "spec.actOn[0].severityAtLeast", "Input should be"),
        ("actOn", [{"kev": True, "cvss": 9}], "spec.actOn[0].cvss", "unknown field"),
        ("noFix", "ignore", "spec.noFix", "'ticket' or 'reportOnly'"),
        ("dueDays", {"P5": 3}, "spec.dueDays.P5", "Input should be"),
        ("dueDays", {"P1": 0}, "spec.dueDays.P1", "greater than or equal to 1"),
        ("dueDays", {"HIGH": 7}, "spec.dueDays.HIGH", "Input should be"),  # SLA keys are priorities only
    ],
)
def test_prioritisation_fields_refused_naming_the_field(
    path: str, value: Any, field: str, reason: str
) -> None:
    with pytest.raises(InvalidPolicy) as err:
        parse_spec(spec_with(path, value))
    found = [(e.path, e.reason) for e in err.value.errors]
    assert any(p.startswith(field) and reason in r for p, r in found), found


def test_prioritisation_fields_accepted() -> None:
    data = spec_with(
        "actOn",
        [
            {"severityAtLeast": "CRITICAL"},
            {"kev": True},
            {"epssAtLeast": 0.1},
            {"severityAtLeast": "HIGH", "exploitAvailable": True},
        ],
    )
    data.update(
        noFix="reportOnly",
        dueDays={"P1": 7, "P2": 30},
        jira={**JIRA, "priorityMap": {"P1": "Highest", "CRITICAL": "High"}, "dueDays": {"P1": 3, "LOW": 90}},
    )
    s = parse_spec(data)
    assert s.act_on is not None and len(s.act_on) == 4 and s.act_on[3].exploit_available is True
    assert s.no_fix.value == "reportOnly"
    assert s.jira is not None and s.jira.priority_map["P1"] == "Highest"  # type: ignore[index]
    assert parse_spec(BASE).act_on is None and parse_spec(BASE).no_fix.value == "ticket"
    # round trip through the wire form
    assert parse_spec(s.to_wire()) == s
