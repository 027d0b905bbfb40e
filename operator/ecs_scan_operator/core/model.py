"""Value types that flow through the pipeline. Pure: no I/O, no clock reads."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal


class ScanType(StrEnum):
    """The registry's scanning: ECR basic scanning, or enhanced (Amazon Inspector)."""

    BASIC = "BASIC"
    ENHANCED = "ENHANCED"


class Severity(StrEnum):
    """Finding severities, as Amazon Inspector and ECR name them."""

    INFORMATIONAL = "INFORMATIONAL"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"
    UNTRIAGED = "UNTRIAGED"

    @property
    def rank(self) -> int:
        """Order for thresholds; UNTRIAGED has no rank of its own (policy decides)."""
        return _RANK[self]

    @property
    def position(self) -> int:
        """Index in SEVERITY_ORDER, the sort key of "most severe first" (UNTRIAGED last)."""
        return _POSITION[self]

    @classmethod
    def parse(cls, value: str | None) -> Severity:
        """Map ECR/Inspector spellings (including UNDEFINED) to a Severity."""
        text = (value or "").strip().upper()
        if text in ("", "UNDEFINED"):
            return cls.UNTRIAGED
        try:
            return cls(text)
        except ValueError:
            return cls.UNTRIAGED


#: Severities from the most to the least severe, the order reports use: the one place the order is written.
SEVERITY_ORDER: tuple[Severity, ...] = (
    Severity.CRITICAL,
    Severity.HIGH,
    Severity.MEDIUM,
    Severity.LOW,
    Severity.INFORMATIONAL,
    Severity.UNTRIAGED,
)

# INFORMATIONAL 0 ... CRITICAL 4, from SEVERITY_ORDER; UNTRIAGED -1 (below every threshold).
_RANK = {s: len(SEVERITY_ORDER) - 2 - i for i, s in enumerate(SEVERITY_ORDER[:-1])} | {Severity.UNTRIAGED: -1}
_POSITION = {s: i for i, s in enumerate(SEVERITY_ORDER)}


class ImageStatus(StrEnum):
    """What became of one image in a run (the fixed report vocabulary)."""

    SCANNED = "scanned"  # findings read (possibly none)
    UNSCANNABLE = "unscannable"  # not a private ECR image, or a malformed reference
    NOT_FOUND = "not_found"  # the repository or tag no longer exists
    NOT_SCANNED = "not_scanned"  # exists but has no usable scan (not covered, pending, expired)
    FAILED = "failed"  # an error while resolving or reading findings


class RefKind(StrEnum):
    """Where an image reference points."""

    ECR = "ecr"  # private ECR, including pull-through-cache paths
    ECR_PUBLIC = "ecr_public"
    DOCKER_HUB = "docker_hub"
    OTHER = "other"
    MALFORMED = "malformed"


@dataclass(frozen=True, order=True)
class ImageRef:
    """A parsed container image reference, as written in a task definition."""

    raw: str
    kind: RefKind
    registry: str = ""
    repository: str = ""
    tag: str | None = None
    digest: str | None = None
    account: str | None = None
    region: str | None = None
    reason: str = ""  # why it is malformed or unscannable

    @property
    def scannable(self) -> bool:
        """Only private ECR images are scanned by ECR / Inspector."""
        return self.kind is RefKind.ECR

    @property
    def display(self) -> str:
        """repository:tag or repository@digest, for people."""
        if self.kind is RefKind.MALFORMED:
            return self.raw
        suffix = f":{self.tag}" if self.tag else ""
        if self.digest:
            suffix += f"@{self.digest}"
        return f"{self.repository}{suffix}"


# slots: a fleet of 40,000 task definitions holds this many times over (docs: bench Fleet XL).
@dataclass(frozen=True, slots=True, order=True)
class ImageUse:
    """One container of one task-definition revision that uses an image."""

    family: str
    revision: int
    container: str
    task_definition_arn: str
    region: str = ""
    account: str = ""  # the AWS account of the task definition ("" : the policy's one account)
    # source: running only: the ECS service (`group: service:NAME`, "" for RunTask and scheduled
    # tasks), the launch type and how many running tasks this use stands for.
    service: str = ""
    launch_type: str = ""
    tasks: int = 0
    cluster: str = ""  # the running view only: the ECS cluster's name


@dataclass(frozen=True)
class Account:
    """An AWS account a multi-account policy scans; its name when Organizations told it."""

    id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class ContainerImage:
    """A container of a task definition and the image string it names."""

    name: str
    image: str
    # source: running only: the digest the task runs (`containers[].imageDigest`); None while the
    # container is still PENDING (ECS records the digest once the image is pulled).
    digest: str | None = None


