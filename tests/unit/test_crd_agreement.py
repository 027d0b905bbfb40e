"""The CRD's schema and the pydantic PolicySpec agree: same fields, limits, and verdicts.

Two checks, offline:
1. Structure: every field of PolicySpec is in the CRD (and no other), with the same type,
   required set, enum, default and numeric/length/item bounds; every CRD field is described.
2. Verdicts: a table of valid and invalid specs gets the same answer from `parse_spec` and from
   the CRD's openAPIV3Schema (jsonschema, after the API server's pruning of nulls and defaulting,
   with strict field validation; each CEL rule is evaluated by a Python twin written next to it).

The same table runs against a real API server (real CEL, real defaulting) in
tests/e2e/test_operator_crd.py. Known, deliberate divergences are listed and asserted too, so a
change on either side shows up here.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ecs_scan_operator.core.policy import PolicySpec, parse_spec
from ecs_scan_operator.errors import InvalidPolicy

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "scanpolicies.ecsscan.io.yaml"


@functools.cache
def _crd_text() -> str:
    return CRD_PATH.read_text()


def load_crd() -> dict[str, Any]:
    """The CRD document (a fresh copy)."""
    doc: dict[str, Any] = yaml.safe_load(_crd_text())
    return doc


@functools.cache
def _spec_validator() -> Any:
    return CrdValidator(_to_json_schema(spec_schema()), format_checker=jsonschema.FormatChecker())


def spec_schema() -> dict[str, Any]:
    """The openAPIV3Schema of spec."""
    version = load_crd()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


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
    Case(
        "clusters-without-services",
        variant(taskDefinitions={"clusters": ["prod"]}),
        False,
        "taskDefinitions.clusters",
    ),
    Case(
        "clusters-with-latest",
        variant(taskDefinitions={"clusters": ["prod"], "source": "latestRevision"}),
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


# --------------------------------------------------------------------------- the CRD side, offline

# Each CEL rule of the CRD, as Python. A rule without a twin fails test_every_cel_rule_has_a_twin.
CEL_TWINS: dict[str, Callable[[Any], bool]] = {
    "has(self.region) != has(self.regions)": lambda s: ("region" in s) != ("regions" in s),
    "!has(self.externalId) || has(self.roleArn)": lambda s: "externalId" not in s or "roleArn" in s,
    "!has(self.clusters) || size(self.clusters) == 0 || (has(self.source) && self.source == 'services')": (
        lambda s: not s.get("clusters") or s.get("source") == "services"
    ),
    "!self.contains('..') && !self.startsWith('xn--') && !self.matches('^[0-9]{1,3}([.][0-9]{1,3}){3}$')": (
        lambda s: (
            ".." not in s and not s.startswith("xn--") and not re.search(r"^[0-9]{1,3}([.][0-9]{1,3}){3}$", s)
        )
    ),
    "!self.matches('(^|/)[.][.]?(/|$)')": lambda s: not re.search(r"(^|/)[.][.]?(/|$)", s),
    "!self.matches('^https?://[^/?#]*@')": lambda s: not re.search(r"^https?://[^/?#]*@", s),
    "self != 'default'": lambda s: s != "default",
    (
        "(has(self.families) && size(self.families) > 0) || "
        "(has(self.taskDefinitionTags) && size(self.taskDefinitionTags) > 0) || "
        "(has(self.repositoryTags) && size(self.repositoryTags) > 0)"
    ): (lambda s: bool(s.get("families") or s.get("taskDefinitionTags") or s.get("repositoryTags"))),
}


def _walk(schema: dict[str, Any], path: str = "spec") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def _prune_and_default(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server does before validating: drop nulls (nothing is nullable), apply defaults."""
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {}
        for key, sub in value.items():
            if sub is None:
                continue
            sub_schema = props.get(key) or (extra if isinstance(extra, dict) else {})
            out[key] = _prune_and_default(sub, sub_schema)
        for key, sub_schema in props.items():
            if key not in out and "default" in sub_schema:
                out[key] = _prune_and_default(copy.deepcopy(sub_schema["default"]), sub_schema)
        return out
    if isinstance(value, list) and schema.get("type") == "array":
        return [_prune_and_default(v, schema.get("items") or {}) for v in value if v is not None]
    return value


