"""FindingsSource that picks ECR BASIC or Inspector ENHANCED per registry (account, region)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.ecr import EcrBasicScanner, scan_type
from ecs_scan_operator.adapters.inspector import InspectorScanner, rescan_window
from ecs_scan_operator.concurrency import DEFAULT_WORKERS, parallel_map
from ecs_scan_operator.core.coverage import RescanWindow
from ecs_scan_operator.core.model import ImageRef, ImageScan, ScanState, ScanType, Severity
from ecs_scan_operator.errors import ScanError


class RegistryFindingsSource:
    """Routes each image to the scanner its registry uses; one scan-type lookup per registry."""

    def __init__(
        self,
        clients: AwsClients,
        *,
        basic_factory: Callable[..., EcrBasicScanner] | None = None,
        registries_at_once: int = 1,
        workers_per_registry: int | None = None,
    ) -> None:
        self._clients = clients
        self._basic_factory = basic_factory or EcrBasicScanner
        self._types: dict[tuple[str, str], ScanType] = {}
        self._windows: dict[tuple[str, str], RescanWindow | None] = {}
        # Multi-account: registries (account, region) are separate rate-limit domains, read in parallel.
        self._at_once = registries_at_once
        # ... each with this many calls at once, so that all of them stay within the global cap.
        self._workers = workers_per_registry or DEFAULT_WORKERS

    def scans(
        self, images: Sequence[tuple[ImageRef, str]], severities: Sequence[Severity]
    ) -> dict[tuple[ImageRef, str], ImageScan]:
        """Findings for each (ref, digest); a registry-wide failure marks its images failed."""
        groups: dict[tuple[str, str], list[tuple[ImageRef, str]]] = defaultdict(list)
        for ref, digest in images:
            groups[(ref.account or "", ref.region or "")].append((ref, digest))
        out: dict[tuple[ImageRef, str], ImageScan] = {}
        for part in parallel_map(
            lambda g: self._registry(g[0], g[1], severities), sorted(groups.items()), self._at_once
        ):
            out.update(part)
        return out

    def rescan_window(self, account: str, region: str) -> RescanWindow | None:
        """Inspector's re-scan window for an ENHANCED registry (one GetConfiguration per registry
        and run); None under BASIC scanning, which re-scans nothing by itself."""
        key = (account, region)
        if key not in self._windows:
            acct = account if self._clients.multi_account else ""
            kind = self._types.get(key) or scan_type(self._clients, region, acct)
            self._types[key] = kind
            self._windows[key] = (
                rescan_window(self._clients, account, region) if kind is ScanType.ENHANCED else None
            )
        return self._windows[key]

    def _registry(
        self,
        where: tuple[str, str],
        items: list[tuple[ImageRef, str]],
        severities: Sequence[Severity],
    ) -> dict[tuple[ImageRef, str], ImageScan]:
        account, region = where
        # One-account policies keep their clients as they were; multi-account ones pick the account's.
        acct = account if self._clients.multi_account else ""
        try:
            kind = self._types.get(where) or scan_type(self._clients, region, acct)
            self._types[where] = kind
            if kind is ScanType.ENHANCED:
                scanner = InspectorScanner(self._clients, region, account=acct, workers=self._workers)
                return scanner.scans(items, severities)
            if acct:
                return self._basic_factory(self._clients, region, account=acct, workers=self._workers).scans(
                    items
                )
            return self._basic_factory(self._clients, region).scans(items)
        except ScanError as exc:
            cause = exc.cause
            if cause is not None and account and self._clients.multi_account and not cause.account:
                cause = dataclasses.replace(cause, account=account)
            return {
                key: ImageScan(ScanState.FAILED, reason=str(exc), cause=str(cause or "")) for key in items
            }
