"""The ScanPolicy spec: the one place where a policy is validated (CLI and operator alike).

Field names are camelCase on the wire (Kubernetes style) and snake_case in Python. Every
error names the field path (`spec.aws.roleArn`) and the reason; unknown fields are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ecs_scan_operator.core.model import Severity
from ecs_scan_operator.errors import FieldError, InvalidPolicy

API_GROUP = "ecsscan.io"
API_VERSION = "v1alpha1"
KIND = "ScanPolicy"

_GLOB_CHARS = re.compile(r"^[A-Za-z0-9_\-*?\[\]!.:/@]+$", re.ASCII)
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$", re.ASCII)
_ROLE_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$", re.ASCII)
_EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$", re.ASCII)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", re.ASCII)
_IPV4_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$", re.ASCII)
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]{1,200}$", re.ASCII)
_KMS_RE = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias/[\w/+=,.@-]{1,250}"
    r"|arn:aws(?:-[a-z]+)*:kms:[a-z0-9-]+:\d{12}:(?:key/[\w-]+|alias/[\w/+=,.@-]+))$",
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
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", re.ASCII)
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", re.ASCII)
_JIRA_PROJECT_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,9}$", re.ASCII)
_JIRA_LABEL_RE = re.compile(r"^[^\s]{1,255}$", re.ASCII)
_TAG_KEY_RE = re.compile(r"^[\w.:/=+@ -]{1,128}$", re.ASCII)


def check_glob(value: str) -> str:
    """A shell-style glob over names: allowed characters, balanced brackets, not empty."""
    if not value:
        raise ValueError("empty pattern")
    if len(value) > 255:
        raise ValueError("pattern longer than 255 characters")
    if not _GLOB_CHARS.match(value):
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


Glob = Annotated[str, AfterValidator(check_glob)]


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    """A validator refusing values that do not match `pattern`, saying what was expected."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


Region = Annotated[str, _matching(_REGION_RE, "an AWS region name such as eu-west-1")]
RoleArn = Annotated[str, _matching(_ROLE_ARN_RE, "an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)")]
ProjectKey = Annotated[
    str, _matching(_JIRA_PROJECT_RE, "a Jira project key (2-10 uppercase letters, digits, _)")
]
JiraLabel = Annotated[str, _matching(_JIRA_LABEL_RE, "a Jira label (1-255 characters without spaces)")]


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
    )


class AwsSpec(_Model):
    """Where the task definitions live and how to reach them."""

    region: Region | None = None
    regions: list[Region] | None = Field(default=None, min_length=1, max_length=30)
    role_arn: RoleArn | None = None
    external_id: str | None = None
    registry_role_arn: RoleArn | None = None

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("regions are listed more than once")
        return v

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, v: str | None) -> str | None:
        if v is not None and not _EXTERNAL_ID_RE.match(v):
            raise ValueError("must be 2 to 1224 characters of letters, digits and +=,.@:/-")
        return v

    @model_validator(mode="after")
    def _one_region_form(self) -> AwsSpec:
        if (self.region is None) == (self.regions is None):
            raise ValueError("set exactly one of region or regions")
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("externalId is only used with roleArn")
        return self

    @property
    def all_regions(self) -> list[str]:
        """The regions to scan, in order."""
        return list(self.regions) if self.regions else [self.region or ""]


class TaskDefinitionSource(StrEnum):
    """How task definitions are chosen."""

    LATEST_REVISION = "latestRevision"
    SERVICES = "services"


class TaskDefinitionsSpec(_Model):
    """Which task-definition families matter."""

    include: list[Glob] = Field(default_factory=list, max_length=200)
    exclude: list[Glob] = Field(default_factory=list, max_length=200)
    source: TaskDefinitionSource = TaskDefinitionSource.LATEST_REVISION
    clusters: list[Glob] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _clusters_need_services(self) -> TaskDefinitionsSpec:
        if self.clusters and self.source is not TaskDefinitionSource.SERVICES:
            raise ValueError("clusters is only used with source: services")
        return self


class Suppression(_Model):
    """An accepted risk: a vulnerability ignored until a date, for some or all images."""

    vulnerability_id: str
    images: list[Glob] = Field(default_factory=list, max_length=100)
    reason: str = Field(min_length=1, max_length=1000)
    expires: date

    @field_validator("vulnerability_id")
    @classmethod
    def _vuln(cls, v: str) -> str:
        if not _VULN_ID_RE.match(v):
            raise ValueError(f"{v!r} is not a vulnerability id such as CVE-2024-1234 or GHSA-xxxx-xxxx-xxxx")
        return v


