"""Amazon Inspector (ECR ENHANCED scanning): coverage and findings, batched over many digests.

Read in the registry account, or, with `spec.aws.inspectorAdminRoleArn`, in Inspector's delegated
administrator account for every member account (filtered by `awsAccountId` / `accountId`).

Under ENHANCED scanning `StartImageScan` is refused and the `ImageScanComplete` waiter never
succeeds, so neither is used. `ListCoverage` tells "scanned, no findings" from "not covered /
unsupported / scan eligibility expired"; `ListFindings` reads ACTIVE findings at or above the
threshold for up to 10 digests per call (the service's limit on a filter list), 100 per page.
`SearchVulnerabilities` reads CISA KEV data (`cisaData`) and `exploitObserved` per CVE: the model
allows one id per call (`vulnerabilityIds` min 1, max 1), so each distinct CVE the run's cache
lacks costs one call (paginated by `nextToken`), `workers` at a time; the first refusal
(AccessDenied: the role lacks inspector2:SearchVulnerabilities) stops the remaining calls.
moto has no SearchVulnerabilities: tests validate these requests with botocore's Stubber and
answer with documents validated against the operation's output shape (tests/support).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecs_scan_operator.adapters.aws_session import AwsClients, map_aws_error
from ecs_scan_operator.adapters.ecr import parse_enhanced_finding
from ecs_scan_operator.concurrency import DEFAULT_WORKERS, parallel_map
from ecs_scan_operator.core.arns import ecr_image_arn
from ecs_scan_operator.core.coverage import RescanWindow
from ecs_scan_operator.core.kev import KevEntry, KevLookup
from ecs_scan_operator.core.model import Finding, ImageRef, ImageScan, ScanState, ScanType, Severity
from ecs_scan_operator.errors import AuthError, ScanError
from ecs_scan_operator.settings import load_aws_settings

FILTER_LIST_MAX = 10
COVERAGE_PAGE = 200
FINDINGS_PAGE = 100
RESOURCE_TYPE = "AWS_ECR_CONTAINER_IMAGE"

# ListCoverage scanStatus.reason values that mean "no usable scan" (anything but ACTIVE/SUCCESSFUL).
_PENDING_REASONS = {"PENDING_INITIAL_SCAN", "SCAN_IN_PROGRESS"}


InUse = tuple[int | None, datetime | None]  # ecrImage.inUseCount, .lastInUseAt


def _in_use(item: dict[str, Any]) -> InUse:
    """Inspector's count of running ECS tasks / EKS pods on the image, and when it last saw one."""
    meta = (item.get("resourceMetadata", {}) or {}).get("ecrImage", {}) or {}
    count, at = meta.get("inUseCount"), meta.get("lastInUseAt")
    return (int(count) if count is not None else None, at if isinstance(at, datetime) else None)


def image_arn(ref: ImageRef, digest: str) -> str:
    """The ECR image ARN Inspector uses as the resource id, in the partition of the image's region."""
    return ecr_image_arn(ref.region or "", ref.account or "", ref.repository, digest)


def _eq(values: Sequence[str]) -> list[dict[str, str]]:
    return [{"comparison": "EQUALS", "value": v} for v in values]


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


