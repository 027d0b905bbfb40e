"""The ScanPolicy spec: the one place where a policy is validated (CLI and operator alike).

Field names are camelCase on the wire (Kubernetes style) and snake_case in Python. Every
error names the field path (`spec.aws.roleArn`) and the reason; unknown fields are refused.

This module is also the source of the CRD's schema (`make crds`, ecs_scan_operator.crd): each
field's docstring is its `kubectl explain` text, and what the API server should check besides
types and bounds is declared here as schema metadata next to the validator it mirrors: `pattern`
(RE2 syntax, the same regex the validator compiles where RE2 can say it), and CEL rules
(`x-kubernetes-validations`, built with `cel()`). Metadata only: `json_schema_extra` never changes
what pydantic accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from ecs_scan_operator.core.model import Severity
from ecs_scan_operator.errors import FieldError, InvalidPolicy

API_GROUP = "ecsscan.io"
API_VERSION = "v1alpha1"
KIND = "ScanPolicy"

# Patterns written in the common subset of Python's re (with re.ASCII) and RE2, so that the CRD
# declares the very regex the validator runs (RE2 has no \d/\w under ASCII rules, no (?:...)).
_GLOB_CHARS = re.compile(r"^[A-Za-z0-9_\-*?\[\]!.:/@]+$", re.ASCII)
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$", re.ASCII)
_ROLE_ARN_RE = re.compile(r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$", re.ASCII)
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$", re.ASCII)
# An organizational unit (ou-<root part>-<ou part>) or the organization's root (r-<id>).
_PARENT_RE = re.compile(r"^(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})$", re.ASCII)
ACCOUNT_PLACEHOLDER = "{account}"
# A role ARN with {account} where the 12 digits go (checked by formatting it with a sample account).
_ROLE_PATTERN_SHAPE = r"^arn:aws(-[a-z]+)*:iam::[{]account[}]:role/[A-Za-z0-9_+=,.@/-]{1,512}$"
_EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$", re.ASCII)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", re.ASCII)
_IPV4_RE = re.compile(r"^[0-9]{1,3}([.][0-9]{1,3}){3}$", re.ASCII)
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]{1,200}$", re.ASCII)
_KMS_RE = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias/[A-Za-z0-9_/+=,.@-]{1,250}"
    r"|arn:aws(-[a-z]+)*:kms:[a-z0-9-]+:[0-9]{12}:(key/[A-Za-z0-9_-]+|alias/[A-Za-z0-9_/+=,.@-]+))$",
    re.ASCII,
)
_VULN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{1,127}$", re.ASCII)
_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: A Kubernetes DNS label (RFC 1123): namespaces, route names (settings.py checks namespaces with it too).
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", re.ASCII)
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", re.ASCII)
_JIRA_PROJECT_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,9}$", re.ASCII)
_JIRA_LABEL_RE = re.compile(r"^\S{1,255}$", re.ASCII)
_JIRA_URL_RE = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", re.ASCII)
_TAG_KEY_RE = re.compile(r"^[\w.:/=+@ -]{1,128}$", re.ASCII)
# What the API server can check of rules that are code here (cron, IANA zones, bracket balance):
# a necessary condition, so that the CRD never refuses what PolicySpec accepts.
_SCHEDULE_SHAPE = (
    r"^\s*(@(?i:yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|[0-9A-Za-z*/,#?-]+(\s+[0-9A-Za-z*/,#?-]+){4})\s*$"
)
_TIME_ZONE_SHAPE = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"
_GLOB_SHAPE = r"^([A-Za-z0-9_*?!.:/@-]|\[[A-Za-z0-9_*?!.:/@-]+\])+$"
_NOT_BLANK = r"\S"


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """A CEL rule for the CRD (an `x-kubernetes-validations` entry): the API server's twin of a validator."""
    out: JsonDict = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    out["reason"] = "FieldValueInvalid"
    return out


@dataclass(frozen=True)
class _Matching:
    """Refuses strings that do not match `pattern`, saying what was expected; declares the pattern."""

    pattern: re.Pattern[str]
    what: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        pattern, what = self.pattern, self.what

        def check(value: str) -> str:
            if not pattern.fullmatch(value):
                raise ValueError(f"{value!r} is not {what}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out["pattern"] = self.pattern.pattern
        return out


def check_glob(value: str) -> str:
    """A shell-style glob over names: allowed characters, balanced brackets, not empty."""
    if not value:
        raise ValueError("empty pattern")
    if len(value) > 255:
        raise ValueError("pattern longer than 255 characters")
    if not _GLOB_CHARS.fullmatch(value):
        raise ValueError(f"pattern {value!r} has characters other than letters, digits, _-.:/@ and * ? [ ] !")
    depth = 0
    for ch in value:
        if ch == "[":
            if depth:
                raise ValueError(f"pattern {value!r} nests '[' inside a bracket expression")
            depth = 1
        elif ch == "]" and depth:
            depth = 0
        elif ch == "]":
            raise ValueError(f"pattern {value!r} has ']' without a matching '['")
    if depth:
        raise ValueError(f"pattern {value!r} has '[' without a matching ']'")
    if "[]" in value:
        raise ValueError(f"pattern {value!r} has an empty bracket expression")
    return value


Glob = Annotated[
    str,
    AfterValidator(check_glob),
    Field(
        description="A shell-style glob: letters, digits, _-.:/@ and * ? [ ] !, brackets balanced and "
        "not nested, 1 to 255 characters.",
        json_schema_extra={"minLength": 1, "maxLength": 255, "pattern": _GLOB_SHAPE},
    ),
]
Region = Annotated[
    str,
    _Matching(_REGION_RE, "an AWS region name such as eu-west-1"),
    Field(description="An AWS region name, e.g. eu-west-1."),
]
RoleArn = Annotated[str, _Matching(_ROLE_ARN_RE, "an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)")]
AccountId = Annotated[
    str,
    _Matching(_ACCOUNT_RE, "an AWS account ID (12 digits)"),
    Field(description="An AWS account ID, 12 digits."),
]
OrgParent = Annotated[
    str,
    _Matching(_PARENT_RE, "an organizational unit ID (ou-...) or the organization's root ID (r-...)"),
    Field(description="An organizational unit ID (ou-xxxx-xxxxxxxx) or the root ID (r-xxxx)."),
]


def role_for_account(pattern: str, account: str) -> str:
    """The role ARN of `account` from a roleArnPattern (`{account}` replaced)."""
    return pattern.replace(ACCOUNT_PLACEHOLDER, account)


ProjectKey = Annotated[
    str, _Matching(_JIRA_PROJECT_RE, "a Jira project key (2-10 uppercase letters, digits, _)")
]
JiraLabel = Annotated[
    str,
    _Matching(_JIRA_LABEL_RE, "a Jira label (1-255 characters without spaces)"),
    Field(description="A Jira label, 1 to 255 characters without spaces."),
]


def normalize_cron(expr: str) -> str:
    """Return the 5-field form of a schedule (macros expanded); raise ValueError when invalid."""
    text = " ".join(expr.split())
    text = _CRON_MACROS.get(text.lower(), text)
    if "TZ=" in text:
        raise ValueError("time zones go in spec.timeZone, not in the schedule (CRON_TZ/TZ are not allowed)")
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(
            f"schedule {expr!r} must have 5 fields (minute hour day-of-month month day-of-week) "
            "or be one of " + ", ".join(sorted(_CRON_MACROS))
        )
    try:
        CronSim(text, datetime(2000, 1, 1))  # a fixed instant: validation must not read the clock
    except CronSimError as exc:
        raise ValueError(f"schedule {expr!r} is not a valid cron expression: {exc}") from None
    return text


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        str_strip_whitespace=True,
        use_attribute_docstrings=True,  # the docstrings are the CRD's descriptions
    )


