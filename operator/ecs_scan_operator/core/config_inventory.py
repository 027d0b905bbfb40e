"""source: awsConfig: the AWS Config advanced query, and the newest ACTIVE revision of each family
from its rows. Pure: no I/O; the adapter (adapters/aws_config.py) sends the query and feeds the pages.

Rules:
- The query selects only properties that the Config resource schema lists for
  `AWS::ECS::TaskDefinition` (awslabs/aws-config-resource-schema,
  `config/properties/resource-types/AWS::ECS::TaskDefinition.properties.json`): accountId,
  awsRegion, arn, configurationItemStatus, configuration.Family, configuration.Status,
  configuration.ContainerDefinitions.Name / .Image, tags.key / tags.value. Config records the
  CloudFormation-style shape, so configuration members are PascalCase.
- The schema has no revision property, and aggregate functions take a single property, so the
  query cannot ask for "MAX(revision) per family" together with the images: it returns every
  ACTIVE revision, the revision is read from the ARN (`...:task-definition/<family>:<revision>`),
  and `LatestRevisions` keeps the newest one per (account, region, family).
- WHERE uses only the documented operators (=, IN, AND): the resource type, the region, status
  ACTIVE, and - when every include entry is a literal family name - `configuration.Family IN (...)`.
  Globs are applied here, on the family, exactly as the other sources apply them.
- Each result is a JSON string. A row that is not JSON, not an object, or has no readable ARN,
  account or region is reported and skipped. A row whose identity is readable but whose content is
  not (a container without an image, ...) is reported, and when it is the newest revision of its
  family the family is reported and nothing older is scanned in its place.
- Rows of deleted resources (configurationItemStatus ResourceDeleted*), of a status other than
  ACTIVE, of another region, or of a family include/exclude leave out are dropped, not reported.
- Errors are bounded (`max_errors`), the rest counted, so a broken aggregator cannot flood a run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from ecs_scan_operator.core.model import TaskDefinitionImages, declared_containers
from ecs_scan_operator.core.policy import TaskDefinitionsSpec
from ecs_scan_operator.core.selection import family_selected

RESOURCE_TYPE = "AWS::ECS::TaskDefinition"
#: What the query selects: each a property of the Config resource schema for AWS::ECS::TaskDefinition.
SELECTED = (
    "accountId",
    "awsRegion",
    "arn",
    "configurationItemStatus",
    "configuration.Family",
    "configuration.Status",
    "configuration.ContainerDefinitions.Name",
    "configuration.ContainerDefinitions.Image",
    "tags.key",
    "tags.value",
)
MAX_EXPRESSION = 4096  # SelectAggregateResourceConfig's Expression: at most 4096 characters
_FAMILY_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$", re.ASCII)  # what ECS allows in a family name
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$", re.ASCII)
_TD_ARN_RE = re.compile(
    r"^arn:aws(?:-[a-z]+)*:ecs:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"task-definition/(?P<family>[A-Za-z0-9_-]{1,255}):(?P<revision>[0-9]{1,9})$",
    re.ASCII,
)
_DELETED = ("ResourceDeleted", "ResourceDeletedNotRecorded")
_ERROR_TEXT = 300  # characters of one row's error message


def _quote(value: str) -> str:
    # Only names matching _FAMILY_RE / _REGION_RE are quoted: no quote can be in them.
    return "'" + value.replace("'", "''") + "'"


def select_expression(region: str, include: Sequence[str] = ()) -> str:
    """The SQL for one region's task definitions (ACTIVE revisions of every account the aggregator sees)."""
    if not _REGION_RE.match(region):
        raise ValueError(f"{region!r} is not an AWS region name")
    where = [
        f"resourceType = {_quote(RESOURCE_TYPE)}",
        f"awsRegion = {_quote(region)}",
        "configuration.Status = 'ACTIVE'",
    ]
    base = f"SELECT {', '.join(SELECTED)} WHERE {' AND '.join(where)}"
    literal = include and all(_FAMILY_RE.match(g) for g in include)
    if literal:
        names = ", ".join(_quote(g) for g in sorted(set(include)))
        narrowed = f"{base} AND configuration.Family IN ({names})"
        if len(narrowed) <= MAX_EXPRESSION:
            return narrowed
    return base


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _IdentityConfiguration(_Lenient):
    family: str = Field(default="", validation_alias=AliasChoices("Family", "family"))
    status: str = Field(default="", validation_alias=AliasChoices("Status", "status"))


class _Identity(_Lenient):
    """What says which revision a row is, and whether it counts at all."""

    account_id: str = Field(validation_alias="accountId", pattern=r"^[0-9]{12}$")
    aws_region: str = Field(validation_alias="awsRegion", min_length=1, max_length=64)
    arn: str = Field(min_length=1, max_length=1600)
    configuration_item_status: str = Field(default="", validation_alias="configurationItemStatus")
    configuration: _IdentityConfiguration = Field(default_factory=_IdentityConfiguration)


