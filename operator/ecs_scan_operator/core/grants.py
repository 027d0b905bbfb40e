"""ScanAccessGrant: what a namespace's ScanPolicies may use, owned by platform admins; `check()`.

A ScanPolicy names AWS roles, regions, an S3 bucket (prefix, KMS key) and a Jira site; the
operator acts on them with its own identity. In `grants` mode a policy may only name what a
cluster-scoped ScanAccessGrant gives its namespace, so "may edit ScanPolicies in namespace X"
never becomes "may read any account the operator is trusted by" (a confused deputy).

Rules of `check()` (pure; the operator, the CLI and the docs agree on them):
- A grant selects a namespace when the namespace is in `namespaces.names` or its labels match
  `namespaces.selector` (matchLabels and matchExpressions, as Kubernetes reads them). A grant
  with neither selects nothing.
- A policy is allowed when ONE grant that selects its namespace allows every field it names:
  `spec.aws.roleArn` (unset: only when the grant has `aws.allowOperatorIdentity`),
  `spec.aws.registryRoleArn`, each region, the report's bucket with its prefix and KMS key (a
  destination without `kmsKey` allows no `kmsKeyId`), and the Jira URL (exact base URLs,
  trailing '/' ignored; a private, loopback or link-local IP literal also needs the host in
  `jira.allowPrivateHosts`), and `spec.serviceAccountName` (in `serviceAccountNames`). One grant,
  not a field-by-field union, so that what it grants is read in one place and the external ID
  comes from the grant that granted the role.
- Patterns: `*` matches any run of characters (`/` included); every other character is itself.
  The same regex is built in CEL by the chart's admission policy (`pattern_regex`).
- Multi-account policies (`spec.aws.accounts` / `spec.aws.organization`): the grant must allow
  `spec.aws.organization.roleArn` (in `aws.roleArns`), each of `organization.parents` (in
  `aws.organizationalUnits`) and `spec.aws.inspectorAdminRoleArn` (in `aws.roleArns`). The
  accounts themselves are decided per account when a run knows them (an organization's accounts
  are discovered then): an account is scanned when it matches `aws.accounts` and its role (from
  `roleArnPattern`) matches `aws.roleArns`; any other is refused, and the run reports it
  (AccessNotGranted, naming the account) instead of dropping it (`AccountScope`).
- `spec.aws.externalId` is refused when the allowing grant supplies the external ID (its
  `aws.externalIdSecretRef`): the tenant must not pick it.
- Refused names the first field (in the order above) that no remaining candidate grant allows,
  and what those grants allow for it. Fields are checked in order; the candidates are the grants
  that allowed every earlier field.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from ecs_scan_operator.core.policy import (
    API_GROUP,
    API_VERSION,
    DNS_LABEL_RE,
    DNS_SUBDOMAIN_RE,
    PolicyRef,
    PolicySpec,
    cel,
    errors_from,
)
from ecs_scan_operator.errors import FieldError, InvalidPolicy

GRANT_KIND = "ScanAccessGrant"
GRANT_PLURAL = "scanaccessgrants"

# The characters a pattern may hold: those of role ARNs, regions, bucket names, key prefixes and
# KMS ids, and `*`. None is a regex metacharacter except . + ( ) and *, which pattern_regex
# escapes or translates, so the CEL twin can build the same regex with a few replace() calls.
_PATTERN_RE = re.compile(r"^[A-Za-z0-9_+=,.@:/!'()*-]{1,512}$", re.ASCII)
# No trailing '/': the admission policy compares the policy's URL (trailing '/' ignored) with
# this one as written.
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~%/-]*[A-Za-z0-9._~%-])?$", re.ASCII)
_HOST_RE = re.compile(r"^[A-Za-z0-9.:-]{1,253}$", re.ASCII)


def pattern_regex(pattern: str) -> str:
    """The anchored regex of a grant pattern (`*` any run; the rest literal), as the CEL rule builds it."""
    body = pattern
    for meta in (".", "+", "(", ")"):
        body = body.replace(meta, "\\" + meta)
    return "^" + body.replace("*", ".*") + "$"


def matches(pattern: str, value: str) -> bool:
    """Whether a value matches a grant pattern."""
    # fullmatch: with re.match, "$" would also match before a trailing newline ("role\n").
    return re.fullmatch(pattern_regex(pattern), value) is not None


def _check_pattern(value: str) -> str:
    if not _PATTERN_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a pattern: 1 to 512 letters, digits, _+=,.@:/!'()- and * (any run)"
        )
    return value


def _check_url(value: str) -> str:
    if not _URL_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an http(s) base URL (no credentials, query, fragment, * or trailing /)"
        )
    return value


Pattern = Annotated[
    str,
    AfterValidator(_check_pattern),
    Field(
        description="An exact value, or a pattern where * matches any run of characters.",
        json_schema_extra={"minLength": 1, "maxLength": 512, "pattern": _PATTERN_RE.pattern},
    ),
]
BaseUrl = Annotated[
    str,
    AfterValidator(_check_url),
    Field(
        description="A Jira base URL, exact, without a trailing / (a policy's trailing / is ignored).",
        json_schema_extra={"maxLength": 2048, "pattern": _URL_RE.pattern},
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        str_strip_whitespace=True,
        use_attribute_docstrings=True,
    )


class Operator(StrEnum):
    """A label selector requirement's operator."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class Requirement(_Model):
    """One matchExpressions entry."""

    key: str = Field(min_length=1, max_length=317)
    """The label key."""
    operator: Operator
    """In, NotIn, Exists or DoesNotExist."""
    values: list[str] = Field(default_factory=list, max_length=100)
    """The values (In and NotIn only)."""

    def holds(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels meet the requirement (Kubernetes semantics)."""
        if self.operator is Operator.IN:
            return self.key in labels and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return self.key in labels
        return self.key not in labels


class LabelSelector(_Model):
    """A Kubernetes label selector over the namespace's labels (every term must hold)."""

    match_labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    """Labels the namespace must have, key to value."""
    match_expressions: list[Requirement] = Field(default_factory=list, max_length=50)
    """Requirements the namespace's labels must meet."""

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels match; an empty selector matches nothing, never every namespace."""
        if not self.match_labels and not self.match_expressions:
            return False
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(r.holds(labels) for r in self.match_expressions)


class NamespaceSelector(_Model):
    """Which namespaces the grant is for: the names listed, and those whose labels match."""

    names: list[str] = Field(
        default_factory=list, max_length=500, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Namespace names."""
    selector: LabelSelector | None = None
    """A label selector over namespaces (an empty one selects none)."""

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not DNS_LABEL_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not a namespace name")
        return v

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether the namespace is selected."""
        return namespace in self.names or (self.selector is not None and self.selector.selects(labels))


class SecretKeyRef(_Model):
    """A key of a Secret, readable by the operator and, as a rule, not by the tenants."""

    namespace: str = Field(json_schema_extra={"maxLength": 63, "pattern": DNS_LABEL_RE.pattern})
    """The Secret's namespace (the operator's own, as a rule)."""
    name: str = Field(json_schema_extra={"maxLength": 253, "pattern": DNS_SUBDOMAIN_RE.pattern})
    """The Secret's name."""
    key: str = Field(default="externalId", min_length=1, max_length=253)
    """The key holding the value. Default externalId."""