def _unique(values: list[str] | None, what: str) -> list[str] | None:
    if values is not None:
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ValueError(f"{what} listed more than once: {', '.join(dupes)}")
    return values


class OrganizationSpec(_Model):
    """The accounts of an AWS Organization (or some of its OUs), discovered at each run."""

    role_arn: RoleArn
    """A role in the management account or in a delegated administrator account of AWS
    Organizations, allowed organizations:ListAccounts (no parents), or ListAccountsForParent and
    ListOrganizationalUnitsForParent (parents). Only ACTIVE accounts are scanned."""
    parents: list[OrgParent] = Field(
        default_factory=list, max_length=100, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Organizational unit IDs (ou-...) or the root ID (r-...) whose accounts are scanned, child OUs
    included. Empty (the default): every account of the organization. At most 100."""
    include_accounts: list[AccountId] = Field(
        default_factory=list, max_length=1000, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Only these of the discovered accounts (12-digit IDs). Empty (the default): all of them."""
    exclude_accounts: list[AccountId] = Field(
        default_factory=list, max_length=1000, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Discovered accounts left out (12-digit IDs), applied after includeAccounts."""

    @field_validator("parents")
    @classmethod
    def _parents(cls, v: list[str]) -> list[str]:
        return _unique(v, "parents") or []

    @field_validator("include_accounts", "exclude_accounts")
    @classmethod
    def _accounts(cls, v: list[str]) -> list[str]:
        return _unique(v, "accounts") or []

    def keeps(self, account: str) -> bool:
        """Whether a discovered account is scanned (includeAccounts, then excludeAccounts)."""
        if self.include_accounts and account not in self.include_accounts:
            return False
        return account not in self.exclude_accounts


class AwsSpec(_Model):
    """Where the task definitions live and how to reach them."""

    region: Region | None = None
    """The one AWS region to scan, e.g. eu-west-1. Set this or regions, not both. Reports go to the
    S3 bucket through this region."""
    regions: list[Region] | None = Field(
        default=None, min_length=1, max_length=30, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Several AWS regions to scan, in order (1 to 30, no repeats). Set this or region, not both.
    Reports go to the S3 bucket through the first region."""
    role_arn: RoleArn | None = None
    """An IAM role to assume for each run (arn:aws:iam::<12 digits>:role/<name>), from the operator's
    own credentials (IRSA, EKS Pod Identity or the default chain). Unset: the operator's own
    credentials are used directly."""
    external_id: str | None = Field(
        default=None,
        # RE2 allows at most 1000 repetitions: the length goes in min/maxLength
        json_schema_extra={"minLength": 2, "maxLength": 1224, "pattern": r"^[A-Za-z0-9_+=,.@:/-]+$"},
    )
    """The external ID the role's trust policy requires (2 to 1224 characters of letters, digits and
    +=,.@:/-). Only with roleArn."""
    registry_role_arn: RoleArn | None = None
    """An IAM role to assume for reading ECR images that live in another account than the task
    definitions (cross-account registries). Unset: roleArn (or the operator's credentials) is used
    for ECR too; with accounts or organization, the registry account's own role (roleArnPattern)."""
    accounts: list[AccountId] | None = Field(
        default=None, min_length=1, max_length=1000, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Several AWS accounts to scan (12-digit IDs, 1 to 1000), each through its role from
    roleArnPattern; every account in every region, in parallel. Not with roleArn or organization."""
    organization: OrganizationSpec | None = None
    """Scan the accounts of an AWS Organization, discovered at each run, each through its role from
    roleArnPattern. Not with roleArn or accounts."""
    role_arn_pattern: str | None = Field(
        default=None, max_length=600, json_schema_extra={"pattern": _ROLE_PATTERN_SHAPE}
    )
    """The role assumed in each account of accounts or organization, with {account} where the
    account ID goes, e.g. arn:aws:iam::{account}:role/ecs-scan-read. Required with them."""
    inspector_admin_role_arn: RoleArn | None = None
    """A role in Amazon Inspector's delegated administrator account: ENHANCED findings and coverage
    of every member account are read there (ListFindings and ListCoverage filtered by awsAccountId)
    instead of through each account's role. ECR BASIC scanning stays per registry account."""

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, v: list[str] | None) -> list[str] | None:
        return _unique(v, "accounts")

    @field_validator("role_arn_pattern")
    @classmethod
    def _role_pattern(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if ACCOUNT_PLACEHOLDER not in v:
            raise ValueError(f"{v!r} must contain {ACCOUNT_PLACEHOLDER} where the account ID goes")
        if not _ROLE_ARN_RE.match(role_for_account(v, "000000000000")):
            raise ValueError(
                f"{v!r} is not a role ARN pattern such as arn:aws:iam::{ACCOUNT_PLACEHOLDER}:role/<name>"
            )
        return v

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("regions are listed more than once")
        return v

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, v: str | None) -> str | None:
        if v is not None and not _EXTERNAL_ID_RE.fullmatch(v):
            raise ValueError("must be 2 to 1224 characters of letters, digits and +=,.@:/-")
        return v

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.region) != has(self.regions)",
                    "set exactly one of spec.aws.region or spec.aws.regions",
                ),
                cel(
                    "!has(self.externalId) || has(self.roleArn) || has(self.roleArnPattern)",
                    "spec.aws.externalId is only used with spec.aws.roleArn or roleArnPattern",
                    ".externalId",
                ),
                cel(
                    "(has(self.roleArn) ? 1 : 0) + (has(self.accounts) ? 1 : 0)"
                    " + (has(self.organization) ? 1 : 0) <= 1",
                    "set at most one of spec.aws.roleArn, spec.aws.accounts or spec.aws.organization",
                ),
                cel(
                    "has(self.roleArnPattern) == (has(self.accounts) || has(self.organization))",
                    "spec.aws.roleArnPattern goes with spec.aws.accounts or spec.aws.organization",
                    ".roleArnPattern",
                ),
            ]
        }
    )

    @model_validator(mode="after")
    def _one_region_form(self) -> AwsSpec:
        if (self.region is None) == (self.regions is None):
            raise ValueError("set exactly one of region or regions")
        if self.external_id is not None and self.role_arn is None and self.role_arn_pattern is None:
            raise ValueError("externalId is only used with roleArn or roleArnPattern")
        modes = [
            n
            for n, v in (
                ("roleArn", self.role_arn),
                ("accounts", self.accounts),
                ("organization", self.organization),
            )
            if v is not None
        ]
        if len(modes) > 1:
            raise ValueError(f"set at most one of roleArn, accounts or organization (got {', '.join(modes)})")
        if (self.role_arn_pattern is None) != (self.accounts is None and self.organization is None):
            raise ValueError("roleArnPattern goes with accounts or organization, and they need it")
        return self

    @property
    def multi_account(self) -> bool:
        """Whether the policy scans several accounts (accounts or organization)."""
        return self.accounts is not None or self.organization is not None

    def account_role(self, account: str) -> str | None:
        """The role assumed in `account` (multi-account policies), else None."""
        return role_for_account(self.role_arn_pattern, account) if self.role_arn_pattern else None

    @property
    def all_regions(self) -> list[str]:
        """The regions to scan, in order."""
        return list(self.regions) if self.regions else [self.region or ""]