class _Container(_Lenient):
    name: str = Field(validation_alias=AliasChoices("Name", "name"), min_length=1, max_length=255)
    image: str = Field(validation_alias=AliasChoices("Image", "image"), min_length=1, max_length=2048)


class _ContentConfiguration(_Lenient):
    containers: list[_Container] = Field(
        validation_alias=AliasChoices("ContainerDefinitions", "containerDefinitions"), min_length=1
    )


class _Tag(_Lenient):
    key: str = Field(min_length=1, max_length=128)
    value: str = Field(default="", max_length=256)


class _Content(_Lenient):
    """What is scanned: the containers' images, and the tags routes match."""

    configuration: _ContentConfiguration
    tags: list[_Tag] = Field(default_factory=list)


def _reason(exc: ValidationError) -> str:
    """pydantic's first problem as `field.path: message`, without quoting the input."""
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "row"
    return f"{where}: {err['msg']}"


@dataclass(frozen=True)
class _Candidate:
    revision: int
    td: TaskDefinitionImages | None  # None: the row is broken, `error` says how
    error: str = ""


@dataclass
class LatestRevisions:
    """Feeds on result pages; keeps the newest ACTIVE revision per (account, region, family).

    Memory is one candidate per family, not the rows: pages are reduced as they come.
    """

    selection: TaskDefinitionsSpec
    region: str
    max_errors: int = 50
    rows: int = 0
    _best: dict[tuple[str, str, str], _Candidate] = field(default_factory=dict)
    _errors: list[str] = field(default_factory=list)
    _more_errors: int = 0

    def _error(self, text: str) -> None:
        if len(self._errors) < self.max_errors:
            self._errors.append(text[:_ERROR_TEXT])
        else:
            self._more_errors += 1

    def add(self, results: Iterable[str]) -> None:
        """One page of `Results` (JSON strings)."""
        for raw in results:
            self.rows += 1
            self._row(raw)

    def _identify(self, raw: str) -> tuple[dict[str, Any], _Identity, re.Match[str]] | None:
        """The row's document, identity and ARN parts; None (reported) when it has no usable identity."""
        where = f"AWS Config row {self.rows}"
        try:
            data = json.loads(raw)
        except (TypeError, ValueError):
            self._error(f"{where}: not a JSON document")
            return None
        if not isinstance(data, dict):
            self._error(f"{where}: not a JSON object")
            return None
        try:
            ident = _Identity.model_validate(data)
        except ValidationError as exc:
            self._error(f"{where}: unreadable identity ({_reason(exc)})")
            return None
        m = _TD_ARN_RE.match(ident.arn)
        problem = ""
        if m is None:
            problem = "arn is not a task-definition ARN"
        elif (m["region"], m["account"]) != (ident.aws_region, ident.account_id):
            problem = "the ARN's account/region differ from accountId/awsRegion"
        elif ident.configuration.family and ident.configuration.family != m["family"]:
            problem = "configuration.Family differs from the ARN's family"
        if m is None or problem:
            self._error(f"{where if m is None else ident.arn}: {problem}")
            return None
        return data, ident, m

    def _row(self, raw: str) -> None:
        found = self._identify(raw)
        if found is None:
            return
        data, ident, m = found
        where = ident.arn
        if ident.configuration_item_status in _DELETED or ident.aws_region != self.region:
            return
        if ident.configuration.status and ident.configuration.status != "ACTIVE":
            return
        family, revision = m["family"], int(m["revision"])
        if not family_selected(family, self.selection.include, self.selection.exclude):
            return
        key = (ident.account_id, ident.aws_region, family)
        current = self._best.get(key)
        if current is not None and current.revision >= revision:
            return  # an older revision, or the same one twice: the first answer stands
        try:
            content = _Content.model_validate(data)
        except ValidationError as exc:
            self._best[key] = _Candidate(revision, None, f"{where}: {_reason(exc)}")
            return
        self._best[key] = _Candidate(
            revision,
            TaskDefinitionImages(
                arn=ident.arn,
                family=family,
                revision=revision,
                containers=declared_containers(
                    tuple((c.name, c.image) for c in content.configuration.containers)
                ),
                region=ident.aws_region,
                tags=tuple(sorted((t.key, t.value) for t in content.tags)),
                account=ident.account_id,
            ),
        )

    @property
    def families(self) -> int:
        """Selected (account, region, family) triples seen, broken ones included."""
        return len(self._best)

    def finish(self) -> tuple[list[TaskDefinitionImages], list[str]]:
        """The newest revision of each family, sorted by (account, family); and the errors."""
        tds: list[TaskDefinitionImages] = []
        errors, more = list(self._errors), self._more_errors
        for key in sorted(self._best):
            cand = self._best[key]
            if cand.td is not None:
                tds.append(cand.td)
            elif len(errors) < self.max_errors:
                errors.append(
                    f"{cand.error[: _ERROR_TEXT - 60]} (the newest ACTIVE revision: family not scanned)"
                )
            else:
                more += 1
        if more:
            errors.append(f"AWS Config: {more} more malformed row(s) not listed")
        return tds, errors