class AwsGrant(_Model):
    """The AWS identities and regions the namespaces may use."""

    role_arns: list[Pattern] = Field(default_factory=list, max_length=100)
    """Role ARNs (or patterns) spec.aws.roleArn may name."""
    registry_role_arns: list[Pattern] = Field(default_factory=list, max_length=100)
    """Role ARNs (or patterns) spec.aws.registryRoleArn may name."""
    regions: list[Pattern] = Field(default_factory=list, max_length=50)
    """Regions (or patterns such as eu-*) the policies may scan."""
    allow_operator_identity: bool = False
    """Whether a policy without roleArn may use the operator's own AWS identity. Default false."""
    accounts: list[Pattern] = Field(default_factory=list, max_length=1000)
    """Account IDs (or patterns) multi-account policies (spec.aws.accounts, spec.aws.organization)
    may scan; each account's role (from roleArnPattern) must also match roleArns. A listed or
    discovered account not granted is reported by the run as AccessNotGranted, not scanned."""
    organizational_units: list[Pattern] = Field(default_factory=list, max_length=100)
    """Organizational unit or root IDs (or patterns) spec.aws.organization.parents may name;
    an organization policy without parents (the whole organization) needs the pattern *."""
    external_id_secret_ref: SecretKeyRef | None = None
    """Where the external ID for roleArn comes from; when set, spec.aws.externalId is refused."""