def _to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Strict field validation: an object with properties refuses others; set lists are unique."""
    out = {k: v for k, v in schema.items() if k not in ("properties", "items", "additionalProperties")}
    if "properties" in schema:
        out["properties"] = {k: _to_json_schema(v) for k, v in schema["properties"].items()}
        out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _to_json_schema(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = _to_json_schema(schema["items"])
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def _list_map_keys(validator: Any, keys: Any, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    if not isinstance(instance, list):
        return
    seen = set()
    for item in instance:
        if isinstance(item, dict):
            key = tuple(item.get(k) for k in keys)
            if key in seen:
                yield jsonschema.ValidationError(f"Duplicate value: {dict(zip(keys, key, strict=True))}")
            seen.add(key)


def _cel(validator: Any, rules: Any, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    for rule in rules:
        twin = CEL_TWINS.get(" ".join(rule["rule"].split()))
        if twin is None:
            yield jsonschema.ValidationError(f"no Python twin for CEL rule {rule['rule']!r}")
        elif not twin(instance):
            yield jsonschema.ValidationError(rule["message"])


CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"x-kubernetes-list-map-keys": _list_map_keys, "x-kubernetes-validations": _cel},
)


def crd_errors(spec: dict[str, Any]) -> list[str]:
    """The CRD's verdict offline: a list of 'path: message' (empty when valid)."""
    out = []
    for err in _spec_validator().iter_errors(_prune_and_default(spec, _spec_schema_cached())):
        path = "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"{path}: {err.message}")
    return out


@functools.cache
def _spec_schema_cached() -> dict[str, Any]:
    return spec_schema()


def pydantic_errors(spec: dict[str, Any]) -> list[str]:
    """PolicySpec's verdict: a list of 'path: reason' (empty when valid)."""
    try:
        parse_spec(spec)
    except InvalidPolicy as exc:
        return [str(e) for e in exc.errors]
    return []


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_same_verdict(case: Case) -> None:
    crd, pyd = crd_errors(case.spec), pydantic_errors(case.spec)
    assert (not crd) is case.valid, f"CRD: {crd}"
    assert (not pyd) is case.valid, f"PolicySpec: {pyd}"
    if not case.valid:
        want = "spec." + case.field
        bare = re.sub(r"\[\d+\]", "", want)
        assert any(want in e or bare in e or _parent_rule_names(e, want) for e in pyd), (
            f"PolicySpec does not name {want}: {pyd}"
        )
        # the CRD names the field in the path or (CEL rules on a parent) in the message
        assert any(want in e or bare in e.replace("[]", "") or _parent_rule_names(e, want) for e in crd), (
            f"CRD does not name {want}: {crd}"
        )


def _parent_rule_names(error: str, want: str) -> bool:
    path, _, message = error.partition(": ")
    field = want.rsplit(".", 1)[-1].split("[", 1)[0]
    return want.startswith(path) and field.removesuffix("s") in message  # "routes" -> "route names"


@pytest.mark.parametrize("div", DIVERGENCES, ids=lambda d: d.id)
def test_known_divergences(div: Divergence) -> None:
    crd_valid = not crd_errors(div.spec)
    pyd_valid = not pydantic_errors(div.spec)
    assert crd_valid is div.crd_valid, f"CRD verdict changed: {crd_errors(div.spec)}"
    assert pyd_valid is not div.crd_valid, f"no longer a divergence ({div.why}): move it to CASES"


def test_every_cel_rule_has_a_twin() -> None:
    rules = [
        " ".join(r["rule"].split())
        for _, s in _walk(spec_schema())
        for r in s.get("x-kubernetes-validations", [])
    ]
    assert sorted(rules) == sorted(CEL_TWINS)
    assert all(
        r.get("message") for _, s in _walk(spec_schema()) for r in s.get("x-kubernetes-validations", [])
    )


def test_every_field_is_described() -> None:
    version = load_crd()["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    missing = [
        path
        for path, s in _walk(root["properties"]["status"], "status")
        if "description" not in s and not path.endswith(("[]", "{}"))
    ]
    missing += [p for p, s in _walk(spec_schema()) if "description" not in s and not p.endswith("{}")]
    assert not missing


def test_descriptions_state_defaults() -> None:
    for path, s in _walk(spec_schema()):
        if "default" in s and s["default"] != {}:
            assert f"default {s['default']}".lower() in s["description"].lower().replace(
                "default:", "default"
            ), path


# ---- structure: the CRD mirrors PolicySpec's JSON schema


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        merged = {**defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        assert len(options) == 1, node
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _resolve({**options[0], **rest}, defs)
    return node


_BOUNDS = ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "maxProperties", "enum")


