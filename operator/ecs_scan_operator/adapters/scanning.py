"""FindingsSource that picks ECR BASIC or Inspector ENHANCED per registry (account, region)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.ecr import EcrBasicScanner, scan_type
from ecs_scan_operator.adapters.inspector import InspectorScanner, rescan_window
from ecs_scan_operator.core.coverage import RescanWindow
from ecs_scan_operator.core.model import ImageRef, ImageScan, ScanState, ScanType, Severity
from ecs_scan_operator.errors import ScanError


class RegistryFindingsSource:
    """Routes each image to the scanner its registry uses; one scan-type lookup per registry."""

    def __init__(
        self,
        clients: AwsClients,
        *,
        basic_factory: Callable[[AwsClients, str], EcrBasicScanner] | None = None,
    ) -> None:
        self._clients = clients
        self._basic_factory = basic_factory or EcrBasicScanner
        self._types: dict[tuple[str, str], ScanType] = {}
        self._windows: dict[tuple[str, str], RescanWindow | None] = {}

    def scans(
        self, images: Sequence[tuple[ImageRef, str]], severities: Sequence[Severity]
    ) -> dict[tuple[ImageRef, str], ImageScan]:
        """Findings for each (ref, digest); a registry-wide failure marks its images failed."""
        groups: dict[tuple[str, str], list[tuple[ImageRef, str]]] = defaultdict(list)
        for ref, digest in images:
            groups[(ref.account or "", ref.region or "")].append((ref, digest))
        out: dict[tuple[ImageRef, str], ImageScan] = {}
        for (account, region), items in sorted(groups.items()):
            try:
                kind = self._types.get((account, region)) or scan_type(self._clients, region)
                self._types[(account, region)] = kind
                if kind is ScanType.ENHANCED:
                    out.update(InspectorScanner(self._clients, region).scans(items, severities))
                else:
                    out.update(self._basic_factory(self._clients, region).scans(items))
            except ScanError as exc:
                for key in items:
                    out[key] = ImageScan(ScanState.FAILED, reason=str(exc), cause=str(exc.cause or ""))
        return out

    def rescan_window(self, account: str, region: str) -> RescanWindow | None:
        """Inspector's re-scan window for an ENHANCED registry (one GetConfiguration per registry
        and run); None under BASIC scanning, which re-scans nothing by itself."""
        key = (account, region)
        if key not in self._windows:
            kind = self._types.get(key) or scan_type(self._clients, region)
            self._types[key] = kind
            self._windows[key] = (
                rescan_window(self._clients, account, region) if kind is ScanType.ENHANCED else None
            )
        return self._windows[key]
