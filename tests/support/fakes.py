"""Fakes implementing the same ports as the adapters, for pipeline tests without servers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from ecs_scan_operator.core.kev import KevEntry, KevLookup
from ecs_scan_operator.core.model import (
    ContainerImage,
    Finding,
    ImageRef,
    ImageScan,
    ImageStatus,
    Resolution,
    ScanState,
    ScanType,
    Severity,
    TaskDefinitionImages,
    TaskDefinitionListing,
)
from ecs_scan_operator.core.policy import TaskDefinitionsSpec
from ecs_scan_operator.core.selection import family_selected
from ecs_scan_operator.core.state import RevisionCache
from ecs_scan_operator.errors import ConflictError, ScanError
from ecs_scan_operator.ports import StoredObject


@dataclass
class FixedClock:
    """A clock that moves only when told."""

    t: datetime = field(default_factory=lambda: datetime(2026, 11, 28, 6, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


@dataclass
class FakeImageSource:
    """Task definitions from a dict family -> [(container, image)]."""

    fleet: dict[str, list[tuple[str, str]]]
    fail_regions: set[str] = field(default_factory=set)
    described: int = 0
    # Multi-account: a fleet per account (else `fleet` in every account), accounts whose reads fail.
    by_account: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)
    fail_accounts: dict[str, ScanError] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def task_definitions(
        self,
        selection: TaskDefinitionsSpec,
        region: str,
        cache: RevisionCache,
        account: str = "",
        found: Callable[[TaskDefinitionImages], None] | None = None,
    ) -> TaskDefinitionListing:
        self.asked.append((account, region))
        if region in self.fail_regions:
            raise ScanError(f"ecs in {region}: AccessDenied")
        if account in self.fail_accounts:
            raise self.fail_accounts[account]
        out = TaskDefinitionListing()
        for family, containers in sorted(self.by_account.get(account, self.fleet).items()):
            if not family_selected(family, selection.include, selection.exclude):
                continue
            arn = f"arn:aws:ecs:{region}:{account or '123456789012'}:task-definition/{family}:1"
            td = cache.get(arn)
            if td is None:
                self.described += 1
                td = TaskDefinitionImages(
                    arn, family, 1, tuple(ContainerImage(n, i) for n, i in containers), region
                )
                cache.put(td)
                if found is not None:  # as the ECS adapter does: each revision it describes
                    found(td)
            out.task_definitions.append(td)
            out.families_matched += 1
        return out


@dataclass
class FakeDigests:
    """Digest = sha256 of the tag; tags named 'gone' do not exist."""

    def resolve(self, refs: Sequence[ImageRef]) -> dict[ImageRef, Resolution]:
        out = {}
        for r in refs:
            if r.tag == "gone":
                out[r] = Resolution(None, ImageStatus.NOT_FOUND, "tag gone not found")
            else:
                out[r] = Resolution(r.digest or f"sha256:{abs(hash(r.display)):064d}"[:71])
        return out

    def repository_tags(self, refs: Sequence[ImageRef]) -> dict[tuple[str, str, str], dict[str, str]]:
        return {
            (r.account or "", r.region or "", r.repository): {"team": r.repository.split("/")[0]}
            for r in refs
        }


@dataclass
class FakeFindings:
    """Findings per repository name; repositories named '*broken*' fail."""

    by_repo: dict[str, list[Finding]] = field(default_factory=dict)
    calls: int = 0

    def scans(
        self, images: Sequence[tuple[ImageRef, str]], severities: Sequence[Severity]
    ) -> dict[tuple[ImageRef, str], ImageScan]:
        self.calls += 1
        out = {}
        for ref, digest in images:
            if "broken" in ref.repository:
                out[(ref, digest)] = ImageScan(ScanState.FAILED, reason="ThrottlingException after retries")
            elif "uncovered" in ref.repository:
                out[(ref, digest)] = ImageScan(
                    ScanState.NOT_COVERED, reason="INACTIVE: SCAN_ELIGIBILITY_EXPIRED"
                )
            else:
                fs = [f for f in self.by_repo.get(ref.repository, []) if f.severity in severities]
                out[(ref, digest)] = ImageScan(ScanState.COMPLETE, tuple(fs), scan_type=ScanType.ENHANCED)
        return out


def _etag(body: bytes) -> str:
    return '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'


@dataclass
class MemorySink:
    """ReportSink in a dict, recording the order of writes."""

    objects: dict[str, bytes] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    fail_keys: str = ""

    def put(self, key: str, body: bytes, content_type: str) -> None:
        if self.fail_keys and self.fail_keys in key:
            raise ScanError(f"s3:PutObject {key}: AccessDenied")
        self.objects[key] = body
        self.order.append(key)

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def read(self, key: str) -> StoredObject | None:
        body = self.objects.get(key)
        return None if body is None else StoredObject(body, _etag(body))

    def put_if(self, key: str, body: bytes, content_type: str, *, etag: str | None) -> str:
        current = self.read(key)
        if (current.etag if current else None) != etag:
            raise ConflictError(f"s3:PutObject {key}: PreconditionFailed")
        self.put(key, body, content_type)
        return _etag(body)

    def delete_if(self, key: str, *, etag: str) -> None:
        current = self.read(key)
        if current is not None:
            if current.etag != etag:
                raise ConflictError(f"s3:DeleteObject {key}: PreconditionFailed")
            del self.objects[key]
            self.order.append(f"DELETE {key}")

    def uri(self, key: str) -> str:
        return f"mem://{key}"

    def link(self, key: str) -> str:
        return f"https://reports.example/{key}"


@dataclass
class FakeVulnerabilities:
    """VulnerabilityIntel from a dict CVE -> KevEntry (its checked_at is set to the call's time);
    records every id asked, per call.

    CVEs named in `refuse` fail (as an AccessDenied would); ids not in `known` are unknown to it.
    """

    known: dict[str, KevEntry] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)
    ttl: timedelta = timedelta(hours=24)
    asked: list[list[str]] = field(default_factory=list)

    def search(self, vulnerability_ids: Sequence[str], region: str, now: datetime) -> KevLookup:
        self.asked.append(list(vulnerability_ids))
        out = KevLookup()
        for vid in vulnerability_ids:
            out.calls += 1
            if vid in self.refuse:
                out.errors.append(f"inspector2:SearchVulnerabilities {vid}: AccessDeniedException")
                out.causes.append("inspector2:SearchVulnerabilities AccessDeniedException")
                continue
            entry = self.known.get(vid)
            out.entries[vid] = replace(entry, checked_at=now) if entry else KevEntry(checked_at=now, kev=None)
        return out
