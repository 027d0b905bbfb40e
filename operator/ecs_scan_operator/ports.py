"""The ports: small interfaces the pipeline needs from the outside world.

One adapter per technology implements each (adapters/), and tests pass fakes that implement
the same protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import SecretStr

from ecs_scan_operator.core.coverage import RescanWindow
from ecs_scan_operator.core.kev import KevLookup
from ecs_scan_operator.core.model import (
    Account,
    ImageRef,
    ImageScan,
    Resolution,
    Severity,
    TaskDefinitionImages,
    TaskDefinitionListing,
)
from ecs_scan_operator.core.policy import NotifyDestination, OrganizationSpec, TaskDefinitionsSpec
from ecs_scan_operator.core.state import RevisionCache
from ecs_scan_operator.core.tickets import TicketReport, TicketRequest


class Clock(Protocol):
    """Where time comes from (tests pass a fixed clock)."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class ImageSource(Protocol):
    """Task definitions that a policy selects, with their containers' images."""

    def task_definitions(
        self,
        selection: TaskDefinitionsSpec,
        region: str,
        cache: RevisionCache,
        account: str = "",
        found: Callable[[TaskDefinitionImages], None] | None = None,
    ) -> TaskDefinitionListing:
        """The selected task-definition revisions; `cache` holds revisions by ARN (they are immutable).

        `account` (multi-account policies): read in that account, through its role. `found`, when
        given, is told revisions as soon as they are read from AWS (in the source's own threads), so
        their images can be looked at before the listing is complete; a source need not call it.
        """
        ...


class AccountSource(Protocol):
    """The accounts of an AWS Organization a policy selects (spec.aws.organization)."""

    def accounts(self, org: OrganizationSpec, region: str) -> list[Account]:
        """The ACTIVE accounts selected, with their names; raise ScanError when they cannot be read."""
        ...


class TaskDefinitionTags(Protocol):
    """Tags of task-definition revisions that the running view found (they route Jira tickets)."""

    def revision_tags(
        self, arns: Sequence[str], cache: RevisionCache, now: datetime
    ) -> tuple[dict[str, tuple[tuple[str, str], ...]], list[str]]:
        """Tags by revision ARN (cached in `cache` for a while: tags are mutable) and the errors."""
        ...


class DigestResolver(Protocol):
    """Tags to digests, in each image's own registry."""

    def resolve(self, refs: Sequence[ImageRef]) -> dict[ImageRef, Resolution]:
        """Resolve scannable refs; every ref given gets an entry."""
        ...

    def repository_tags(self, refs: Sequence[ImageRef]) -> dict[tuple[str, str, str], dict[str, str]]:
        """Tags of the repositories of `refs`, keyed by (account, region, repository)."""
        ...


class FindingsSource(Protocol):
    """Current scan findings of image digests."""

    def scans(
        self,
        images: Sequence[tuple[ImageRef, str]],
        severities: Sequence[Severity],
    ) -> dict[tuple[ImageRef, str], ImageScan]:
        """Findings for each (ref, digest), limited to `severities` where the service can filter."""
        ...


class VulnerabilityIntel(Protocol):
    """What Amazon Inspector knows of CVEs beyond one finding: CISA KEV data, exploits seen."""

    ttl: timedelta  # how long an answer is reused (the state object caches it)

    def search(self, vulnerability_ids: Sequence[str], region: str, now: datetime) -> KevLookup:
        """One entry per id answered (kev None when unknown); failures in `errors`, never raised."""
        ...


@dataclass(frozen=True)
class StoredObject:
    """An object as read, with the ETag a conditional write or delete names."""

    body: bytes
    etag: str


class CoverageSettings(Protocol):
    """How long the scanner keeps re-scanning an image (Inspector's ECR re-scan window)."""

    def rescan_window(self, account: str, region: str) -> RescanWindow | None:
        """The window of one registry; None when it has none (BASIC). Raises ScanError."""
        ...


class ReportSink(Protocol):
    """Where report objects go (S3 or a local folder).

    The conditional calls are compare-and-swap on the object's ETag (S3 If-Match / If-None-Match);
    they raise ConflictError when the object is not as expected, and are what the run lease and
    the state object rely on across processes and machines.
    """

    def put(self, key: str, body: bytes, content_type: str) -> None:
        """Write one object (whole, or not at all)."""
        ...

    def get(self, key: str) -> bytes | None:
        """Read one object, or None when absent."""
        ...

    def read(self, key: str) -> StoredObject | None:
        """Read one object with its ETag, or None when absent."""
        ...

    def put_if(self, key: str, body: bytes, content_type: str, *, etag: str | None) -> str:
        """Write only if the object still has `etag` (None: only if absent); return the new ETag."""
        ...

    def delete_if(self, key: str, *, etag: str) -> None:
        """Delete only if the object still has `etag`; an absent object is not an error."""
        ...

    def uri(self, key: str) -> str:
        """Where a program finds the object (s3://… or a file path)."""
        ...

    def link(self, key: str) -> str:
        """Where a person opens the object (the S3 console URL, or a file path); never expires."""
        ...


class TicketSink(Protocol):
    """Jira (or a dry-run planner): keeps one ticket per (route, group) in step with the findings."""

    def sync(self, request: TicketRequest) -> TicketReport:
        """Create/update/close/reopen tickets for this run; never raises for per-ticket faults."""
        ...


class Notifier(Protocol):
    """Slack, Teams or a webhook: delivers one rendered message to one destination."""

    def send(self, destination: NotifyDestination, payload: Mapping[str, Any]) -> None:
        """Deliver it (retries bounded); raise ScanError when it did not go."""
        ...


@dataclass(frozen=True)
class FanOut:
    """How a multi-account run spreads its calls: per (account, region), and in all."""

    workers_per_target: int = 4
    max_concurrency: int = 64

    @property
    def targets_at_once(self) -> int:
        """(account, region) pairs read at the same time, within the global cap."""
        return max(1, self.max_concurrency // self.workers_per_target)


@dataclass
class Ports:
    """The adapters one run uses."""

    images: ImageSource
    digests: DigestResolver
    findings: FindingsSource
    reports: ReportSink
    tickets: TicketSink | None = None
    aws_calls: Callable[[], dict[str, int]] | None = None  # calls by service:Operation so far
    aws_errors: Callable[[], dict[str, int]] | None = None  # failed calls by service:Operation so far
    # The run's AWS reads are done (only report writes follow): the adapters let their clients go.
    release_reads: Callable[[], None] | None = None
    state_key: SecretStr | None = None  # authenticates the state object (core/state.py); never logged
    notifier: Notifier | None = None
    coverage: CoverageSettings | None = None  # the running view's CoverageAtRisk (issue #12)
    td_tags: TaskDefinitionTags | None = None  # the running view's revision tags, read when a route asks
    accounts: AccountSource | None = None  # spec.aws.organization: discovery
    # Multi-account: why an account may not be scanned (the allowing grant's AccountScope), or None.
    account_refusal: Callable[[str], str | None] | None = None
    fanout: FanOut = field(default_factory=FanOut)
    vulnerabilities: VulnerabilityIntel | None = None  # KEV lookups; None: kev stays unknown