class S3ReportSpec(_Model):
    """Where run reports are written."""

    bucket: str
    prefix: str = "ecs-scan"
    kms_key_id: str | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET_RE.match(v) or ".." in v or _IPV4_RE.match(v) or v.startswith("xn--"):
            raise ValueError(
                f"{v!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, '.' and '-', "
                "starting and ending with a letter or digit)"
            )
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        if not v or not _PREFIX_RE.match(v) or any(part in ("", ".", "..") for part in v.split("/")):
            raise ValueError(
                f"{v!r} is not a safe key prefix (letters, digits, !_.*'()-/, no empty or '..' parts)"
            )
        return v

    @field_validator("kms_key_id")
    @classmethod
    def _kms(cls, v: str | None) -> str | None:
        if v is not None and not _KMS_RE.match(v):
            raise ValueError(f"{v!r} is not a KMS key id, alias or ARN")
        return v


class ReportSpec(_Model):
    """Report destination."""

    s3: S3ReportSpec


class GroupBy(StrEnum):
    """What one Jira ticket covers."""

    REPOSITORY = "repository"
    IMAGE = "image"


class RouteMatch(_Model):
    """Which images a route takes: every given criterion must match (AND)."""

    families: list[Glob] = Field(default_factory=list, max_length=100)
    task_definition_tags: dict[str, str] = Field(default_factory=dict, max_length=20)
    repository_tags: dict[str, str] = Field(default_factory=dict, max_length=20)

    @model_validator(mode="after")
    def _not_empty(self) -> RouteMatch:
        if not (self.families or self.task_definition_tags or self.repository_tags):
            raise ValueError("set at least one of families, taskDefinitionTags or repositoryTags")
        return self


class JiraRoute(_Model):
    """Where tickets for matching images go; unset values fall back to the top-level jira values."""

    name: str
    match: RouteMatch
    project: ProjectKey | None = None
    components: list[str] = Field(default_factory=list, max_length=20)
    assignee: str | None = Field(default=None, max_length=128)
    labels: list[JiraLabel] = Field(default_factory=list, max_length=20)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _DNS_LABEL_RE.match(v) or v == "default":
            raise ValueError(f"{v!r} must be a lowercase DNS label (a-z, 0-9, '-') other than 'default'")
        return v


class JiraSpec(_Model):
    """Jira ticketing: one ticket per (route, group), never duplicated."""

    url: str = Field(max_length=2048)
    credentials_secret: str
    project: ProjectKey
    issue_type: str = Field(default="Bug", min_length=1, max_length=60)
    priority_map: dict[Severity, str] = Field(default_factory=dict)
    labels: list[JiraLabel] = Field(default_factory=list, max_length=20)
    due_days: dict[Severity, Annotated[int, Field(ge=1, le=3650)]] = Field(default_factory=dict)
    group_by: GroupBy = GroupBy.REPOSITORY
    close_when_fixed: bool = True
    reopen_within_days: int = Field(default=30, ge=0, le=3650)
    routes: list[JiraRoute] = Field(default_factory=list, max_length=50)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+(?:/[^\s?#]*)?$", v, re.ASCII):
            raise ValueError(f"{v!r} is not an http(s) URL of a Jira site")
        if "@" in v.split("/")[2]:
            raise ValueError("credentials do not belong in the URL; use credentialsSecret")
        return v.rstrip("/")

    @field_validator("credentials_secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        if not _DNS_SUBDOMAIN_RE.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes Secret name")
        return v

    @model_validator(mode="after")
    def _unique_routes(self) -> JiraSpec:
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"route names must be unique; repeated: {', '.join(dupes)}")
        return self


class PolicySpec(_Model):
    """The `spec` of a ScanPolicy."""

    schedule: str
    time_zone: str = "UTC"
    suspend: bool = False
    starting_deadline_seconds: int | None = Field(default=None, ge=0, le=86400 * 7)
    aws: AwsSpec
    task_definitions: TaskDefinitionsSpec = Field(default_factory=TaskDefinitionsSpec)
    severity_threshold: Literal["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"] = "MEDIUM"
    include_untriaged: bool = True
    suppressions: list[Suppression] = Field(default_factory=list, max_length=500)
    report: ReportSpec
    jira: JiraSpec | None = None
    dry_run: bool = False

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        return normalize_cron(v)

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
        if not isinstance(name, str) or not _DNS_SUBDOMAIN_RE.match(name):
            problems.append(FieldError("metadata.name", "must be a lowercase DNS name"))
        if not isinstance(namespace, str) or not _DNS_LABEL_RE.match(namespace):
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
