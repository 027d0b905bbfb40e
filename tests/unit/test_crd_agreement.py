"""The ScanPolicy CRD is generated from PolicySpec (ecs_scan_operator.crd), and both judge alike.

Offline, here:
1. The committed CRD (crds/ and the chart's copy) is what `make crds` generates now.
2. The generator turns every JSON-schema form PolicySpec may use into the structural subset, and
   refuses with the field's path a form that a CRD cannot express.
3. The table of valid and invalid specs gets the expected verdict from `parse_spec`, naming the
   field; every field of the CRD is described, and a description states its default.

The same table runs against a real API server (real schema, CEL and defaulting) in
tests/e2e/test_operator_crd.py: that is where the CRD's verdicts are checked. Known, deliberate
divergences are listed there and here, so a change on either side shows up.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from ecs_scan_operator import crd as generator
from ecs_scan_operator.core.policy import parse_spec
from ecs_scan_operator.errors import InvalidPolicy

ROOT = Path(__file__).resolve().parents[2]
CRD_PATHS = [
    ROOT / "crds" / generator.FILE_NAME,
    ROOT / "helm" / "ecs-scan-operator" / "crds" / generator.FILE_NAME,
]


# --------------------------------------------------------------------------- the table

BASE: dict[str, Any] = {
    "schedule": "0 6 * * 1-5",
    "aws": {"region": "us-east-1"},
    "report": {"s3": {"bucket": "ecs-scan-reports"}},
}
JIRA: dict[str, Any] = {"url": "https://example.atlassian.net", "credentialsSecret": "jira", "project": "SEC"}
DELETE = object()


def variant(**changes: Any) -> dict[str, Any]:
    """BASE with changes; keys are dotted paths (`aws.region`), DELETE removes a key."""
    spec = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return spec


def route(name: str = "team-a", **extra: Any) -> dict[str, Any]:
    return {"name": name, "match": {"families": ["a-*"]}, **extra}


REGIONS_30 = [f"eu-{side}-{n}" for side in ("west", "north", "south") for n in range(10)]

FULL: dict[str, Any] = {
    "schedule": "*/15 6-18 * * MON-FRI",
    "timeZone": "Europe/Paris",
    "suspend": False,
    "startingDeadlineSeconds": 600,
    "aws": {
        "regions": ["eu-west-1", "us-east-1"],
        "roleArn": "arn:aws:iam::123456789012:role/ecs-scan",
        "externalId": "ecs-scan-external",
        "registryRoleArn": "arn:aws:iam::210987654321:role/ecr-read",
    },
    "taskDefinitions": {
        "include": ["payments-*", "svc-[abc]?", "[!x]*"],
        "exclude": ["*-sandbox"],
        "source": "services",
        "clusters": ["prod-*"],
    },
    "severityThreshold": "HIGH",
    "includeUntriaged": False,
    "suppressions": [
        {
            "vulnerabilityId": "CVE-2023-44487",
            "images": ["payments/*", "orders/api:1.2"],
            "reason": "mitigated at the load balancer (SEC-1)",
            "expires": "2099-12-31",
        },
        {"vulnerabilityId": "GHSA-xxxx-yyyy-zzzz", "reason": "not reachable", "expires": "2025-01-01"},
    ],
    "report": {"s3": {"bucket": "ecs-scan-reports", "prefix": "scans/weekly", "kmsKeyId": "alias/reports"}},
    "jira": {
        **JIRA,
        "issueType": "Vulnerability",
        "priorityMap": {"CRITICAL": "Highest", "HIGH": "High", "UNTRIAGED": "Medium"},
        "labels": ["security", "ecs-scan"],
        "dueDays": {"CRITICAL": 7, "HIGH": 30},
        "groupBy": "image",
        "closeWhenFixed": False,
        "reopenWithinDays": 0,
        "routes": [
            route("payments", project="PAY", components=["api"], assignee="abc123", labels=["pay"]),
            {"name": "platform", "match": {"taskDefinitionTags": {"team": "platform"}}},
            {"name": "ml", "match": {"repositoryTags": {"owner": "ml"}, "families": ["ml-*"]}},
        ],
    },
    "dryRun": True,
}


@dataclass(frozen=True)
class Case:
    """One spec and the verdict both validators must give; `field` is named by the refusal."""

    id: str
    spec: dict[str, Any]
    valid: bool
    field: str = ""


CASES: list[Case] = [
    # ---- valid
    Case("minimal", BASE, True),
    Case("unicode-digit", variant(aws__region="us-east-\u0661"), False, "aws.region"),
    Case("url-long", variant(jira={**JIRA, "url": "https://j.example.com/" + "a" * 2100}), False, "jira.url"),
    Case("full", FULL, True),
    Case("macro", variant(schedule="@daily"), True),
    Case("macro-upper", variant(schedule="@HOURLY"), True),
    Case("schedule-spaces", variant(schedule="  0   6 * * *  "), True),
    Case("schedule-names-steps", variant(schedule="0 */2 1,15 JAN-JUN SUN"), True),
    Case("tz-deep", variant(timeZone="America/Argentina/Buenos_Aires"), True),
    Case("tz-etc", variant(timeZone="Etc/GMT+5"), True),
    Case("deadline-0", variant(startingDeadlineSeconds=0), True),
    Case("deadline-max", variant(startingDeadlineSeconds=604800), True),
    Case("deadline-null", variant(startingDeadlineSeconds=None), True),
    Case("jira-null", variant(jira=None), True),
    Case("aws-cn-role", variant(aws__roleArn="arn:aws-cn:iam::123456789012:role/path/to/role"), True),
    Case("regions-30", variant(aws__region=DELETE, aws__regions=REGIONS_30), True),
    Case("services-no-clusters", variant(taskDefinitions={"source": "services"}), True),
    Case("clusters-with-latest", variant(taskDefinitions={"clusters": ["prod"]}), True),
    Case("glob-chars", variant(taskDefinitions={"include": ["a/b:c@d.e_f-g*?"]}), True),
    Case("prefix-slashes", variant(report__s3__prefix="/reports/weekly/"), True),
    Case("kms-uuid", variant(report__s3__kmsKeyId="1234abcd-12ab-34cd-56ef-1234567890ab"), True),
    Case("kms-mrk", variant(report__s3__kmsKeyId="mrk-" + "a" * 32), True),
    Case("kms-arn", variant(report__s3__kmsKeyId="arn:aws:kms:us-east-1:123456789012:key/abc-123"), True),
    Case("bucket-dots", variant(report__s3__bucket="my.reports.bucket"), True),
    Case("jira-min", variant(jira=JIRA), True),
    Case("jira-url-path", variant(jira={**JIRA, "url": "http://jira.internal:8080/jira/"}), True),
    Case(
        "reason-1000",
        variant(suppressions=[{"vulnerabilityId": "CVE-1", "reason": "x" * 1000, "expires": "2030-01-01"}]),
        True,
    ),
    # ---- invalid: required fields
    Case("no-schedule", variant(schedule=DELETE), False, "schedule"),
    Case("no-aws", variant(aws=DELETE), False, "aws"),
    Case("no-report", variant(report=DELETE), False, "report"),
    Case("no-s3", variant(report={}), False, "report.s3"),
    Case("no-bucket", variant(report={"s3": {}}), False, "report.s3.bucket"),
    Case("unknown-field", variant(scheduel="0 * * * *"), False, "scheduel"),
    Case("unknown-nested", variant(aws__zone="a"), False, "aws.zone"),
    # ---- schedule
    Case("schedule-4-fields", variant(schedule="* * * *"), False, "schedule"),
    Case("schedule-6-fields", variant(schedule="0 0 6 * * 1"), False, "schedule"),
    Case("schedule-tz-inline", variant(schedule="CRON_TZ=UTC 0 * * * *"), False, "schedule"),
    Case("schedule-reboot", variant(schedule="@reboot"), False, "schedule"),
    Case("schedule-empty", variant(schedule=""), False, "schedule"),
    Case("tz-dotdot", variant(timeZone="Europe/../etc"), False, "timeZone"),
    Case("tz-space", variant(timeZone="Europe/New York"), False, "timeZone"),
    Case("suspend-word", variant(suspend="maybe"), False, "suspend"),
    Case("deadline-negative", variant(startingDeadlineSeconds=-1), False, "startingDeadlineSeconds"),
    Case("deadline-too-big", variant(startingDeadlineSeconds=604801), False, "startingDeadlineSeconds"),
    Case("deadline-float", variant(startingDeadlineSeconds=1.5), False, "startingDeadlineSeconds"),
    # ---- aws
    Case("region-and-regions", variant(aws__regions=["eu-west-1"]), False, "aws"),
    Case("no-region", variant(aws={}), False, "aws"),
    Case("region-bad", variant(aws__region="useast1"), False, "aws.region"),
    Case("region-upper", variant(aws__region="US-EAST-1"), False, "aws.region"),
    Case("regions-empty", variant(aws__region=DELETE, aws__regions=[]), False, "aws.regions"),
    Case(
        "regions-dupe",
        variant(aws__region=DELETE, aws__regions=["eu-west-1", "eu-west-1"]),
        False,
        "aws.regions",
    ),
    Case(
        "regions-31",
        variant(aws__region=DELETE, aws__regions=[*REGIONS_30, "us-east-1"]),
        False,
        "aws.regions",
    ),
    Case("role-short-account", variant(aws__roleArn="arn:aws:iam::12345:role/x"), False, "aws.roleArn"),
    Case("role-user", variant(aws__roleArn="arn:aws:iam::123456789012:user/x"), False, "aws.roleArn"),
    Case("external-id-alone", variant(aws__externalId="abc"), False, "aws.externalId"),
    Case(
        "external-id-short",
        variant(aws__roleArn="arn:aws:iam::123456789012:role/x", aws__externalId="a"),
        False,
        "aws.externalId",
    ),
    Case("registry-role-bad", variant(aws__registryRoleArn="role/x"), False, "aws.registryRoleArn"),
    # ---- task definitions
    Case("source-bad", variant(taskDefinitions={"source": "all"}), False, "taskDefinitions.source"),
    # clusters with latestRevision (or no source) add the running view (issue #12): valid
    Case(
        "clusters-glob-bad",
        variant(taskDefinitions={"clusters": ["prod-["], "source": "latestRevision"}),
        False,
        "taskDefinitions.clusters",
    ),
    Case(
        "glob-open-bracket",
        variant(taskDefinitions={"include": ["payments-["]}),
        False,
        "taskDefinitions.include",
    ),
    Case(
        "glob-close-bracket", variant(taskDefinitions={"include": ["a]"]}), False, "taskDefinitions.include"
    ),
    Case(
        "glob-empty-bracket", variant(taskDefinitions={"include": ["a[]"]}), False, "taskDefinitions.include"
    ),
    Case(
        "glob-nested-bracket",
        variant(taskDefinitions={"include": ["[[a]]"]}),
        False,
        "taskDefinitions.include",
    ),
    Case("glob-space", variant(taskDefinitions={"exclude": ["has space"]}), False, "taskDefinitions.exclude"),
    Case("glob-empty", variant(taskDefinitions={"include": [""]}), False, "taskDefinitions.include"),
    Case(
        "glob-too-long", variant(taskDefinitions={"include": ["a" * 256]}), False, "taskDefinitions.include"
    ),
    Case(
        "include-201",
        variant(taskDefinitions={"include": [f"f{i}" for i in range(201)]}),
        False,
        "taskDefinitions.include",
    ),
    # ---- threshold, suppressions
    Case("threshold-untriaged", variant(severityThreshold="UNTRIAGED"), False, "severityThreshold"),
    Case("threshold-lower", variant(severityThreshold="high"), False, "severityThreshold"),
    Case("untriaged-word", variant(includeUntriaged="sometimes"), False, "includeUntriaged"),
    Case(
        "supp-no-reason",
        variant(suppressions=[{"vulnerabilityId": "CVE-1", "expires": "2030-01-01"}]),
        False,
        "suppressions[0].reason",
    ),
    Case(
        "supp-blank-reason",
        variant(suppressions=[{"vulnerabilityId": "CVE-1", "reason": "   ", "expires": "2030-01-01"}]),
        False,
        "suppressions[0].reason",
    ),
    Case(
        "supp-long-reason",
        variant(suppressions=[{"vulnerabilityId": "CVE-1", "reason": "x" * 1001, "expires": "2030-01-01"}]),
        False,
        "suppressions[0].reason",
    ),
    Case(
        "supp-bad-date",
        variant(suppressions=[{"vulnerabilityId": "CVE-1", "reason": "r", "expires": "2025-13-01"}]),
        False,
        "suppressions[0].expires",
    ),
    Case(
        "supp-word-date",
        variant(suppressions=[{"vulnerabilityId": "CVE-1", "reason": "r", "expires": "tomorrow"}]),
        False,
        "suppressions[0].expires",
    ),
    Case(
        "supp-bad-id",
        variant(suppressions=[{"vulnerabilityId": "-CVE", "reason": "r", "expires": "2030-01-01"}]),
        False,
        "suppressions[0].vulnerabilityId",
    ),
    Case(
        "supp-bad-image",
        variant(
            suppressions=[
                {"vulnerabilityId": "CVE-1", "reason": "r", "expires": "2030-01-01", "images": ["a b"]}
            ]
        ),
        False,
        "suppressions[0].images",
    ),
    Case(
        "supp-501",
        variant(
            suppressions=[
                {"vulnerabilityId": f"CVE-{i}", "reason": "r", "expires": "2030-01-01"} for i in range(501)
            ]
        ),
        False,
        "suppressions",
    ),
    # ---- report
    Case("bucket-upper", variant(report__s3__bucket="Bad_Bucket"), False, "report.s3.bucket"),
    Case("bucket-dotdot", variant(report__s3__bucket="a..b"), False, "report.s3.bucket"),
    Case("bucket-ip", variant(report__s3__bucket="192.168.1.1"), False, "report.s3.bucket"),
    Case("bucket-xn", variant(report__s3__bucket="xn--abc"), False, "report.s3.bucket"),
    Case("bucket-short", variant(report__s3__bucket="ab"), False, "report.s3.bucket"),
    Case("prefix-dotdot", variant(report__s3__prefix="a/../b"), False, "report.s3.prefix"),
    Case("prefix-dot", variant(report__s3__prefix="./b"), False, "report.s3.prefix"),
    Case("prefix-double-slash", variant(report__s3__prefix="a//b"), False, "report.s3.prefix"),
    Case("prefix-space", variant(report__s3__prefix="a b"), False, "report.s3.prefix"),
    Case("prefix-only-slash", variant(report__s3__prefix="/"), False, "report.s3.prefix"),
    Case("prefix-201", variant(report__s3__prefix="a" * 201), False, "report.s3.prefix"),
    Case("kms-bad", variant(report__s3__kmsKeyId="nope"), False, "report.s3.kmsKeyId"),
    # ---- jira
    Case("jira-no-url", variant(jira={"credentialsSecret": "jira", "project": "SEC"}), False, "jira.url"),
    Case("jira-ftp", variant(jira={**JIRA, "url": "ftp://jira.example.com"}), False, "jira.url"),
    Case(
        "jira-url-creds", variant(jira={**JIRA, "url": "https://me:pw@jira.example.com"}), False, "jira.url"
    ),
    Case("jira-url-query", variant(jira={**JIRA, "url": "https://jira.example.com/?a=b"}), False, "jira.url"),
    Case(
        "jira-secret-bad",
        variant(jira={**JIRA, "credentialsSecret": "Bad_Name"}),
        False,
        "jira.credentialsSecret",
    ),
    Case("jira-project-lower", variant(jira={**JIRA, "project": "sec"}), False, "jira.project"),
    Case("jira-project-long", variant(jira={**JIRA, "project": "ABCDEFGHIJK"}), False, "jira.project"),
    Case("jira-issue-type-empty", variant(jira={**JIRA, "issueType": ""}), False, "jira.issueType"),
    Case("jira-issue-type-long", variant(jira={**JIRA, "issueType": "x" * 61}), False, "jira.issueType"),
    Case(
        "jira-priority-key",
        variant(jira={**JIRA, "priorityMap": {"SEVERE": "High"}}),
        False,
        "jira.priorityMap",
    ),
    Case("jira-due-0", variant(jira={**JIRA, "dueDays": {"HIGH": 0}}), False, "jira.dueDays"),
    Case("jira-due-3651", variant(jira={**JIRA, "dueDays": {"HIGH": 3651}}), False, "jira.dueDays"),
    Case("jira-due-key", variant(jira={**JIRA, "dueDays": {"high": 3}}), False, "jira.dueDays"),
    Case("jira-group-by", variant(jira={**JIRA, "groupBy": "team"}), False, "jira.groupBy"),
    Case(
        "jira-reopen-negative", variant(jira={**JIRA, "reopenWithinDays": -1}), False, "jira.reopenWithinDays"
    ),
    Case("jira-label-space", variant(jira={**JIRA, "labels": ["has space"]}), False, "jira.labels"),
    Case(
        "jira-labels-21", variant(jira={**JIRA, "labels": [f"l{i}" for i in range(21)]}), False, "jira.labels"
    ),
    Case("route-dupe", variant(jira={**JIRA, "routes": [route("a"), route("a")]}), False, "jira.routes"),
    Case("route-default", variant(jira={**JIRA, "routes": [route("default")]}), False, "jira.routes[0].name"),
    Case("route-upper", variant(jira={**JIRA, "routes": [route("Team")]}), False, "jira.routes[0].name"),
    Case(
        "route-empty-match",
        variant(jira={**JIRA, "routes": [{"name": "a", "match": {}}]}),
        False,
        "jira.routes[0].match",
    ),
    Case(
        "route-empty-lists",
        variant(jira={**JIRA, "routes": [{"name": "a", "match": {"families": [], "repositoryTags": {}}}]}),
        False,
        "jira.routes[0].match",
    ),
    Case("route-no-match", variant(jira={**JIRA, "routes": [{"name": "a"}]}), False, "jira.routes[0].match"),
    Case(
        "route-project",
        variant(jira={**JIRA, "routes": [route("a", project="x")]}),
        False,
        "jira.routes[0].project",
    ),
    Case(
        "route-assignee-long",
        variant(jira={**JIRA, "routes": [route("a", assignee="x" * 129)]}),
        False,
        "jira.routes[0].assignee",
    ),
    Case(
        "route-tags-21",
        variant(
            jira={
                **JIRA,
                "routes": [{"name": "a", "match": {"repositoryTags": {f"k{i}": "v" for i in range(21)}}}],
            }
        ),
        False,
        "jira.routes[0].match.repositoryTags",
    ),
    Case(
        "routes-51",
        variant(jira={**JIRA, "routes": [route(f"r{i}") for i in range(51)]}),
        False,
        "jira.routes",
    ),
    Case("dry-run-word", variant(dryRun="maybe"), False, "dryRun"),
    # ---- issue #13: actOn, noFix, dueDays, the P keys of jira.priorityMap / dueDays
    Case(
        "act-on-all",
        variant(
            actOn=[
                {"severityAtLeast": "CRITICAL"},
                {"kev": True},
                {"epssAtLeast": 0.1},
                {"severityAtLeast": "HIGH", "exploitAvailable": True},
            ],
            noFix="reportOnly",
            dueDays={"P1": 7, "P2": 30, "P3": 90, "P4": 180},
        ),
        True,
    ),
    Case("act-on-empty-list", variant(actOn=[]), False, "actOn"),
    Case("act-on-empty-rule", variant(actOn=[{}]), False, "actOn[0]"),
    Case("act-on-kev-false", variant(actOn=[{"kev": False}]), False, "actOn[0].kev"),
    Case(
        "act-on-exploit-false",
        variant(actOn=[{"exploitAvailable": False}]),
        False,
        "actOn[0].exploitAvailable",
    ),
    Case("act-on-epss-above-1", variant(actOn=[{"epssAtLeast": 1.01}]), False, "actOn[0].epssAtLeast"),
    Case(
        "act-on-severity-word",
        variant(actOn=[{"severityAtLeast": "URGENT"}]),
        False,
        "actOn[0].severityAtLeast",
    ),
    Case("act-on-unknown-key", variant(actOn=[{"cvssAtLeast": 9}]), False, "actOn[0]"),
    Case("act-on-21", variant(actOn=[{"epssAtLeast": i / 100} for i in range(21)]), False, "actOn"),
    Case("no-fix-word", variant(noFix="skip"), False, "noFix"),
    Case("due-days-severity-key", variant(dueDays={"HIGH": 7}), False, "dueDays"),
    Case("due-days-0", variant(dueDays={"P1": 0}), False, "dueDays"),
    Case(
        "jira-priority-p-keys", variant(jira={**JIRA, "priorityMap": {"P1": "Highest", "LOW": "Low"}}), True
    ),
    Case("jira-due-p-keys", variant(jira={**JIRA, "dueDays": {"P1": 3, "HIGH": 30}}), True),
    Case("jira-priority-p5", variant(jira={**JIRA, "priorityMap": {"P5": "Low"}}), False, "jira.priorityMap"),
]

# Specs the CRD cannot judge: valid to the API server, refused by PolicySpec. The operator marks
# such a policy Ready=False reason=InvalidSpec (tests/e2e/test_operator.py checks that).
PAST_THE_SCHEMA: list[Case] = [
    Case("schedule-minute-61", variant(schedule="61 * * * *"), False, "schedule"),
    Case("schedule-feb-31", variant(schedule="0 0 31 2 *"), False, "schedule"),
    Case("tz-unknown", variant(timeZone="Mars/Olympus"), False, "timeZone"),
]


@dataclass(frozen=True)
class Divergence:
    """A spec the two validators judge differently, on purpose; `crd_valid` is the CRD's verdict."""

    id: str
    spec: dict[str, Any]
    crd_valid: bool
    why: str