class ReportDestination(_Model):
    """One S3 destination: a bucket, a key prefix pattern and the KMS key to use."""

    bucket: Pattern
    """The bucket (or a pattern)."""
    prefix: Pattern = Field(
        default="*",
        json_schema_extra={
            "minLength": 1,
            "maxLength": 512,
            "pattern": _PATTERN_RE.pattern,
            "x-kubernetes-validations": [
                cel(
                    "!self.startsWith('/') && !self.endsWith('/')",
                    "reports[].prefix: write the prefix without a leading or trailing '/'",
                )
            ],
        },
    )
    """The key prefix (or a pattern), without a leading or trailing /. Default *, any prefix."""
    kms_key: Pattern | None = None
    """The KMS key (or pattern) spec.report.s3.kmsKeyId must name. Unset: kmsKeyId must be unset."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        # The policy's prefix is compared without its leading and trailing '/': so is this one.
        if v.startswith("/") or v.endswith("/"):
            raise ValueError(f"{v!r}: write the prefix without a leading or trailing '/'")
        return v


class JiraGrant(_Model):
    """The Jira sites the namespaces' credentials may be sent to."""

    urls: list[BaseUrl] = Field(default_factory=list, max_length=50)
    """Jira base URLs, exact, without a trailing /, e.g. https://example.atlassian.net."""
    allow_private_hosts: list[Annotated[str, Field(pattern=_HOST_RE.pattern)]] = Field(
        default_factory=list, max_length=50
    )
    """Hosts of those URLs that may be loopback, link-local or private addresses (e.g. an
    in-cluster Jira). Others are refused."""


_NOTIFY_DEST_RE = re.compile(
    r"^(https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?|[A-Za-z0-9*.-]{1,253})$", re.ASCII
)


class NotificationGrant(_Model):
    """Where the namespaces' notifications may be sent (the URLs themselves are in their Secrets)."""

    destinations: list[
        Annotated[str, Field(min_length=1, max_length=2048, pattern=_NOTIFY_DEST_RE.pattern)]
    ] = Field(default_factory=list, max_length=50)
    """URL prefixes (https://hooks.slack.com/services/T0123/: same scheme, host and port, the path
    continuing at a /) or host patterns (hooks.slack.com, *.webhook.office.com). Checked on the URL
    read from the destination's Secret, before anything is sent; empty: no notifications."""


class GrantSpec(_Model):
    """What the selected namespaces' ScanPolicies may use. Anything not listed is refused."""

    namespaces: NamespaceSelector
    aws: AwsGrant = Field(default_factory=AwsGrant, json_schema_extra={"default": {}})
    """AWS roles and regions."""
    reports: list[ReportDestination] = Field(default_factory=list, max_length=50)
    """S3 report destinations."""
    jira: JiraGrant = Field(default_factory=JiraGrant, json_schema_extra={"default": {}})
    """Jira sites."""
    notifications: NotificationGrant = Field(
        default_factory=NotificationGrant, json_schema_extra={"default": {}}
    )
    """Notification destinations."""
    service_account_names: list[Pattern] = Field(default_factory=list, max_length=50)
    """ServiceAccounts (names or patterns) of the policy's namespace that spec.serviceAccountName
    may name: the identity a run as a Job gets (IRSA, EKS Pod Identity). A policy without
    serviceAccountName needs none."""


@dataclass(frozen=True)
class Grant:
    """A named grant (the object's metadata.name and spec)."""

    name: str
    spec: GrantSpec