class TaskDefinitionSource(StrEnum):
    """How task definitions are chosen."""

    LATEST_REVISION = "latestRevision"
    SERVICES = "services"
    RUNNING = "running"
    AWS_CONFIG = "awsConfig"


#: An AWS Config aggregator name, as SelectAggregateResourceConfig takes it (the service model's pattern).
_AGGREGATOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$", re.ASCII)


class ConfigAggregatorSpec(_Model):
    """The AWS Config aggregator that source: awsConfig queries (docs/aws-config-source.md)."""

    name: str = Field(json_schema_extra={"minLength": 1, "maxLength": 256, "pattern": _AGGREGATOR_RE.pattern})
    """The configuration aggregator's name (1 to 256 letters, digits, _ and -), in the account the
    policy's roleArn (or the operator's own credentials) reads from."""
    region: Region | None = None
    """The region the aggregator lives in, e.g. us-east-1. Default: the first region of spec.aws."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _AGGREGATOR_RE.match(v):
            raise ValueError(f"{v!r} is not an AWS Config aggregator name (1-256 letters, digits, _ and -)")
        return v


class TaskDefinitionsSpec(_Model):
    """Which task-definition families matter."""

    include: list[Glob] = Field(default_factory=list, max_length=200)
    """Family name globs to scan (shell style: * ? [abc] [!abc]), e.g. payments-*. Empty (the
    default) means every family. At most 200."""
    exclude: list[Glob] = Field(default_factory=list, max_length=200)
    """Family name globs to leave out, applied after include. At most 200."""
    source: TaskDefinitionSource = TaskDefinitionSource.LATEST_REVISION
    """How revisions are chosen. latestRevision: the newest ACTIVE revision of each family.
    services: the revisions that ECS services run (optionally only in
    spec.taskDefinitions.clusters). running: the image digests that RUNNING tasks run (services,
    scheduled tasks and RunTask alike, optionally only in spec.taskDefinitions.clusters), from
    ListTasks and DescribeTasks. awsConfig: the newest ACTIVE revision of each family in every
    account and region an AWS Config aggregator records (spec.taskDefinitions.configAggregator),
    from SelectAggregateResourceConfig pages instead of one DescribeTaskDefinition per family; as
    fresh as Config's recording (docs/aws-config-source.md). Default latestRevision."""
    clusters: list[Glob] = Field(default_factory=list, max_length=200)
    """ECS cluster name globs whose services (source: services) or running tasks (source: running)
    are read. With source: latestRevision, setting clusters adds the running view: per image, the
    digest its tag points at now and the digests RUNNING tasks in these clusters run (drift where
    they differ), and those running digests are scanned too. Empty (the default) means every
    cluster for services and running, and no running view for latestRevision; not used with
    awsConfig. At most 200."""
    config_aggregator: ConfigAggregatorSpec | None = None
    """The AWS Config aggregator that source: awsConfig queries; required with that source and only
    used with it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.clusters) || size(self.clusters) == 0"
                    " || !has(self.source) || self.source != 'awsConfig'",
                    "spec.taskDefinitions.clusters is not used with source: awsConfig",
                    ".clusters",
                ),
                cel(
                    "(has(self.source) && self.source == 'awsConfig') == has(self.configAggregator)",
                    "spec.taskDefinitions.configAggregator is required with source: awsConfig, only there",
                    ".configAggregator",
                ),
            ]
        }
    )

    @model_validator(mode="after")
    def _source_fields(self) -> TaskDefinitionsSpec:
        if self.clusters and self.source is TaskDefinitionSource.AWS_CONFIG:
            raise ValueError("clusters is not used with source: awsConfig")
        if self.source is TaskDefinitionSource.AWS_CONFIG and self.config_aggregator is None:
            raise ValueError(
                "configAggregator is required with source: awsConfig (the name of the AWS Config "
                "aggregator to query, and its region)"
            )
        if self.config_aggregator is not None and self.source is not TaskDefinitionSource.AWS_CONFIG:
            raise ValueError("configAggregator is only used with source: awsConfig")
        return self

    @property
    def running_view(self) -> bool:
        """The policy looks at what runs (tasks or service revisions), not only at what is declared."""
        return self.source in (TaskDefinitionSource.SERVICES, TaskDefinitionSource.RUNNING) or bool(
            self.clusters
        )


class Suppression(_Model):
    """One accepted risk: a vulnerability ignored until a date, for some or all images."""

    vulnerability_id: str = Field(json_schema_extra={"pattern": _VULN_ID_RE.pattern})
    """The vulnerability, e.g. CVE-2024-1234 or GHSA-xxxx-xxxx-xxxx (2 to 128 characters)."""
    images: list[Glob] = Field(default_factory=list, max_length=100)
    """Image globs this suppression applies to (matched against the repository, repository:tag and
    the full reference). Empty means every image. At most 100."""
    reason: str = Field(min_length=1, max_length=1000, json_schema_extra={"pattern": _NOT_BLANK})
    """Why the risk is accepted (a ticket reference helps), 1 to 1000 characters."""
    expires: date
    """The last day (YYYY-MM-DD, UTC) the suppression applies."""

    @field_validator("vulnerability_id")
    @classmethod
    def _vuln(cls, v: str) -> str:
        if not _VULN_ID_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a vulnerability id such as CVE-2024-1234 or GHSA-xxxx-xxxx-xxxx")
        return v


class S3ReportSpec(_Model):
    """An S3 bucket. Each run writes per-image JSON, index.json, summary.csv, index.html and
    run.log.jsonl under <prefix>/<date>/<namespace>/<policy>/<runId>/, and keeps what the next run
    needs in <prefix>/state/<namespace>/<policy>.json."""

    bucket: str = Field(
        json_schema_extra={
            "minLength": 3,
            "maxLength": 63,
            "pattern": _BUCKET_RE.pattern,
            "x-kubernetes-validations": [
                cel(
                    "!self.contains('..') && !self.startsWith('xn--')"
                    f" && !self.matches('{_IPV4_RE.pattern}')",
                    "spec.report.s3.bucket is not a valid S3 bucket name"
                    ' (no "..", no IP address, no xn-- prefix)',
                )
            ],
        }
    )
    """The bucket name (3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a
    letter or digit, not an IP address, not xn--...)."""
    prefix: str = Field(
        default="ecs-scan",
        json_schema_extra={
            # the CRD sees the value before the '/' are stripped: 200 counts them
            "maxLength": 200,
            "pattern": r"^/*[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/*$",
            "x-kubernetes-validations": [
                cel(
                    "!self.matches('(^|/)[.][.]?(/|$)')",
                    'spec.report.s3.prefix must not have "." or ".." parts',
                )
            ],
        },
    )
    """The key prefix of every object the runs write. Letters, digits and !_.*'()-, parts separated
    by '/', no empty, '.' or '..' parts; leading and trailing '/' are ignored; 1 to 200 characters.
    Default ecs-scan."""
    kms_key_id: str | None = Field(default=None, json_schema_extra={"pattern": _KMS_RE.pattern})
    """A KMS key for SSE-KMS encryption of the reports: a key id, mrk- id, alias/<name> or a key or
    alias ARN. Unset: the bucket's default encryption."""

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET_RE.fullmatch(v) or ".." in v or _IPV4_RE.match(v) or v.startswith("xn--"):
            raise ValueError(
                f"{v!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, '.' and '-', "
                "starting and ending with a letter or digit)"
            )
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        if not v or not _PREFIX_RE.fullmatch(v) or any(part in ("", ".", "..") for part in v.split("/")):
            raise ValueError(
                f"{v!r} is not a safe key prefix (letters, digits, !_.*'()-/, no empty or '..' parts)"
            )
        return v

    @field_validator("kms_key_id")
    @classmethod
    def _kms(cls, v: str | None) -> str | None:
        if v is not None and not _KMS_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a KMS key id, alias or ARN")
        return v