@functools.lru_cache(maxsize=1 << 16)
def declared_containers(pairs: tuple[tuple[str, str], ...]) -> tuple[ContainerImage, ...]:
    """The containers (name, image) of a declared revision, one shared tuple per distinct list.

    Thousands of revisions name the same few lists (Fleet XL: 40,000 revisions, 4,001 lists), and
    the run holds every revision (and the state's cache) to its end. Bounded: a fleet with more
    distinct lists than the cache holds only shares less.
    """
    return tuple(ContainerImage(sys.intern(name), sys.intern(image)) for name, image in pairs)


@dataclass(frozen=True, slots=True)
class TaskDefinitionImages:
    """The containers of one task-definition revision (immutable once registered)."""

    arn: str
    family: str
    revision: int
    containers: tuple[ContainerImage, ...]
    region: str = ""
    account: str = ""  # the AWS account of the task definition ("" : the policy's one account)
    tags: tuple[tuple[str, str], ...] = ()
    # source: running only: running tasks of this revision with the same service, launch type and
    # container digests (tasks > 0 marks the running view; the declared view has 0).
    service: str = ""
    launch_type: str = ""
    tasks: int = 0
    cluster: str = ""  # the running view only: the ECS cluster's name


class FixAvailable(StrEnum):
    """Inspector's `fixAvailable`; UNKNOWN where the scan has no such signal (BASIC)."""

    YES = "YES"
    NO = "NO"
    PARTIAL = "PARTIAL"
    UNKNOWN = ""


@dataclass(frozen=True, slots=True)  # tens of thousands per run: no __dict__ each
class Signals:
    """What says how urgent a finding is, beyond its severity.

    Amazon Inspector (ENHANCED) returns these per finding; BASIC scanning returns none of them, so
    every field has an "unknown" value (None, UNKNOWN, "") that reports show as "unknown", never
    as "no". `kev` comes from Inspector's SearchVulnerabilities (`cisaData`), read per distinct
    CVE and cached in the state object.
    """

    epss: float | None = None  # epss.score, 0..1
    exploit_available: bool | None = None  # exploitAvailable YES/NO
    last_known_exploit_at: datetime | None = None  # exploitabilityDetails.lastKnownExploitAt
    fix_available: FixAvailable = FixAvailable.UNKNOWN
    inspector_score: float | None = None  # inspectorScore
    remediation: str = ""  # remediation.recommendation.text
    kev: bool | None = None  # on CISA's Known Exploited Vulnerabilities list (None: not looked up)
    kev_date_added: date | None = None
    kev_date_due: date | None = None
    kev_action: str = ""


@dataclass(frozen=True, slots=True)  # tens of thousands per run: no __dict__ each
class Assessment:
    """The policy's verdict on one finding: priority P1..P4 and its SLA (see docs/prioritisation.md)."""

    priority: str = ""  # "P1".."P4"; "" where the policy does not prioritise
    actionable: bool = True  # matches the policy's actOn rules (or its severityThreshold)
    first_seen: datetime | None = None  # first run that saw it (state object) or firstObservedAt
    due: date | None = None
    overdue: bool = False


_NO_SIGNALS = Signals()
_NO_ASSESSMENT = Assessment()