def parse_grant(doc: Any) -> Grant:
    """A ScanAccessGrant manifest -> Grant; InvalidPolicy naming every bad field."""
    if not isinstance(doc, Mapping):
        raise InvalidPolicy([FieldError("(document)", "must be a ScanAccessGrant manifest")])
    problems = []
    if doc.get("apiVersion") != f"{API_GROUP}/{API_VERSION}":
        problems.append(FieldError("apiVersion", f"must be {API_GROUP}/{API_VERSION}"))
    if doc.get("kind") != GRANT_KIND:
        problems.append(FieldError("kind", f"must be {GRANT_KIND}"))
    meta = doc.get("metadata") or {}
    name = meta.get("name", "") if isinstance(meta, Mapping) else ""
    if not isinstance(name, str) or not DNS_SUBDOMAIN_RE.fullmatch(name):
        problems.append(FieldError("metadata.name", "must be a lowercase DNS name"))
    spec = None
    try:
        spec = GrantSpec.model_validate(doc.get("spec"))
    except ValidationError as exc:
        problems.extend(errors_from(exc))
    if problems or spec is None:
        raise InvalidPolicy(problems)
    return Grant(name=str(name), spec=spec)


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class AccountScope:
    """The accounts a multi-account run may scan: those of the grant that allowed the policy."""

    grant: str
    accounts: tuple[str, ...]
    role_arns: tuple[str, ...]

    def refusal(self, account: str, role: str) -> str | None:
        """Why `account` (assumed through `role`) may not be scanned, or None when it may."""
        if not any(matches(p, account) for p in self.accounts):
            return f"account {account} is not in aws.accounts of ScanAccessGrant {self.grant}"
        if not any(matches(p, role) for p in self.role_arns):
            return f"role {role} is not in aws.roleArns of ScanAccessGrant {self.grant}"
        return None


@dataclass(frozen=True)
class Allowed:
    """The policy may run; `grant` allowed it (None in open mode)."""

    grant: str | None = None
    external_id_secret: SecretKeyRef | None = None
    # Hosts of the Jira URL this grant lets credentials reach although they resolve to a private
    # address: the run's destination check allows them on top of the operator's own list.
    jira_private_hosts: tuple[str, ...] = ()
    # Where its notifications may go (URL prefixes or host patterns); None in open mode: anywhere
    # public (the operator's own destination rules still apply).
    notify_destinations: tuple[str, ...] | None = None
    # Multi-account policies: which accounts the run may scan (None: open mode, or one account).
    accounts: AccountScope | None = None


@dataclass(frozen=True)
class Refused:
    """The policy names something not granted: the field, why, and what is granted for it."""

    field: str
    reason: str
    granted: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """One line for the Ready condition: field, reason, what is granted."""
        granted = ", ".join(self.granted) if self.granted else "nothing"
        return f"{self.field}: {self.reason} (granted: {granted})"


Decision = Allowed | Refused