class ReportSpec(_Model):
    """Where run reports are written."""

    s3: S3ReportSpec


class Priority(StrEnum):
    """How urgent a finding is, P1 (first) to P4 (docs/prioritisation.md defines the table)."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class TicketLevel(StrEnum):
    """A key of spec.jira.priorityMap / dueDays: a ticket's priority (P1..P4) or its worst severity."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    INFORMATIONAL = "INFORMATIONAL"
    UNTRIAGED = "UNTRIAGED"


class NoFix(StrEnum):
    """What becomes of an actionable finding Inspector says has no fix (fixAvailable NO)."""

    TICKET = "ticket"
    REPORT_ONLY = "reportOnly"


class ActOnRule(_Model):
    """One rule of spec.actOn: a finding matches when every condition given holds (AND). Set at
    least one condition. A signal Amazon Inspector did not give (BASIC scanning) is unknown, and an
    unknown signal never matches."""

    severity_at_least: Literal["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"] | None = None
    """The finding's severity is this or higher (findings without a severity match only with
    spec.includeUntriaged true)."""
    kev: bool | None = None
    """true: the CVE is on CISA's Known Exploited Vulnerabilities list (Amazon Inspector
    SearchVulnerabilities, cisaData). Only true is allowed."""
    epss_at_least: float | None = Field(default=None, ge=0, le=1)
    """The finding's EPSS score (the probability of exploitation in the next 30 days, 0 to 1) is
    this or higher, e.g. 0.1."""
    exploit_available: bool | None = None
    """true: Amazon Inspector knows a public exploit (exploitAvailable YES). Only true is allowed."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.severityAtLeast) || has(self.kev) || has(self.epssAtLeast)"
                    " || has(self.exploitAvailable)",
                    "spec.actOn[]: set at least one of severityAtLeast, kev, epssAtLeast or exploitAvailable",
                ),
                cel("!has(self.kev) || self.kev", "spec.actOn[].kev: only true is a rule", ".kev"),
                cel(
                    "!has(self.exploitAvailable) || self.exploitAvailable",
                    "spec.actOn[].exploitAvailable: only true is a rule",
                    ".exploitAvailable",
                ),
            ]
        }
    )

    @field_validator("kev", "exploit_available")
    @classmethod
    def _only_true(cls, v: bool | None) -> bool | None:
        if v is False:
            raise ValueError("only true is a rule (leave the condition out instead)")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> ActOnRule:
        if (
            self.severity_at_least is None
            and self.kev is None
            and self.epss_at_least is None
            and self.exploit_available is None
        ):
            raise ValueError("set at least one of severityAtLeast, kev, epssAtLeast or exploitAvailable")
        return self

    @property
    def severity(self) -> Severity | None:
        """severityAtLeast as a Severity."""
        return Severity(self.severity_at_least) if self.severity_at_least else None


class GroupBy(StrEnum):
    """What one Jira ticket covers."""

    REPOSITORY = "repository"
    IMAGE = "image"


class RouteMatch(_Model):
    """Which images the route takes; every criterion given must match (AND). Set at least one."""

    families: list[Glob] = Field(default_factory=list, max_length=100)
    """Task-definition family globs; an image matches when a family using it matches. At most 100."""
    task_definition_tags: dict[str, str] = Field(default_factory=dict, max_length=20)
    """Tags (key to value) that a task definition using the image must all have. At most 20."""
    repository_tags: dict[str, str] = Field(default_factory=dict, max_length=20)
    """Tags (key to value) the image's ECR repository must all have. At most 20."""
    accounts: list[Glob] = Field(default_factory=list, max_length=1000)
    """Account IDs or globs (e.g. 1234567890*); an image matches when a task definition of a
    matching account uses it (multi-account policies: spec.aws.accounts / organization). At most
    1000."""
    regions: list[Glob] = Field(default_factory=list, max_length=30)
    """Region names or globs (e.g. eu-*); an image matches when a task definition in a matching
    region uses it. At most 30."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(has(self.families) && size(self.families) > 0)"
                    " || (has(self.taskDefinitionTags) && size(self.taskDefinitionTags) > 0)"
                    " || (has(self.repositoryTags) && size(self.repositoryTags) > 0)"
                    " || (has(self.accounts) && size(self.accounts) > 0)"
                    " || (has(self.regions) && size(self.regions) > 0)",
                    "spec.jira.routes[].match: set at least one of families,"
                    " taskDefinitionTags, repositoryTags, accounts or regions",
                )
            ]
        }
    )

    @model_validator(mode="after")
    def _not_empty(self) -> RouteMatch:
        if not (
            self.families
            or self.task_definition_tags
            or self.repository_tags
            or self.accounts
            or self.regions
        ):
            raise ValueError(
                "set at least one of families, taskDefinitionTags, repositoryTags, accounts or regions"
            )
        return self


class JiraRoute(_Model):
    """One route: where tickets for matching images go; unset values fall back to the top-level
    jira values."""

    name: str = Field(
        json_schema_extra={
            "maxLength": 63,
            "pattern": DNS_LABEL_RE.pattern,
            "x-kubernetes-validations": [
                cel("self != 'default'", 'route name "default" is reserved (spec.jira.routes[].name)')
            ],
        }
    )
    """The route's name, a lowercase DNS label (a-z, 0-9, '-', at most 63) other than "default";
    part of each ticket's identity."""
    match: RouteMatch
    project: ProjectKey | None = None
    """The Jira project of this route's tickets. Unset: spec.jira.project."""
    components: list[Annotated[str, Field(description="A Jira component name.")]] = Field(
        default_factory=list, max_length=20
    )
    """Jira components set on this route's tickets. At most 20."""
    assignee: str | None = Field(default=None, max_length=128)
    """The account id (Cloud) or user name (Data Center) to assign new tickets to, at most 128
    characters."""
    labels: list[JiraLabel] = Field(default_factory=list, max_length=20)
    """Labels added to this route's tickets, besides spec.jira.labels. At most 20."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_LABEL_RE.fullmatch(v) or v == "default":
            raise ValueError(f"{v!r} must be a lowercase DNS label (a-z, 0-9, '-') other than 'default'")
        return v


class JiraSpec(_Model):
    """Jira ticketing (optional): one ticket per route and group (repository or image), found again
    by a label, updated with each run, closed when fixed and reopened when a finding comes back.
    Unset: no tickets."""

    url: str = Field(
        max_length=2048,
        json_schema_extra={
            "pattern": _JIRA_URL_RE.pattern,
            "x-kubernetes-validations": [
                cel(
                    "!self.matches('^https?://[^/?#]*@')",
                    "spec.jira.url: credentials do not belong in the URL; use credentialsSecret",
                )
            ],
        },
    )
    """The Jira site, e.g. https://example.atlassian.net (http or https, no credentials in it, no
    query or fragment)."""
    credentials_secret: str = Field(json_schema_extra={"maxLength": 253, "pattern": DNS_SUBDOMAIN_RE.pattern})
    """The name of a Secret in the policy's namespace holding the Jira credentials: keys email and
    apiToken (Jira Cloud), or token (a Jira Data Center personal access token)."""
    project: ProjectKey
    """The default Jira project key (2 to 10 uppercase letters, digits and _, starting with a
    letter)."""
    issue_type: str = Field(
        default="Bug", min_length=1, max_length=60, json_schema_extra={"pattern": _NOT_BLANK}
    )
    """The issue type of new tickets, 1 to 60 characters. Default Bug."""
    priority_map: dict[
        TicketLevel, Annotated[str, Field(description="The Jira priority for {key} findings.")]
    ] = Field(default_factory=dict)
    """The Jira priority name of a ticket, by its priority (P1 to P4: its most urgent finding, see
    docs/prioritisation.md), e.g. P1: Highest, or by the highest severity in it, e.g. CRITICAL:
    Highest. A P key, when given for the ticket's priority, wins over its severity's key; a ticket
    whose keys are not listed keeps Jira's default priority."""
    labels: list[JiraLabel] = Field(default_factory=list, max_length=20)
    """Labels added to every ticket (1 to 255 characters each, no spaces). At most 20."""
    due_days: dict[
        TicketLevel, Annotated[int, Field(ge=1, le=3650, description="Days to the due date (1 to 3650).")]
    ] = Field(default_factory=dict)
    """Days from a ticket's creation to its due date, by its priority (P1 to P4) or the highest
    severity in it (1 to 3650); a P key, when given for the ticket's priority, wins. A ticket whose
    keys are not listed gets no due date from here. The due date is never later than the earliest
    due date of its findings (spec.dueDays) nor than CISA's dateDue of a known-exploited one."""
    group_by: GroupBy = GroupBy.REPOSITORY
    """What one ticket covers: repository (one ticket per ECR repository) or image (one per image tag
    or digest). Default repository."""
    close_when_fixed: bool = True
    """Close a ticket when none of its findings remain. Default true."""
    reopen_within_days: int = Field(default=30, ge=0, le=3650)
    """Reopen a ticket closed less than this many days ago when its findings come back; older ones
    get a new ticket. 0 to 3650, default 30."""
    routes: list[JiraRoute] = Field(
        default_factory=list,
        max_length=50,
        # the API server refuses repeated names, as _unique_routes does
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Where tickets for some images go, first match wins; images no route takes go to the top-level
    project. Names are unique. At most 50."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not _JIRA_URL_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not an http(s) URL of a Jira site")
        if "@" in v.split("/")[2]:
            raise ValueError("credentials do not belong in the URL; use credentialsSecret")
        return v.rstrip("/")

    @field_validator("credentials_secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        if not DNS_SUBDOMAIN_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a Kubernetes Secret name")
        return v

    @model_validator(mode="after")
    def _unique_routes(self) -> JiraSpec:
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"route names must be unique; repeated: {', '.join(dupes)}")
        return self