class InspectorScanner:
    """Findings of ENHANCED-scanned images in one registry (account, region)."""

    def __init__(
        self, clients: AwsClients, region: str, *, workers: int = DEFAULT_WORKERS, account: str = ""
    ) -> None:
        self._i2 = clients.inspector(region, account)
        # Through Inspector's delegated administrator every member account's resources are visible:
        # coverage is asked of the one account too (findings always name theirs).
        self._coverage_account = account if clients.inspector_admin and account else ""
        self._workers = workers

    def _coverage(self, batch: Sequence[tuple[ImageRef, str]]) -> dict[str, dict[str, Any]]:
        arns = [image_arn(r, d) for r, d in batch]
        found: dict[str, dict[str, Any]] = {}
        criteria = {"resourceType": _eq([RESOURCE_TYPE]), "resourceId": _eq(arns)}
        if self._coverage_account:
            criteria["accountId"] = _eq([self._coverage_account])
        pages = self._i2.get_paginator("list_coverage").paginate(
            filterCriteria=criteria, maxResults=COVERAGE_PAGE
        )
        for resp in pages:
            for item in resp.get("coveredResources", []):
                found[str(item.get("resourceId", ""))] = item
        return found

    def _findings(
        self, account: str, digests: Sequence[str], severities: Sequence[Severity]
    ) -> dict[tuple[str, str], list[Finding]]:
        out: dict[tuple[str, str], list[Finding]] = {}
        criteria: dict[str, Any] = {
            "resourceType": _eq([RESOURCE_TYPE]),
            "awsAccountId": _eq([account]),
            "ecrImageHash": _eq(digests),
            "findingStatus": _eq(["ACTIVE"]),
        }
        if severities:
            criteria["severity"] = _eq([s.value for s in severities])
        pages = self._i2.get_paginator("list_findings").paginate(
            filterCriteria=criteria, maxResults=FINDINGS_PAGE
        )
        for resp in pages:
            for raw in resp.get("findings", []):
                for res in raw.get("resources", []):
                    img = (res.get("details", {}) or {}).get("awsEcrContainerImage", {}) or {}
                    key = (str(img.get("repositoryName", "")), str(img.get("imageHash", "")))
                    out.setdefault(key, []).append(parse_enhanced_finding(raw))
        return out

    def _coverage_batch(
        self, batch: Sequence[tuple[ImageRef, str]]
    ) -> tuple[
        dict[tuple[ImageRef, str], ImageScan], list[tuple[ImageRef, str]], dict[tuple[ImageRef, str], InUse]
    ]:
        """Scans decided by coverage alone, the images whose findings must be read, and their use counts."""
        out: dict[tuple[ImageRef, str], ImageScan] = {}
        covered: list[tuple[ImageRef, str]] = []
        in_use: dict[tuple[ImageRef, str], InUse] = {}
        try:
            coverage = self._coverage(batch)
        except (ClientError, BotoCoreError) as exc:
            err = map_aws_error(exc, "inspector2:ListCoverage")
            cause = str(err.cause or "")
            return (
                {
                    key: ImageScan(
                        ScanState.FAILED, reason=str(err), scan_type=ScanType.ENHANCED, cause=cause
                    )
                    for key in batch
                },
                [],
                {},
            )
        for ref, digest in batch:
            item = coverage.get(image_arn(ref, digest))
            if item is not None:
                in_use[(ref, digest)] = _in_use(item)
            if item is None:
                out[(ref, digest)] = ImageScan(
                    ScanState.NOT_COVERED,
                    reason="not covered by Amazon Inspector (check the registry's scan filters)",
                    scan_type=ScanType.ENHANCED,
                )
                continue
            status = item.get("scanStatus", {}) or {}
            code, reason = str(status.get("statusCode", "")), str(status.get("reason", ""))
            if code == "ACTIVE" and reason in ("SUCCESSFUL", ""):
                covered.append((ref, digest))
            elif reason in _PENDING_REASONS:
                out[(ref, digest)] = ImageScan(ScanState.PENDING, reason=reason, scan_type=ScanType.ENHANCED)
            else:
                out[(ref, digest)] = ImageScan(
                    ScanState.NOT_COVERED, reason=f"{code}: {reason}".strip(": "), scan_type=ScanType.ENHANCED
                )
        return out, covered, in_use

    def scans(
        self, images: Sequence[tuple[ImageRef, str]], severities: Sequence[Severity]
    ) -> dict[tuple[ImageRef, str], ImageScan]:
        """Coverage first; findings only for covered images. Batches run `workers` at a time."""
        out: dict[tuple[ImageRef, str], ImageScan] = {}
        covered: list[tuple[ImageRef, str]] = []
        in_use: dict[tuple[ImageRef, str], InUse] = {}
        for decided, to_read, counts in parallel_map(
            self._coverage_batch, _chunks(list(images), FILTER_LIST_MAX), self._workers
        ):
            out.update(decided)
            covered.extend(to_read)
            in_use.update(counts)
        jobs: list[tuple[str, Sequence[str], list[tuple[ImageRef, str]]]] = []
        by_account: dict[str, list[tuple[ImageRef, str]]] = {}
        for ref, digest in covered:
            by_account.setdefault(ref.account or "", []).append((ref, digest))
        for account, items in sorted(by_account.items()):
            for chunk in _chunks(sorted({d for _, d in items}), FILTER_LIST_MAX):
                jobs.append((account, chunk, [(r, d) for r, d in items if d in chunk]))

        def read(
            job: tuple[str, Sequence[str], list[tuple[ImageRef, str]]],
        ) -> dict[tuple[ImageRef, str], ImageScan]:
            account, chunk, members = job
            try:
                found = self._findings(account, chunk, severities)
            except (ClientError, BotoCoreError) as exc:
                err = map_aws_error(exc, "inspector2:ListFindings")
                cause = str(err.cause or "")
                return {
                    key: ImageScan(
                        ScanState.FAILED, reason=str(err), scan_type=ScanType.ENHANCED, cause=cause
                    )
                    for key in members
                }
            return {
                (ref, digest): ImageScan(
                    ScanState.COMPLETE,
                    tuple(found.get((ref.repository, digest), [])),
                    scan_type=ScanType.ENHANCED,
                )
                for ref, digest in members
            }

        for part in parallel_map(read, jobs, self._workers):
            out.update(part)
        for key, (count, at) in in_use.items():
            if key in out and (count is not None or at is not None):
                out[key] = replace(out[key], in_use_count=count, last_in_use_at=at)
        return out