def _private(host: str) -> bool:
    """A loopback, link-local, private or unspecified IP literal (names are left to the resolver check)."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower() == "localhost" or host.lower().endswith(".localhost")
    return addr.is_loopback or addr.is_link_local or addr.is_private or addr.is_unspecified


def _url_host(url: str) -> str:
    netloc = url.split("/")[2]
    if netloc.startswith("["):
        return netloc[: netloc.index("]") + 1]
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


@dataclass(frozen=True)
class _Field:
    """One thing a policy names, the test a grant applies to it, and what a grant offers for it."""

    path: str
    reason: str
    allows: Any  # Callable[[GrantSpec], bool]
    offered: Any  # Callable[[GrantSpec], Iterable[str]]


def _fields(spec: PolicySpec) -> list[_Field]:
    aws, s3 = spec.aws, spec.report.s3
    out: list[_Field] = []
    if aws.multi_account:
        out.extend(_org_fields(spec))
    elif aws.role_arn is None:
        out.append(
            _Field(
                "spec.aws.roleArn",
                "unset: the operator's own AWS identity is not granted",
                lambda g: g.aws.allow_operator_identity,
                lambda g: g.aws.role_arns,
            )
        )
    else:
        role = aws.role_arn
        out.append(
            _Field(
                "spec.aws.roleArn",
                f"{role} is not granted to this namespace",
                lambda g: any(matches(p, role) for p in g.aws.role_arns),
                lambda g: g.aws.role_arns,
            )
        )
    if aws.registry_role_arn is not None:
        reg = aws.registry_role_arn
        out.append(
            _Field(
                "spec.aws.registryRoleArn",
                f"{reg} is not granted to this namespace",
                lambda g: any(matches(p, reg) for p in g.aws.registry_role_arns),
                lambda g: g.aws.registry_role_arns,
            )
        )
    if aws.external_id is not None:
        out.append(
            _Field(
                "spec.aws.externalId",
                "the grant supplies the external ID (aws.externalIdSecretRef); remove it from the policy",
                lambda g: g.aws.external_id_secret_ref is None,
                lambda g: [] if g.aws.external_id_secret_ref else ["an externalId in the policy"],
            )
        )
    field = "spec.aws.region" if aws.region is not None else "spec.aws.regions"
    for i, region in enumerate(aws.all_regions):
        path = field if aws.region is not None else f"{field}[{i}]"
        out.append(
            _Field(
                path,
                f"region {region} is not granted to this namespace",
                lambda g, r=region: any(matches(p, r) for p in g.aws.regions),
                lambda g: g.aws.regions,
            )
        )
    aggregator = spec.task_definitions.config_aggregator
    if aggregator is not None and aggregator.region is not None:
        # source: awsConfig calls the aggregator's region, which may be none of spec.aws's.
        where = aggregator.region
        out.append(
            _Field(
                "spec.taskDefinitions.configAggregator.region",
                f"region {where} is not granted to this namespace",
                lambda g: any(matches(p, where) for p in g.aws.regions),
                lambda g: g.aws.regions,
            )
        )
    bucket, prefix, kms = s3.bucket, s3.prefix, s3.kms_key_id
    out.append(
        _Field(
            "spec.report.s3.bucket",
            f"bucket {bucket} is not granted to this namespace",
            lambda g: any(matches(d.bucket, bucket) for d in g.reports),
            lambda g: [d.bucket for d in g.reports],
        )
    )

    def dest_prefix(g: GrantSpec) -> bool:
        return any(matches(d.bucket, bucket) and matches(d.prefix, prefix) for d in g.reports)

    out.append(
        _Field(
            "spec.report.s3.prefix",
            f"prefix {prefix} is not granted in bucket {bucket}",
            dest_prefix,
            lambda g: [d.prefix for d in g.reports if matches(d.bucket, bucket)],
        )
    )

    def dest_kms(g: GrantSpec) -> bool:
        return any(
            matches(d.bucket, bucket)
            and matches(d.prefix, prefix)
            and (d.kms_key is None if kms is None else d.kms_key is not None and matches(d.kms_key, kms))
            for d in g.reports
        )

    out.append(
        _Field(
            "spec.report.s3.kmsKeyId",
            "unset, but the destination requires a KMS key"
            if kms is None
            else f"KMS key {kms} is not granted for bucket {bucket}",
            dest_kms,
            lambda g: [d.kms_key or "(none)" for d in g.reports if matches(d.bucket, bucket)],
        )
    )
    if spec.jira is not None:
        url = spec.jira.url.rstrip("/")
        host = _url_host(url)
        out.append(
            _Field(
                "spec.jira.url",
                f"Jira site {url} is not granted to this namespace",
                lambda g: url in g.jira.urls,
                lambda g: g.jira.urls,
            )
        )
        if _private(host):
            out.append(
                _Field(
                    "spec.jira.url",
                    f"host {host} is a loopback, link-local or private address and not in "
                    "jira.allowPrivateHosts",
                    lambda g: host in g.jira.allow_private_hosts,
                    lambda g: g.jira.allow_private_hosts,
                )
            )
    for i, dest in enumerate(spec.notify):
        # The URL is in the destination's Secret, checked against the grant when sending; what
        # can be known now is whether the grant allows notifications at all.
        out.append(
            _Field(
                f"spec.notify[{i}]",
                f"destination {dest.name}: no notification destinations are granted to this namespace",
                lambda g: bool(g.notifications.destinations),
                lambda g: g.notifications.destinations,
            )
        )
    if spec.service_account_name is not None:
        account = spec.service_account_name
        out.append(
            _Field(
                "spec.serviceAccountName",
                f"ServiceAccount {account} is not granted to this namespace",
                lambda g: any(matches(p, account) for p in g.service_account_names),
                lambda g: g.service_account_names,
            )
        )
    return out


def _role_field(path: str, role: str) -> _Field:
    return _Field(
        path,
        f"{role} is not granted to this namespace",
        lambda g: any(matches(p, role) for p in g.aws.role_arns),
        lambda g: g.aws.role_arns,
    )


def _org_fields(spec: PolicySpec) -> list[_Field]:
    """What a multi-account policy names besides its accounts (those are decided per account)."""
    aws = spec.aws
    out = [
        _Field(
            "spec.aws.accounts" if aws.accounts is not None else "spec.aws.organization",
            "no account is granted to this namespace (aws.accounts)",
            lambda g: bool(g.aws.accounts),
            lambda g: g.aws.accounts,
        )
    ]
    org = aws.organization
    if org is not None:
        out.append(_role_field("spec.aws.organization.roleArn", org.role_arn))
        parents = org.parents or ["*"]
        for i, parent in enumerate(parents):
            path = f"spec.aws.organization.parents[{i}]" if org.parents else "spec.aws.organization.parents"
            reason = (
                f"organizational unit {parent} is not granted to this namespace"
                if org.parents
                else "unset (the whole organization): needs organizationalUnits: ['*']"
            )
            out.append(
                _Field(
                    path,
                    reason,
                    lambda g, p=parent: any(
                        q == "*" if p == "*" else matches(q, p) for q in g.aws.organizational_units
                    ),
                    lambda g: g.aws.organizational_units,
                )
            )
    if aws.inspector_admin_role_arn is not None:
        out.append(_role_field("spec.aws.inspectorAdminRoleArn", aws.inspector_admin_role_arn))
    return out


def selecting(policy: PolicyRef, namespace_labels: Mapping[str, str], grants: Iterable[Grant]) -> list[Grant]:
    """The grants that select the policy's namespace, by name."""
    chosen = [g for g in grants if g.spec.namespaces.selects(policy.namespace, namespace_labels)]
    return sorted(chosen, key=lambda g: g.name)