class NotifyType(StrEnum):
    """Where a notification goes."""

    SLACK = "slack"
    TEAMS = "teams"
    WEBHOOK = "webhook"


class NotifyEvent(StrEnum):
    """What a destination is told about."""

    NEW = "new"
    REOPENED = "reopened"
    FIXED = "fixed"
    OVERDUE = "overdue"
    REDEPLOY_NEEDED = "redeployNeeded"
    RUN_FAILED = "runFailed"


RouteName = Annotated[
    str,
    _Matching(DNS_LABEL_RE, "a Jira route name (a lowercase DNS label, or default)"),
    Field(description="A spec.jira.routes[].name, or default (images no route takes)."),
]


class NotifyFilter(_Model):
    """Which images a destination hears about; every criterion given must match (AND). Empty: all."""

    routes: list[RouteName] = Field(default_factory=list, max_length=50)
    """Jira route names (spec.jira.routes[].name, or default for the images no route takes); an
    image matches when the route its ticket goes to is listed. Without spec.jira every image is on
    the default route. Default empty (any route). At most 50."""
    families: list[Glob] = Field(default_factory=list, max_length=100)
    """Task-definition family globs; an image matches when a family using it matches. Default empty
    (any family). At most 100."""
    accounts: list[Glob] = Field(default_factory=list, max_length=1000)
    """AWS account ID globs (multi-account policies: spec.aws.accounts or organization, and source:
    awsConfig); an image matches when a task definition using it is in a listed account. An image
    whose uses carry no account (a one-account policy) never matches a non-empty list. Default
    empty (any account). At most 1000."""