def _compare(
    pyd: dict[str, Any], crd: dict[str, Any], defs: dict[str, Any], path: str, out: list[str]
) -> None:
    pyd = _resolve(pyd, defs)
    if pyd.get("type") != crd.get("type"):
        out.append(f"{path}: type {pyd.get('type')} != {crd.get('type')}")
        return
    for key in _BOUNDS:
        if key in pyd and pyd[key] != crd.get(key):
            out.append(f"{path}: {key} {pyd[key]} != {crd.get(key)}")
    if "default" in pyd and pyd["default"] is not None and pyd["default"] != crd.get("default"):
        out.append(f"{path}: default {pyd['default']!r} != {crd.get('default')!r}")
    if "default" in crd and crd["default"] != {} and pyd.get("default") != crd["default"]:
        out.append(f"{path}: CRD default {crd['default']!r} is not PolicySpec's {pyd.get('default')!r}")
    if pyd.get("type") == "object" and "propertyNames" in pyd:
        # dict[Severity, X]: the CRD lists the severities as properties (unknown keys are refused)
        keys = _resolve(pyd["propertyNames"], defs)["enum"]
        if sorted(keys) != sorted(crd.get("properties") or {}):
            out.append(f"{path}: keys {keys} != {sorted(crd.get('properties') or {})}")
        for key in keys:
            _compare(pyd["additionalProperties"], crd["properties"][key], defs, f"{path}.{key}", out)
    elif pyd.get("type") == "object" and "properties" in pyd:
        if set(pyd["properties"]) != set(crd.get("properties") or {}):
            out.append(f"{path}: fields {sorted(pyd['properties'])} != {sorted(crd.get('properties') or {})}")
        if sorted(pyd.get("required", [])) != sorted(crd.get("required", [])):
            out.append(f"{path}: required {pyd.get('required', [])} != {crd.get('required', [])}")
        for name, sub in pyd["properties"].items():
            if name in (crd.get("properties") or {}):
                _compare(sub, crd["properties"][name], defs, f"{path}.{name}", out)
    elif pyd.get("type") == "object" and isinstance(pyd.get("additionalProperties"), dict):
        _compare(pyd["additionalProperties"], crd.get("additionalProperties") or {}, defs, f"{path}{{}}", out)
    elif pyd.get("type") == "array":
        _compare(pyd["items"], crd.get("items") or {}, defs, f"{path}[]", out)


def test_crd_mirrors_policy_spec_fields_and_limits() -> None:
    pyd = PolicySpec.model_json_schema(by_alias=True)
    problems: list[str] = []
    _compare(pyd, spec_schema(), pyd.get("$defs", {}), "spec", problems)
    assert not problems, "\n".join(problems)


def test_crd_metadata() -> None:
    crd = load_crd()
    assert crd["metadata"]["name"] == "scanpolicies.ecsscan.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == ("ScanPolicy", "scanpolicies", "scanpolicy")
    assert "ecsscan" in names["categories"] and "all" not in names["categories"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == [
        "Ready",
        "Reason",
        "Images",
        "Findings",
        "Last Run",
        "Next Run",
        "Age",
        "Schedule",
        "Message",
    ]
    assert {c["name"] for c in version["additionalPrinterColumns"] if c.get("priority") == 1} == {
        "Schedule",
        "Message",
    }
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == [
        "type"
    ]


def test_example_policy_is_valid_on_both_sides() -> None:
    doc = yaml.safe_load((CRD_PATH.parents[1] / "examples" / "scanpolicy.yaml").read_text())
    assert crd_errors(doc["spec"]) == []
    assert pydantic_errors(doc["spec"]) == []


def test_status_written_by_the_builder_fits_the_schema() -> None:
    from datetime import UTC, datetime

    from ecs_scan_operator.core.result import RunResult
    from ecs_scan_operator.core.schedule import Decision
    from ecs_scan_operator.core.status import ActiveRun, Context, Trigger, finished_status, running_status

    now = datetime(2025, 3, 1, 10, tzinfo=UTC)
    result = RunResult(run_id="r1", policy="ns/p", started=now)
    result.fail_stage("tickets", "jira down")
    result.tickets = {"create": 1}
    result.report_uri = "s3://b/k/index.json"
    result.finish(now)
    ctx = Context(generation=2, now=now, decision=Decision(now=now, next_time=now), jira=True)
    status = running_status(
        finished_status({}, ctx, result, Trigger.SCHEDULE), ctx, ActiveRun("r2", now, "me", now, "x")
    )
    schema = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    errors = list(CrdValidator(_to_json_schema(schema)).iter_errors(status))
    assert not errors, [e.message for e in errors]