DIVERGENCES: list[Divergence] = [
    Divergence(
        "lax-bool",
        variant(suspend="true"),
        False,
        "pydantic coerces 'true' to a bool; the API server types it",
    ),
    Divergence("lax-int", variant(startingDeadlineSeconds="30"), False, "pydantic coerces '30' to an int"),
    Divergence(
        "stripped", variant(timeZone=" UTC "), False, "PolicySpec strips whitespace before validating"
    ),
    Divergence(
        "datetime-date",
        variant(suppressions=[{"vulnerabilityId": "CVE-1", "reason": "r", "expires": "2030-01-01T00:00:00"}]),
        False,
        "pydantic reads a midnight datetime as a date",
    ),
    Divergence(
        "prefix-padded",
        variant(report__s3__prefix="/" + "a" * 200),
        False,
        "PolicySpec counts 200 after stripping '/'; the CRD counts the raw value",
    ),
    *[Divergence(c.id, c.spec, True, "only PolicySpec knows cron and IANA zones") for c in PAST_THE_SCHEMA],
]


# --------------------------------------------------------------------------- the committed CRD


@pytest.mark.parametrize("path", CRD_PATHS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_committed_crd_is_the_generated_one(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == generator.render(), f"{path} is out of date: run `make crds`"


def test_the_check_mode_names_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fresh, stale, missing = tmp_path / "fresh.yaml", tmp_path / "stale.yaml", tmp_path / "missing.yaml"
    fresh.write_text(generator.render(), encoding="utf-8")
    stale.write_text(generator.render().replace("maxItems: 30", "maxItems: 31"), encoding="utf-8")
    assert generator.main(["--check", str(fresh)]) == 0
    assert generator.main(["--check", str(fresh), str(stale), str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(stale) in err and str(missing) in err and str(fresh) not in err
    assert not missing.exists()  # --check writes nothing
    assert generator.main([str(stale), str(missing)]) == 0
    assert stale.read_text(encoding="utf-8") == missing.read_text(encoding="utf-8") == generator.render()


def _walk(schema: dict[str, Any], path: str = "spec") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def _root() -> dict[str, Any]:
    doc = yaml.safe_load(CRD_PATHS[0].read_text(encoding="utf-8"))
    root: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


def test_every_field_is_described() -> None:
    root = _root()
    missing = [
        path
        for path, s in [*_walk(root["properties"]["spec"]), *_walk(root["properties"]["status"], "status")]
        if "description" not in s and not path.endswith(("[]", "{}"))
    ]
    assert not missing


def test_descriptions_state_defaults() -> None:
    for path, s in _walk(_root()["properties"]["spec"]):
        if "default" in s and s["default"] != {}:
            assert f"default {s['default']}".lower() in s["description"].lower().replace(
                "default:", "default"
            ), path


def test_the_schema_is_structural() -> None:
    """What the API server refuses in a CRD: no $ref/anyOf/allOf, a type on every node, no
    additionalProperties beside properties, every CEL rule with a message."""
    for path, s in _walk(_root()["properties"]["spec"]):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "title", "nullable"} & set(s), path
        assert s.get("type") in ("object", "array", "string", "integer", "boolean", "number"), path
        assert not ("properties" in s and "additionalProperties" in s), path
        assert all(rule.get("message") for rule in s.get("x-kubernetes-validations", [])), path


# --------------------------------------------------------------------------- the generator's rules


class _Colour(StrEnum):
    """A colour."""

    RED = "red"
    BLUE = "blue"


class _Inner(BaseModel):
    """Inner docstring."""

    size: int = Field(default=1, gt=0, le=9)


class _Forms(BaseModel):
    """Every form the generator must handle."""

    optional: str | None = None
    nested: _Inner | None = Field(default=None, description="The field's own words win.")
    colour: _Colour = _Colour.RED
    by_colour: dict[_Colour, int] = Field(default_factory=dict, json_schema_extra={"maxProperties": 2})
    per_key: dict[_Colour, str] = Field(default_factory=dict, description="Wrapped\n   over lines.")
    when: date | None = None


def _converted(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True)
    return generator.structural(raw, raw.get("$defs", {}))


def test_each_json_schema_form_becomes_structural() -> None:
    out = _converted(_Forms)
    props = out["properties"]
    assert props["optional"] == {"type": "string"}  # Optional: the null branch and the null default go
    assert props["nested"]["description"] == "The field's own words win."
    assert props["nested"]["properties"]["size"] == {
        "type": "integer",
        "default": 1,
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 9,
    }
    assert props["colour"] == {
        "type": "string",
        "description": "A colour.",
        "default": "red",
        "enum": ["red", "blue"],
    }
    assert set(props["by_colour"]["properties"]) == {"red", "blue"}
    assert "additionalProperties" not in props["by_colour"] and props["by_colour"]["maxProperties"] == 2
    assert props["per_key"]["description"] == "Wrapped over lines."
    assert props["when"] == {"type": "string", "format": "date"}
    assert "title" not in str(out) and "$ref" not in str(out) and "anyOf" not in str(out)


def test_a_key_template_names_each_member() -> None:
    jira = generator.spec_schema()["properties"]["jira"]["properties"]
    assert jira["priorityMap"]["properties"]["HIGH"]["description"] == "The Jira priority for HIGH findings."
    assert jira["dueDays"]["properties"]["LOW"]["minimum"] == 1


class _Union(BaseModel):
    ok: int = 0
    either: int | str = 0


class _Tuple(BaseModel):
    pair: tuple[int, int] = (0, 0)


@pytest.mark.parametrize(
    ("model", "field", "why"),
    [(_Union, "spec.either", "union of several types"), (_Tuple, "spec.pair", "prefixItems")],
    ids=["union", "tuple"],
)
def test_a_form_no_crd_can_express_is_refused_naming_the_field(
    model: type[BaseModel], field: str, why: str
) -> None:
    with pytest.raises(generator.NotStructural, match=re.escape(field)) as info:
        _converted(model)
    assert why in str(info.value)


# --------------------------------------------------------------------------- PolicySpec's side of the table


def pydantic_errors(spec: dict[str, Any]) -> list[str]:
    """PolicySpec's verdict: a list of 'path: reason' (empty when valid)."""
    try:
        parse_spec(spec)
    except InvalidPolicy as exc:
        return [str(e) for e in exc.errors]
    return []


@pytest.mark.parametrize("case", [*CASES, *PAST_THE_SCHEMA], ids=lambda c: c.id)
def test_policy_spec_verdict_names_the_field(case: Case) -> None:
    pyd = pydantic_errors(case.spec)
    assert (not pyd) is case.valid, f"PolicySpec: {pyd}"
    if not case.valid:
        want = "spec." + case.field
        bare = re.sub(r"\[\d+\]", "", want)
        assert any(want in e or bare in e or _parent_rule_names(e, want) for e in pyd), (
            f"PolicySpec does not name {want}: {pyd}"
        )


def _parent_rule_names(error: str, want: str) -> bool:
    """A rule on the parent object names the child in its message ("routes" -> "route names")."""
    path, _, message = error.partition(": ")
    field = want.rsplit(".", 1)[-1].split("[", 1)[0]
    return want.startswith(path) and field.removesuffix("s") in message


@pytest.mark.parametrize("div", DIVERGENCES, ids=lambda d: d.id)
def test_known_divergences_on_the_policy_spec_side(div: Divergence) -> None:
    assert (not pydantic_errors(div.spec)) is not div.crd_valid, f"no longer a divergence ({div.why})"


@pytest.mark.parametrize("name", ["scanpolicy.yaml", "scanpolicy-prioritised.yaml"])
def test_example_policy_is_valid(name: str) -> None:
    doc = yaml.safe_load((ROOT / "examples" / name).read_text(encoding="utf-8"))
    assert pydantic_errors(doc["spec"]) == []
