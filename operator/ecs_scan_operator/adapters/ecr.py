"""Amazon ECR: tags to digests, the registry's scan type, and BASIC scan findings.

Calls go to each image's own registry account and region (parsed from the image host).
BASIC scanning: `DescribeImageScanFindings`; an image never scanned gets one `StartImageScan`
(ECR allows one per image per 24 h: `LimitExceededException` then means "already scanned
today", not throttling, so that call is made by a single-attempt client), then it is polled
with backoff up to a deadline. No fixed sleeps.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecs_scan_operator.adapters.aws_session import AwsClients, error_code, map_aws_error
from ecs_scan_operator.concurrency import DEFAULT_WORKERS, parallel_map
from ecs_scan_operator.core.arns import ecr_repository_arn
from ecs_scan_operator.core.model import (
    Finding,
    FixAvailable,
    ImageRef,
    ImageScan,
    ImageStatus,
    Resolution,
    ScanState,
    ScanType,
    Severity,
    Signals,
)
from ecs_scan_operator.errors import ScanError

log = logging.getLogger(__name__)
DESCRIBE_IMAGES_BATCH = 100
FINDINGS_PAGE = 1000


class EcrDigestResolver:
    """DigestResolver over ECR DescribeImages, batched per repository (100 ids per call)."""

    def __init__(self, clients: AwsClients, *, workers: int = DEFAULT_WORKERS) -> None:
        self._clients = clients
        self._workers = workers

    def resolve(self, refs: Sequence[ImageRef]) -> dict[ImageRef, Resolution]:
        """Every ref gets a Resolution; digests in the reference win without a lookup."""
        out: dict[ImageRef, Resolution] = {}
        by_repo: dict[tuple[str, str, str], list[ImageRef]] = defaultdict(list)
        for ref in refs:
            if ref.digest:
                out[ref] = Resolution(digest=ref.digest, tags=(ref.tag,) if ref.tag else ())
            elif ref.scannable and ref.account and ref.region and ref.tag:
                by_repo[(ref.account, ref.region, ref.repository)].append(ref)
            else:
                out[ref] = Resolution(None, ImageStatus.UNSCANNABLE, ref.reason or "not a private ECR image")
        jobs = [
            (account, region, repo, group[i : i + DESCRIBE_IMAGES_BATCH])
            for (account, region, repo), group in sorted(by_repo.items())
            for i in range(0, len(group), DESCRIBE_IMAGES_BATCH)
        ]

        def one(job: tuple[str, str, str, list[ImageRef]]) -> dict[ImageRef, Resolution]:
            account, region, repo, batch = job
            try:
                ecr = self._clients.registry("ecr", region, account=account)
            except ScanError as exc:  # multi-account: the registry account is not granted
                return {r: Resolution(None, ImageStatus.FAILED, str(exc), cause=_cause(exc)) for r in batch}
            return self._batch(ecr, account, repo, batch)

        for part in parallel_map(one, jobs, self._workers):
            out.update(part)
        return out

    def _batch(self, ecr: Any, account: str, repo: str, batch: list[ImageRef]) -> dict[ImageRef, Resolution]:
        tags = sorted({r.tag for r in batch if r.tag})
        try:
            resp = ecr.describe_images(
                registryId=account, repositoryName=repo, imageIds=[{"imageTag": t} for t in tags]
            )
        except ClientError as exc:
            if error_code(exc) == "RepositoryNotFoundException":
                return {
                    r: Resolution(None, ImageStatus.NOT_FOUND, f"repository {repo} not found") for r in batch
                }
            if error_code(exc) == "ImageNotFoundException":
                # DescribeImages fails the whole call when any one tag is missing: bisect to find it,
                # which costs about log2(batch) extra calls per missing tag instead of one call per tag.
                if len(tags) <= 1:
                    return {
                        r: Resolution(None, ImageStatus.NOT_FOUND, f"tag {r.tag} not found in {repo}")
                        for r in batch
                    }
                half = set(tags[: len(tags) // 2])
                return {
                    **self._batch(ecr, account, repo, [r for r in batch if r.tag in half]),
                    **self._batch(ecr, account, repo, [r for r in batch if r.tag not in half]),
                }
            err = map_aws_error(exc, f"ecr:DescribeImages {repo}")
            return {r: Resolution(None, ImageStatus.FAILED, str(err), cause=_cause(err)) for r in batch}
        except BotoCoreError as exc:
            err = map_aws_error(exc, f"ecr:DescribeImages {repo}")
            return {r: Resolution(None, ImageStatus.FAILED, str(err), cause=_cause(err)) for r in batch}
        found: dict[str, Resolution] = {}
        for detail in resp.get("imageDetails", []):
            res = Resolution(
                digest=str(detail["imageDigest"]),
                tags=tuple(detail.get("imageTags", [])),
            )
            for t in detail.get("imageTags", []):
                found[t] = res
        out = {}
        for r in batch:
            if r.tag in found:
                out[r] = found[r.tag]
            else:
                out[r] = Resolution(None, ImageStatus.NOT_FOUND, f"tag {r.tag} not found in {repo}")
        return out

    def repository_tags(self, refs: Sequence[ImageRef]) -> dict[tuple[str, str, str], dict[str, str]]:
        """Tags of each repository (for Jira routing), one ListTagsForResource per repository."""
        out: dict[tuple[str, str, str], dict[str, str]] = {}
        for key in sorted({(r.account or "", r.region or "", r.repository) for r in refs if r.scannable}):
            account, region, repo = key
            arn = ecr_repository_arn(region, account, repo)
            try:
                ecr = self._clients.registry("ecr", region, account=account)
                resp = ecr.list_tags_for_resource(resourceArn=arn)
            except ScanError as exc:
                log.warning("%s", exc)
                continue
            except (ClientError, BotoCoreError) as exc:
                log.warning("%s", map_aws_error(exc, f"ecr:ListTagsForResource {repo}"))
                continue  # routing falls back to the other criteria / the default route
            out[key] = {str(t["Key"]): str(t["Value"]) for t in resp.get("tags", [])}
        return out


def scan_type(clients: AwsClients, region: str, account: str = "") -> ScanType:
    """BASIC or ENHANCED for the registry in `region` (of the registry account)."""
    ecr = clients.registry("ecr", region, account=account)
    try:
        cfg = ecr.get_registry_scanning_configuration()
    except (ClientError, BotoCoreError) as exc:
        raise map_aws_error(exc, f"ecr:GetRegistryScanningConfiguration {region}") from exc
    kind = str(cfg.get("scanningConfiguration", {}).get("scanType", "BASIC")).upper()
    return ScanType.ENHANCED if kind == ScanType.ENHANCED else ScanType.BASIC


def _attr(attrs: list[dict[str, str]], key: str) -> str:
    for a in attrs:
        if a.get("key") == key:
            return str(a.get("value", ""))
    return ""


def parse_basic_finding(raw: dict[str, Any]) -> Finding:
    """An ECR BASIC finding (`findings[]`)."""
    attrs = raw.get("attributes", [])
    return Finding(
        vulnerability_id=_shared(str(raw.get("name", ""))),
        severity=Severity.parse(raw.get("severity")),
        package=_shared(_attr(attrs, "package_name")),
        installed_version=_shared(_attr(attrs, "package_version")),
        fixed_version="",
        description=_shared(str(raw.get("description", ""))[:2000]),
        url=_shared(str(raw.get("uri", ""))),
    )


def _yes_no(value: object) -> bool | None:
    text = str(value or "").upper()
    return True if text == "YES" else False if text == "NO" else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_signals(raw: dict[str, Any], pkg: dict[str, Any]) -> Signals:
    """The urgency signals of an Inspector finding, in either shape (names from the botocore models).

    inspector2 ListFindings `Finding`: epss.score, exploitAvailable, exploitabilityDetails
    .lastKnownExploitAt, fixAvailable, inspectorScore, remediation.recommendation.text.
    ECR `EnhancedImageScanFinding`: score (the Inspector score), exploitAvailable, fixAvailable,
    remediation.recommendation.text; no EPSS (SearchVulnerabilities fills it, core/kev.py).
    Per package (`VulnerablePackage`): remediation (inspector2 only) wins over the finding's text.
    Anything absent or unreadable stays unknown, never "no".
    """
    epss = _number((raw.get("epss") or {}).get("score"))
    exploit_at = (raw.get("exploitabilityDetails") or {}).get("lastKnownExploitAt")
    try:
        fix = FixAvailable(str(raw.get("fixAvailable") or "").upper())
    except ValueError:
        fix = FixAvailable.UNKNOWN
    score = raw.get("inspectorScore", raw.get("score"))
    text = str(pkg.get("remediation") or "") or str(
        ((raw.get("remediation") or {}).get("recommendation") or {}).get("text") or ""
    )
    return Signals(
        epss=epss if epss is not None and 0.0 <= epss <= 1.0 else None,
        exploit_available=_yes_no(raw.get("exploitAvailable")),
        last_known_exploit_at=exploit_at if isinstance(exploit_at, datetime) else None,
        fix_available=fix,
        inspector_score=_number(score),
        remediation=_shared(" ".join(text.split())[:1000]),
    )


def _shared(text: str) -> str:
    """One string per distinct text: a CVE's description, title and advice repeat in every image
    and package it is found in (24,270 findings of 2,759 CVEs on the benchmark's fleet L), and the
    findings are held for the whole run. Interned strings are freed when no finding holds them."""
    return sys.intern(text)


def parse_enhanced_finding(raw: dict[str, Any]) -> Finding:
    """An Inspector finding (ListFindings, or ECR `enhancedFindings[]`), with its signals."""
    details = raw.get("packageVulnerabilityDetails", {}) or {}
    packages = details.get("vulnerablePackages", []) or [{}]
    pkg = packages[0]
    refs = details.get("referenceUrls", []) or []
    first = raw.get("firstObservedAt")
    vid = str(details.get("vulnerabilityId") or raw.get("title", "")).split(" ", 1)[0]
    return Finding(
        signals=parse_signals(raw, pkg),
        vulnerability_id=_shared(vid),
        severity=Severity.parse(raw.get("severity")),
        package=_shared(str(pkg.get("name", ""))),
        installed_version=_shared(str(pkg.get("version", ""))),
        fixed_version=_shared(str(pkg.get("fixedInVersion", "") or "")),
        description=_shared(str(raw.get("description", ""))[:2000]),
        url=_shared(str(details.get("sourceUrl") or (refs[0] if refs else ""))),
        first_observed=first if isinstance(first, datetime) else None,
        title=_shared(str(raw.get("title", ""))[:300]),
        package_manager=_shared(str(pkg.get("packageManager", "") or "")),
    )


_NOT_COVERED = {"UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE", "IMAGE_ARCHIVED"}


class EcrBasicScanner:
    """Findings of BASIC-scanned images in one registry (account, region)."""

    def __init__(
        self,
        clients: AwsClients,
        region: str,
        *,
        poll_deadline: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        workers: int = DEFAULT_WORKERS,
        account: str = "",
    ) -> None:
        self._workers = workers
        self._ecr = clients.registry("ecr", region, account=account)
        self._ecr_once = clients.registry("ecr", region, single_attempt=True, account=account)
        self._deadline = poll_deadline
        self._sleep = sleep
        self._monotonic = monotonic

    def _read(self, ref: ImageRef, digest: str) -> ImageScan | None:
        """The scan when it is final; None while it is in progress."""
        findings: list[Finding] = []
        status: dict[str, Any] = {}
        completed = None
        pages = self._ecr.get_paginator("describe_image_scan_findings").paginate(
            registryId=ref.account,
            repositoryName=ref.repository,
            imageId={"imageDigest": digest},
            maxResults=FINDINGS_PAGE,
        )
        for resp in pages:
            status = resp.get("imageScanStatus", {}) or {}
            if status.get("status") in ("IN_PROGRESS", "PENDING"):
                return None
            body = resp.get("imageScanFindings", {}) or {}
            completed = body.get("imageScanCompletedAt") or completed
            findings.extend(parse_basic_finding(f) for f in body.get("findings", []))
            findings.extend(parse_enhanced_finding(f) for f in body.get("enhancedFindings", []))
        state = str(status.get("status", "COMPLETE"))
        if state in ("COMPLETE", "ACTIVE"):
            return ImageScan(
                ScanState.COMPLETE, tuple(findings), scanned_at=completed, scan_type=ScanType.BASIC
            )
        reason = f"{state}: {status.get('description', '')}".rstrip(": ")
        if state in _NOT_COVERED:
            return ImageScan(ScanState.NOT_COVERED, reason=reason, scan_type=ScanType.BASIC)
        return ImageScan(ScanState.FAILED, reason=reason, scan_type=ScanType.BASIC)

    def _start(self, ref: ImageRef, digest: str) -> ImageScan | None:
        try:
            self._ecr_once.start_image_scan(
                registryId=ref.account, repositoryName=ref.repository, imageId={"imageDigest": digest}
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "LimitExceededException":
                return ImageScan(
                    ScanState.NOT_COVERED,
                    reason="no scan result and a scan was already started in the last 24 h (ECR limit)",
                    scan_type=ScanType.BASIC,
                )
            if code == "UnsupportedImageTypeException":
                return ImageScan(
                    ScanState.NOT_COVERED, reason="unsupported image type", scan_type=ScanType.BASIC
                )
            raise
        return None

    def _first_look(self, key: tuple[ImageRef, str]) -> ImageScan | None:
        """The scan, or None while in progress; a never-scanned image gets its one StartImageScan."""
        ref, digest = key
        try:
            return self._read(ref, digest)
        except ClientError as exc:
            if error_code(exc) == "ScanNotFoundException":
                try:
                    return self._start(ref, digest)
                except (ClientError, BotoCoreError) as start_exc:
                    return _failed(start_exc, f"ecr:StartImageScan {ref.repository}")
            if error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return ImageScan(ScanState.NOT_FOUND, reason=error_code(exc), scan_type=ScanType.BASIC)
            return _failed(exc, f"ecr:DescribeImageScanFindings {ref.repository}")
        except BotoCoreError as exc:
            return _failed(exc, f"ecr:DescribeImageScanFindings {ref.repository}")

    def scans(self, images: Sequence[tuple[ImageRef, str]]) -> dict[tuple[ImageRef, str], ImageScan]:
        """Read each image's findings; start missing scans once; poll the pending ones."""
        out: dict[tuple[ImageRef, str], ImageScan] = {}
        pending: list[tuple[ImageRef, str]] = []
        for key, scan in zip(images, parallel_map(self._first_look, images, self._workers), strict=True):
            if scan is None:
                pending.append(key)
            else:
                out[key] = scan
        delay, started = 2.0, self._monotonic()
        while pending:
            if self._monotonic() - started + delay > self._deadline:
                for key in pending:
                    out[key] = ImageScan(ScanState.PENDING, reason="scan still in progress at the deadline")
                break
            self._sleep(delay)
            delay = min(delay * 2, 30.0)
            still = []
            for ref, digest in pending:
                try:
                    scan = self._read(ref, digest)
                except (ClientError, BotoCoreError) as exc:
                    scan = _failed(exc, f"ecr:DescribeImageScanFindings {ref.repository}")
                if scan is None:
                    still.append((ref, digest))
                else:
                    out[(ref, digest)] = scan
            pending = still
        return out


def _failed(exc: Exception, what: str) -> ImageScan:
    err: ScanError = map_aws_error(exc, what)
    return ImageScan(ScanState.FAILED, reason=str(err), cause=_cause(err))


def _cause(err: ScanError) -> str:
    return str(err.cause) if err.cause else ""