@dataclass(frozen=True, slots=True)  # tens of thousands per run: no __dict__ each
class Finding:
    """One vulnerability in one image, reduced to what reports and tickets need."""

    vulnerability_id: str
    severity: Severity
    package: str = ""
    installed_version: str = ""
    fixed_version: str = ""
    description: str = ""
    url: str = ""
    first_observed: datetime | None = None
    title: str = ""
    # One shared "nothing known" value each (both are frozen): a fleet's tens of thousands of
    # findings would otherwise carry two empty objects apiece (about 270 bytes per finding).
    signals: Signals = field(default=_NO_SIGNALS)
    assessment: Assessment = field(default=_NO_ASSESSMENT)
    # Inspector's packageManager (OS, PIP, NPM, JAR...); "" where the scan does not say (BASIC).
    package_manager: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, used in reports."""
        return {
            "vulnerabilityId": self.vulnerability_id,
            "severity": self.severity.value,
            "package": self.package,
            "installedVersion": self.installed_version,
            "fixedVersion": self.fixed_version,
            "title": self.title,
            "description": self.description,
            "url": self.url,
            "firstObserved": self.first_observed.isoformat() if self.first_observed else None,
            **self._signals_dict(),
        }

    def _signals_dict(self) -> dict[str, Any]:
        """The signals and SLA (issue #13); null where unknown (BASIC scanning), never false."""
        s, a = self.signals, self.assessment
        return {
            "priority": a.priority or None,
            "epss": s.epss,
            "exploitAvailable": s.exploit_available,
            "lastKnownExploitAt": s.last_known_exploit_at.isoformat() if s.last_known_exploit_at else None,
            "fixAvailable": s.fix_available.value or None,
            "inspectorScore": s.inspector_score,
            "remediation": s.remediation or None,
            "kev": s.kev,
            "kevDateAdded": s.kev_date_added.isoformat() if s.kev_date_added else None,
            "kevDateDue": s.kev_date_due.isoformat() if s.kev_date_due else None,
            "kevAction": s.kev_action or None,
            "firstSeen": a.first_seen.isoformat() if a.first_seen else None,
            "due": a.due.isoformat() if a.due else None,
            "overdue": a.overdue,
        }


class ScanState(StrEnum):
    """What the findings source said about an image's scan."""

    COMPLETE = "complete"  # findings are current (maybe none)
    NOT_COVERED = "not_covered"  # scanning does not cover it (manual, unsupported, expired)
    PENDING = "pending"  # a scan is running or queued
    NOT_FOUND = "not_found"
    FAILED = "failed"


@dataclass(frozen=True)
class ImageScan:
    """Raw findings of one image digest, before threshold and suppressions."""

    state: ScanState
    findings: tuple[Finding, ...] = ()
    reason: str = ""
    scanned_at: datetime | None = None
    scan_type: ScanType | Literal[""] = ""  # "" until scanned
    cause: str = ""  # FAILED: the outside call that failed, "service:Operation ErrorCode"
    # ENHANCED only, from the coverage answer (ListCoverage resourceMetadata.ecrImage): how many
    # running ECS tasks / EKS pods Inspector counts on this digest, and when it last saw one.
    in_use_count: int | None = None
    last_in_use_at: datetime | None = None


@dataclass(frozen=True)
class RuntimeContext:
    """Where and since when an image runs: the running view of one image (issue #12).

    Filled from ListTasks/DescribeTasks or service revisions (clusters, services, tasks, the
    digests running) and from Inspector's coverage (`inUseCount`, `lastInUseAt`); `tag_digest` is
    the digest the tag points at now (ECR DescribeImages). Empty when nothing was looked up.
    """

    clusters: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    running_tasks: int = 0
    running_digests: tuple[str, ...] = ()
    tag_digest: str | None = None
    first_seen_running: datetime | None = None  # first run that saw it running (state object)
    last_seen_running: datetime | None = None
    in_use_count: int | None = None  # Inspector coverage ecrContainerImage.inUseCount
    last_in_use_at: datetime | None = None  # Inspector coverage ecrContainerImage.lastInUseAt
    coverage_at_risk: bool = False  # running longer than Inspector's rescan window: findings stale

    @property
    def drift(self) -> bool:
        """The tag now points at a digest that no running task uses."""
        return bool(self.tag_digest and self.running_digests and self.tag_digest not in self.running_digests)


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving an image reference to a digest."""

    digest: str | None
    status: ImageStatus | None = None  # set when it could not be resolved (not_found / failed)
    reason: str = ""
    tags: tuple[str, ...] = ()
    cause: str = ""  # FAILED: the outside call that failed, "service:Operation ErrorCode"


@dataclass
class ImageResult:
    """Everything known about one image at the end of a run."""

    ref: ImageRef
    uses: list[ImageUse] = field(default_factory=list)
    status: ImageStatus = ImageStatus.NOT_SCANNED
    reason: str = ""
    cause: str = ""  # FAILED: the outside call that failed, "service:Operation ErrorCode"
    digest: str | None = None
    scan_type: ScanType | Literal[""] = ""
    scanned_at: datetime | None = None
    findings: list[Finding] = field(default_factory=list)  # at/above threshold, not suppressed
    suppressed: list[tuple[Finding, str]] = field(default_factory=list)  # finding, suppression reason
    td_tags: dict[str, str] = field(default_factory=dict)  # tags of the task definitions using it (routing)
    repository_tags: dict[str, str] = field(default_factory=dict)  # ECR repository tags (routing)
    awaiting_digest: bool = False  # source: running, container PENDING: no digest to resolve or scan yet
    runtime: RuntimeContext | None = None  # the running view, when the policy asked for one
    # The tag already points at a digest without these findings while running tasks still use this
    # one: the ticket stays open and says so (issue #12).
    redeploy_needed: bool = False

    @property
    def affected(self) -> bool:
        """Has findings that need action."""
        return bool(self.findings)

    def counts(self) -> dict[str, int]:
        """Findings by severity (only the actionable ones)."""
        out = {s.value: 0 for s in SEVERITY_ORDER}
        for f in self.findings:
            out[f.severity.value] += 1
        return out

    @property
    def families(self) -> list[str]:
        """Task-definition families that use this image, sorted, unique."""
        return sorted({u.family for u in self.uses})

    @property
    def accounts(self) -> list[str]:
        """Accounts whose task definitions use this image (multi-account policies), sorted, unique."""
        return sorted({u.account for u in self.uses if u.account})

    @property
    def regions(self) -> list[str]:
        """Regions whose task definitions use this image, sorted, unique."""
        return sorted({u.region for u in self.uses if u.region})


@dataclass
class TaskDefinitionListing:
    """What an image source found in one region."""

    task_definitions: list[TaskDefinitionImages] = field(default_factory=list)
    families_matched: int = 0
    errors: list[str] = field(default_factory=list)