class NotifyDestination(_Model):
    """One destination: a Slack or Teams incoming webhook, or a generic signed JSON webhook.

    The URL (and the webhook's signing key) are in a Secret in the policy's namespace, never in
    the spec. One message per destination per run, and only when there is something to say; each
    event is sent once (remembered in the policy's state object). The first run that sees a
    destination takes the findings of that moment as known: only later changes are sent."""

    name: str = Field(json_schema_extra={"maxLength": 63, "pattern": DNS_LABEL_RE.pattern})
    """The destination's name, a lowercase DNS label unique in spec.notify; the events sent to it
    are remembered under this name (renaming it starts afresh)."""
    type: NotifyType
    """slack (a Slack incoming webhook, Block Kit message), teams (a Teams / Power Automate
    workflow webhook, Adaptive Card) or webhook (JSON, signed with HMAC-SHA256 in the
    X-Ecsscan-Signature header)."""
    secret: str = Field(json_schema_extra={"maxLength": 253, "pattern": DNS_SUBDOMAIN_RE.pattern})
    """The name of a Secret in the policy's namespace: key url (the webhook URL, https), and for
    type webhook also signingKey (the HMAC-SHA256 key, at least 16 bytes)."""
    # Not "on": YAML 1.1 (kubectl's, PyYAML's) reads an unquoted `on:` key as the boolean true.
    events: list[NotifyEvent] = Field(
        default_factory=lambda: [NotifyEvent.NEW, NotifyEvent.REOPENED, NotifyEvent.RUN_FAILED],
        min_length=1,
        max_length=6,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """The events sent: new (a finding not seen before), reopened (a finding reported fixed came
    back), fixed (a finding gone from a scanned image), runFailed (the run ended PartialFailure),
    redeployNeeded (a running view shows tasks still running an affected digest while its tag
    already points at a digest without the findings; once per image and digest), overdue (a
    finding past its due date, spec.dueDays or CISA's KEV dateDue; told once). Default
    [new, reopened, runFailed]."""
    filter: NotifyFilter = Field(default_factory=NotifyFilter, json_schema_extra={"default": {}})
    """Which images this destination hears about. Default all the policy's images."""
    min_severity: Literal["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"] = "HIGH"
    """The lowest severity sent (findings below spec.severityThreshold are never sent; findings
    without a severity count as below every level). Default HIGH."""
    min_priority: Priority | None = None
    """The lowest priority sent, P1 (most urgent) to P4 (docs/prioritisation.md): a finding with a
    priority is sent when it is at least this urgent, whatever its severity; a finding without one
    (BASIC scanning, no signals) falls back to minSeverity. Unset (the default): minSeverity alone."""
    max_findings: int = Field(default=10, ge=1, le=40)
    """How many findings a message lists by name, most severe first (the rest are counted). 1 to
    40, default 10."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_LABEL_RE.fullmatch(v):
            raise ValueError(f"{v!r} must be a lowercase DNS label (a-z, 0-9, '-')")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        if not DNS_SUBDOMAIN_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a Kubernetes Secret name")
        return v

    @field_validator("events")
    @classmethod
    def _unique_events(cls, v: list[NotifyEvent]) -> list[NotifyEvent]:
        if len(set(v)) != len(v):
            raise ValueError("events must not repeat")
        return v

    @property
    def threshold(self) -> Severity:
        """min_severity as a Severity."""
        return Severity(self.min_severity)

    def sends(self, severity: Severity, priority: str) -> bool:
        """Whether a finding of this severity and priority ("" when it has none) is loud enough."""
        if self.min_priority is not None and priority:
            return priority <= self.min_priority.value  # "P1" < "P2" < ... : more urgent sorts first
        return severity.rank >= self.threshold.rank


class PolicySpec(_Model):
    """What to scan, when, and where the results go."""

    schedule: str = Field(json_schema_extra={"minLength": 1, "pattern": _SCHEDULE_SHAPE})
    """When to run, in cron format: five fields (minute hour day-of-month month day-of-week, e.g.
    "0 6 * * 1-5") or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly. Read
    in spec.timeZone; CRON_TZ= and TZ= are not allowed (use spec.timeZone). Runs follow CronJob
    semantics: never two at once, at most one catch-up run after the operator was down."""
    time_zone: str = Field(default="UTC", json_schema_extra={"pattern": _TIME_ZONE_SHAPE})
    """The IANA time zone the schedule is read in, e.g. Europe/Paris or America/New_York. Default
    UTC. Daylight-saving changes are handled like Debian cron (a time that does not exist runs at the
    next valid time)."""
    suspend: bool = False
    """Stop scheduled runs while true (a run in progress finishes; the run-now annotation still
    starts a run). Scheduled times missed while suspended count as missed: after resuming, at most
    one catch-up run starts, unless it is later than startingDeadlineSeconds. Default false."""
    starting_deadline_seconds: int | None = Field(
        default=None, ge=0, le=86400 * 7, json_schema_extra={"format": "int64"}
    )
    """How late, in seconds, a scheduled run may still start (after downtime or a long previous run).
    A run missed by more is skipped, and the status and an Event say so. Unset means no deadline (a
    missed run always catches up, once). 0 to 604800 (7 days)."""
    run_deadline_seconds: int = Field(default=3600, ge=60, le=86400, json_schema_extra={"format": "int64"})
    """How long, in seconds, a run may take. Past it the run stops at its next checkpoint and ends
    Failed naming the stage it was in, still writes its report folder and releases its run lease;
    it also bounds how long the lease can be held. 60 to 86400 (1 day). Default 3600."""
    service_account_name: str | None = Field(
        default=None, json_schema_extra={"maxLength": 253, "pattern": DNS_SUBDOMAIN_RE.pattern}
    )
    """The ServiceAccount of the policy's namespace its runs use when the operator runs them as
    Jobs (runner mode job), so IRSA or EKS Pod Identity give the run the team's own AWS identity.
    Unset: the operator's default Job ServiceAccount. In tenancy mode grants, a ScanAccessGrant
    must allow the name (serviceAccountNames). Ignored when runs execute in the operator's
    process."""
    aws: AwsSpec
    task_definitions: TaskDefinitionsSpec = Field(
        default_factory=TaskDefinitionsSpec, json_schema_extra={"default": {}}
    )
    """Which task-definition families are scanned. Default every family, latest revision."""
    severity_threshold: Literal["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"] = "MEDIUM"
    """The lowest severity that counts as a finding to act on (reported, ticketed, shown in the
    Findings column), when spec.actOn is not set. Default MEDIUM."""
    include_untriaged: bool = True
    """Whether findings without a severity (UNTRIAGED / UNDEFINED) count as findings to act on,
    whatever the threshold. Default true."""
    act_on: list[ActOnRule] | None = Field(default=None, min_length=1, max_length=20)
    """Which findings to act on (ticket, notify, count as affected): a finding is actionable when
    any rule matches, e.g. [{severityAtLeast: CRITICAL}, {kev: true}, {epssAtLeast: 0.1},
    {severityAtLeast: HIGH, exploitAvailable: true}]. Replaces severityThreshold when set; unset
    (the default) means severityThreshold decides. 1 to 20 rules."""
    no_fix: NoFix = NoFix.TICKET
    """What becomes of actionable findings Amazon Inspector says have no fix (fixAvailable NO):
    ticket (acted on like the others) or reportOnly (kept in the report as suppressed with the
    reason "no fix available", no ticket, no notification). A finding whose fix is unknown (BASIC
    scanning) is always acted on. Default ticket."""
    due_days: dict[
        Priority, Annotated[int, Field(ge=1, le=3650, description="Days to the due date (1 to 3650).")]
    ] = Field(default_factory=dict)
    """The SLA: days from when a finding was first seen (Amazon Inspector's firstObservedAt, or the
    first run that saw it) to its due date, by its priority, e.g. P1: 7, P2: 30. A finding past its
    due date is overdue (report, status, metric, the overdue notification). A CVE on CISA's Known
    Exploited Vulnerabilities list is due no later than CISA's dateDue. A priority not listed has
    no due date of its own. 1 to 3650 days."""
    suppressions: list[Suppression] = Field(default_factory=list, max_length=500)
    """Accepted risks: vulnerabilities that are not acted on until a date, for some or all images.
    Expired suppressions are reported and no longer applied. At most 500."""
    report: ReportSpec
    jira: JiraSpec | None = None
    dry_run: bool = False
    """Scan and write the report, but only plan the Jira changes (the plan is in the run log and the
    TicketsSynced condition) and the notifications (in the run log, none sent). Default false."""
    notify: list[NotifyDestination] = Field(
        default_factory=list,
        max_length=10,
        # the API server refuses repeated names, as _unique_destinations does
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Slack, Teams or webhook destinations told what changed in each run (new, reopened and fixed
    findings, failed runs). Default none. At most 10, names unique."""

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        return normalize_cron(v)

    @field_validator("service_account_name")
    @classmethod
    def _service_account(cls, v: str | None) -> str | None:
        if v is not None and not DNS_SUBDOMAIN_RE.match(v):
            raise ValueError(f"{v!r} is not a ServiceAccount name (a lowercase DNS name)")
        return v

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
            raise ValueError(f"{v!r} is not an IANA time zone name such as Europe/Paris or UTC") from None
        return v

    @property
    def threshold(self) -> Severity:
        """The threshold as a Severity."""
        return Severity(self.severity_threshold)

    @model_validator(mode="after")
    def _unique_destinations(self) -> PolicySpec:
        names = [d.name for d in self.notify]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"spec.notify names must be unique; repeated: {', '.join(dupes)}")
        return self

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict form, as it appears in a manifest."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