def rescan_window(clients: AwsClients, account: str, region: str) -> RescanWindow:
    """Inspector's ECR re-scan settings of the registry in `region` (`GetConfiguration`, one call).

    Asked without `accountId`: the registry client's own account (naming another account needs
    Inspector's delegated administrator). Failures are mapped to ScanError.
    """
    try:
        acct = account if clients.multi_account else ""
        resp = clients.registry("inspector2", region, account=acct).get_configuration()
    except (ClientError, BotoCoreError) as exc:
        raise map_aws_error(exc, f"inspector2:GetConfiguration {region}") from exc
    state = (resp.get("ecrConfiguration") or {}).get("rescanDurationState") or {}
    return RescanWindow(
        account=account,
        region=region,
        rescan_duration=str(state.get("rescanDuration") or ""),
        pull_date_rescan_duration=str(state.get("pullDateRescanDuration") or ""),
        pull_date_rescan_mode=str(state.get("pullDateRescanMode") or ""),
    )


MAX_KEV_ERRORS = 3


def _day(value: object) -> date | None:
    return value.date() if isinstance(value, datetime) else None


def parse_vulnerability(raw: dict[str, Any], now: datetime) -> KevEntry:
    """One `Vulnerability` of SearchVulnerabilities: cisaData, exploitObserved and epss."""
    cisa = raw.get("cisaData") or {}
    observed = (raw.get("exploitObserved") or {}).get("lastSeen")
    score = (raw.get("epss") or {}).get("score")
    epss = float(score) if isinstance(score, int | float) and 0 <= score <= 1 else None
    return KevEntry(
        checked_at=now,
        kev=bool(cisa),
        date_added=_day(cisa.get("dateAdded")),
        date_due=_day(cisa.get("dateDue")),
        action=" ".join(str(cisa.get("action") or "").split())[:500],
        exploit_observed_at=observed if isinstance(observed, datetime) else None,
        epss=epss,
    )


class InspectorVulnerabilities:
    """VulnerabilityIntel over inspector2 SearchVulnerabilities, one CVE per call (the API's limit)."""

    def __init__(
        self, clients: AwsClients, *, workers: int | None = None, ttl: timedelta | None = None
    ) -> None:
        aws = load_aws_settings()
        self._clients = clients
        # One CVE per call: thousands on a first run, so wider than the other stages' pools
        # (`ECS_SCAN_AWS_KEV_WORKERS`; the client gets a connection per worker).
        self._workers = workers if workers is not None else aws.kev_workers
        self.ttl = ttl if ttl is not None else timedelta(hours=aws.kev_ttl_hours)

    def search(self, vulnerability_ids: Sequence[str], region: str, now: datetime) -> KevLookup:
        """What Inspector knows of each CVE; an id it does not know is entered with kev None."""
        i2 = self._clients.registry("inspector2", region, pool=self._workers)
        refused = threading.Event()

        def one(vid: str) -> KevEntry | ScanError | None:
            if refused.is_set():
                return None  # not asked: the role may not call it
            try:
                found: KevEntry | None = None
                pages = i2.get_paginator("search_vulnerabilities").paginate(
                    filterCriteria={"vulnerabilityIds": [vid]}
                )
                for resp in pages:
                    for raw in resp.get("vulnerabilities", []):
                        if str(raw.get("id", "")) == vid:
                            found = parse_vulnerability(raw, now)
                return found or KevEntry(checked_at=now, kev=None)
            except (ClientError, BotoCoreError) as exc:
                err = map_aws_error(exc, f"inspector2:SearchVulnerabilities {vid}")
                if isinstance(err, AuthError):
                    refused.set()
                return err

        out = KevLookup()
        for vid, answer in zip(
            vulnerability_ids, parallel_map(one, vulnerability_ids, self._workers), strict=True
        ):
            if isinstance(answer, KevEntry):
                out.entries[vid] = answer
                out.calls += 1
            elif isinstance(answer, ScanError):
                out.calls += 1
                out.causes.append(str(answer.cause or ""))
                if len(out.errors) < MAX_KEV_ERRORS:
                    out.errors.append(str(answer))
        return out