def check(
    policy: PolicyRef, namespace_labels: Mapping[str, str], spec: PolicySpec, grants: Sequence[Grant]
) -> Decision:
    """Whether one grant selecting the policy's namespace allows everything the spec names."""
    candidates = selecting(policy, namespace_labels, grants)
    if not candidates:
        return Refused(
            "metadata.namespace",
            f"no ScanAccessGrant selects namespace {policy.namespace}",
        )
    for item in _fields(spec):
        remaining = [g for g in candidates if item.allows(g.spec)]
        if not remaining:
            offered = sorted({str(v) for g in candidates for v in item.offered(g.spec)})
            return Refused(item.path, item.reason, tuple(offered))
        candidates = remaining
    winner = candidates[0]
    scope = None
    if spec.aws.multi_account:
        aws = winner.spec.aws
        scope = AccountScope(winner.name, tuple(aws.accounts), tuple(aws.role_arns))
    return Allowed(
        grant=winner.name,
        external_id_secret=winner.spec.aws.external_id_secret_ref,
        jira_private_hosts=tuple(winner.spec.jira.allow_private_hosts),
        notify_destinations=tuple(winner.spec.notifications.destinations),
        accounts=scope,
    )


@dataclass(frozen=True)
class Tenancy:
    """What `check()` needs besides the policy: the grants and the namespace's labels, read just before."""

    grants: tuple[Grant, ...]
    namespace_labels: Mapping[str, str]

    def check(self, policy: PolicyRef, spec: PolicySpec) -> Decision:
        """check() on this snapshot."""
        return check(policy, self.namespace_labels, spec, self.grants)


# --------------------------------------------------------------------------- identity at STS

SESSION_NAME_MAX = 64  # AssumeRole's RoleSessionName and SourceIdentity: 2 to 64 of [\w+=,.@-]
_SESSION_CHARS = re.compile(r"[^A-Za-z0-9_+=,.@-]", re.ASCII)
TAG_NAMESPACE = "ecsscan-namespace"
TAG_POLICY = "ecsscan-policy"


@dataclass(frozen=True)
class RoleSession:
    """How a policy's runs appear to STS: the session name, session tags and SourceIdentity."""

    name: str
    tags: Mapping[str, str]

    @property
    def source_identity(self) -> str:
        """SourceIdentity (same rules as the session name); it sticks through role chaining."""
        return self.name


def role_session(policy: PolicyRef) -> RoleSession:
    """`ecsscan-<namespace>-<policy>`, cut to 64 characters with a hash of the whole when longer.

    Namespaces and policy names are DNS names, which STS allows as they are; anything else is
    replaced by '-'. The hash keeps two long names that share their first 55 characters apart.
    """
    full = _SESSION_CHARS.sub("-", f"ecsscan-{policy.namespace}-{policy.name}")
    if len(full) > SESSION_NAME_MAX:
        digest = hashlib.sha256(full.encode()).hexdigest()[:8]
        full = f"{full[: SESSION_NAME_MAX - 9]}-{digest}"
    return RoleSession(name=full, tags={TAG_NAMESPACE: policy.namespace, TAG_POLICY: policy.name})