MAX_ECHO = 100  # characters of an input value quoted back in an error message
MAX_REASON = 500  # characters of one error message, whatever it quotes
# A Python string literal as repr() writes it, long enough to need clipping.
_LONG_LITERAL = re.compile(
    rf"'(?:[^'\\\n]|\\.){{{MAX_ECHO + 1},}}'" + "|" + rf'"(?:[^"\\\n]|\\.){{{MAX_ECHO + 1},}}"'
)


def clip_value(text: str, limit: int = MAX_ECHO) -> str:
    """An input value as errors may quote it: at most `limit` characters, then `…` and the length."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def clip_reason(reason: str) -> str:
    """An error message with every long quoted value clipped (an invalid 4 MB schedule is not echoed)."""

    def literal(m: re.Match[str]) -> str:
        quote, body = m.group(0)[0], m.group(0)[1:-1]
        return f"{quote}{body[:MAX_ECHO]}…{quote} ({len(body)} characters)"

    reason = _LONG_LITERAL.sub(literal, reason)
    return clip_value(reason, MAX_REASON)


def _path(loc: tuple[int | str, ...], root: str) -> str:
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "Annotated")) or part in ("str", "int"):
            continue  # pydantic's internal validator names are not field names
        else:
            out += f".{clip_value(part)}"  # an unknown key is input too
    return out


def errors_from(exc: ValidationError, root: str = "spec") -> list[FieldError]:
    """Turn pydantic's errors into field-path + reason pairs; quoted input values are clipped."""
    out = []
    for err in exc.errors(include_url=False):
        msg = str(err["msg"])
        msg = msg.removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        out.append(FieldError(_path(tuple(err["loc"]), root), clip_reason(msg)))
    return out


def parse_spec(data: Any) -> PolicySpec:
    """Validate a spec mapping; raise InvalidPolicy naming every bad field."""
    if not isinstance(data, Mapping):
        raise InvalidPolicy([FieldError("spec", "must be a mapping")])
    try:
        return PolicySpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidPolicy(errors_from(exc)) from None


class PolicyRef(BaseModel):
    """Where a policy came from: namespace and name (the identity in keys and tickets)."""

    model_config = ConfigDict(frozen=True)

    namespace: str = "default"
    name: str = "policy"

    @property
    def key(self) -> str:
        """namespace/name."""
        return f"{self.namespace}/{self.name}"


def parse_document(doc: Any) -> tuple[PolicyRef, PolicySpec]:
    """Accept a ScanPolicy manifest (apiVersion/kind/metadata/spec) or a bare spec."""
    if not isinstance(doc, Mapping):
        raise InvalidPolicy(
            [FieldError("(document)", "must be a mapping (a ScanPolicy manifest or its spec)")]
        )
    if "spec" in doc or "kind" in doc or "apiVersion" in doc:
        problems = []
        if doc.get("apiVersion") != f"{API_GROUP}/{API_VERSION}":
            problems.append(FieldError("apiVersion", f"must be {API_GROUP}/{API_VERSION}"))
        if doc.get("kind") != KIND:
            problems.append(FieldError("kind", f"must be {KIND}"))
        meta = doc.get("metadata") or {}
        name = meta.get("name", "") if isinstance(meta, Mapping) else ""
        namespace = (meta.get("namespace") if isinstance(meta, Mapping) else None) or "default"
        if not isinstance(name, str) or not DNS_SUBDOMAIN_RE.fullmatch(name):
            problems.append(FieldError("metadata.name", "must be a lowercase DNS name"))
        if not isinstance(namespace, str) or not DNS_LABEL_RE.fullmatch(namespace):
            problems.append(FieldError("metadata.namespace", "must be a lowercase DNS label"))
        try:
            spec = parse_spec(doc.get("spec"))
        except InvalidPolicy as exc:
            problems.extend(exc.errors)
            spec = None
        if problems or spec is None:
            raise InvalidPolicy(problems)
        return PolicyRef(namespace=namespace, name=name), spec
    return PolicyRef(), parse_spec(doc)
