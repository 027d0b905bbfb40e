"""Amazon Inspector (inspector2), emulated for the demo's ENHANCED registry, checked against botocore.

moto has no inspector2 `ListCoverage` and ignores `ListFindings` filters, so the demo answers the
inspector2 calls itself, inside botocore: a `before-call` handler registered last on inspector2
clients returns the parsed answer and no HTTP request is made (the approach of the benchmark's
`bench/inspector_fake.py`). It is strict, so what works here would be accepted by AWS: each request
is validated with botocore's `ParamValidator` against the operation's input shape plus the list
maximums and enums botocore leaves to the server (a violation answers ValidationException), and
each answer is validated against the output shape before it is returned.

Operations: ListCoverage, ListFindings (filters on resource type, account, image hash, status,
severity), SearchVulnerabilities (one CVE a call, as the model allows: CISA KEV data and EPSS) and
GetConfiguration (the ECR rescan durations). Anything else is a ValidationException naming it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.validate import ParamValidator

RESOURCE_TYPE = "AWS_ECR_CONTAINER_IMAGE"
FINDINGS_PAGE_CAP = 25  # ListFindingsResponse.findings: max 25 in the service model


@dataclass(frozen=True)
class Kev:
    """A CISA Known Exploited Vulnerabilities entry."""

    added: date
    due: date
    action: str = "Apply mitigations per vendor instructions or discontinue use of the product."


@dataclass(frozen=True)
class DemoCve:
    """One vulnerability in one package, with the signals Inspector gives for it."""

    vid: str
    package: str
    manager: str  # Inspector's packageManager: OS, PIP, JAR, NODEPKG...
    installed: str
    fixed: str  # "" : no fix (fixAvailable NO)
    severity: str
    score: float  # inspectorScore
    epss: float
    exploit: bool = False
    last_exploit: datetime | None = None
    kev: Kev | None = None


@dataclass(frozen=True)
class DemoImage:
    """An ECR image covered by Inspector, and its findings (with when each was first observed)."""

    account: str
    region: str
    repository: str
    tag: str
    digest: str
    findings: tuple[tuple[DemoCve, datetime], ...] = ()
    in_use: int = 0

    @property
    def arn(self) -> str:
        """The resource id Inspector uses."""
        return f"arn:aws:ecr:{self.region}:{self.account}:repository/{self.repository}/{self.digest}"


class FakeValidationError(Exception):
    """The request would be refused by the service."""


def strict_errors(value: Any, shape: Any) -> list[str]:
    """botocore's ParamValidator, plus the maximums and enums it leaves to the server."""
    report = ParamValidator().validate(value, shape)
    errors = [report.generate_report()] if report.has_errors() else []
    _walk(value, shape, shape.name, errors)
    return errors


def _walk(value: Any, shape: Any, path: str, errors: list[str]) -> None:
    meta, kind = shape.metadata, shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, member in shape.members.items():
            if key in value:
                _walk(value[key], member, f"{path}.{key}", errors)
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} members, the model allows at most {meta['max']}")
        for i, item in enumerate(value):
            _walk(item, shape.member, f"{path}[{i}]", errors)
    elif kind in ("integer", "long") and isinstance(value, int) and "max" in meta and value > meta["max"]:
        errors.append(f"{path}: {value} is above the maximum {meta['max']}")
    elif kind == "string" and isinstance(value, str) and shape.enum and value not in shape.enum:
        errors.append(f"{path}: {value!r} is not one of the model's enum values")


def _matches(filters: list[dict[str, str]], value: str) -> bool:
    positive = [f for f in filters if f["comparison"] in ("EQUALS", "PREFIX")]
    if any(f["comparison"] == "NOT_EQUALS" and f["value"] == value for f in filters):
        return False
    return not positive or any(
        value == f["value"] if f["comparison"] == "EQUALS" else value.startswith(f["value"]) for f in positive
    )


def _page(rows: list[Any], body: dict[str, Any], size: int) -> tuple[list[Any], str | None]:
    query = hashlib.sha256(
        json.dumps(
            {k: v for k, v in body.items() if k not in ("nextToken", "maxResults")}, sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    start = 0
    if body.get("nextToken"):
        try:
            data = json.loads(base64.urlsafe_b64decode(str(body["nextToken"]).encode()))
        except ValueError:
            raise FakeValidationError("nextToken is not valid") from None
        if data.get("q") != query:
            raise FakeValidationError("nextToken was issued for a different request")
        start = int(data["o"])
    end = start + size
    token = base64.urlsafe_b64encode(json.dumps({"o": end, "q": query}).encode()).decode()
    return rows[start:end], (token if end < len(rows) else None)


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time(), tzinfo=timezone.utc)  # noqa: UP017 -- the model's timestamps


@dataclass
class InspectorEmulator:
    """inspector2 for the demo's ENHANCED images; attach() it to every client (AwsClients hooks)."""

    images: list[DemoImage]
    calls: Counter[str] = field(default_factory=Counter)
    rejected: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    COVERAGE_FIELDS = frozenset({"resourceType", "resourceId", "accountId", "ecrRepositoryName"})
    FINDING_FIELDS = frozenset(
        {
            "resourceType",
            "awsAccountId",
            "ecrImageHash",
            "ecrImageRepositoryName",
            "findingStatus",
            "severity",
        }
    )

    def attach(self, client: Any) -> None:
        """Answer this client's inspector2 calls (other services pass through to moto)."""
        if client.meta.service_model.service_name == "inspector2":
            client.meta.events.register_last("before-call.inspector2.*", self._answer)

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        with self._lock:
            self.calls[model.name] += 1
        raw = params.get("body") or b"{}"
        body = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ListCoverage": self._list_coverage,
            "ListFindings": self._list_findings,
            "SearchVulnerabilities": self._search_vulnerabilities,
            "GetConfiguration": self._get_configuration,
        }
        handler = handlers.get(model.name)
        if handler is None:
            return self._refuse(f"{model.name} is not emulated by the demo")
        errors = strict_errors(body, model.input_shape)
        try:
            if errors:
                raise FakeValidationError("; ".join(errors))
            out = handler(body)
        except FakeValidationError as exc:
            with self._lock:
                self.rejected.append(f"{model.name}: {exc}")
            return self._refuse(str(exc))
        errors = strict_errors(out, model.output_shape)
        if errors:  # a bug in this emulation, not in the caller
            raise AssertionError(f"emulated {model.name} answer breaks the model: {errors}")
        out["ResponseMetadata"] = {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0}
        return AWSResponse("https://inspector2.amazonaws.com", 200, HTTPHeaders(), None), out

    @staticmethod
    def _refuse(message: str) -> tuple[AWSResponse, dict[str, Any]]:
        parsed = {
            "Error": {"Code": "ValidationException", "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}, "RetryAttempts": 0},
        }
        return AWSResponse("https://inspector2.amazonaws.com", 400, HTTPHeaders(), None), parsed

    @staticmethod
    def _criteria(body: dict[str, Any], known: frozenset[str]) -> dict[str, list[dict[str, str]]]:
        criteria: dict[str, list[dict[str, str]]] = body.get("filterCriteria", {})
        unknown = set(criteria) - known
        if unknown:  # never ignore a filter silently (moto's gap)
            raise FakeValidationError(f"filter fields not emulated: {sorted(unknown)}")
        return criteria

    def _list_coverage(self, body: dict[str, Any]) -> dict[str, Any]:
        criteria = self._criteria(body, self.COVERAGE_FIELDS)
        rows = [
            img
            for img in self.images
            if all(
                _matches(criteria.get(k, []), v)
                for k, v in {
                    "resourceType": RESOURCE_TYPE,
                    "resourceId": img.arn,
                    "accountId": img.account,
                    "ecrRepositoryName": img.repository,
                }.items()
            )
        ]
        page, token = _page(rows, body, int(body.get("maxResults", 100)))
        out: dict[str, Any] = {
            "coveredResources": [
                {
                    "resourceType": RESOURCE_TYPE,
                    "resourceId": img.arn,
                    "accountId": img.account,
                    "scanType": "PACKAGE",
                    "scanStatus": {"statusCode": "ACTIVE", "reason": "SUCCESSFUL"},
                    "resourceMetadata": {
                        "ecrRepository": {"name": img.repository, "scanFrequency": "CONTINUOUS_SCAN"},
                        "ecrImage": {"tags": [img.tag], "inUseCount": img.in_use},
                    },
                }
                for img in page
            ]
        }
        if token:
            out["nextToken"] = token
        return out

    def _list_findings(self, body: dict[str, Any]) -> dict[str, Any]:
        criteria = self._criteria(body, self.FINDING_FIELDS)
        rows = []
        for img in self.images:
            for cve, first in img.findings:
                fields = {
                    "resourceType": RESOURCE_TYPE,
                    "awsAccountId": img.account,
                    "ecrImageHash": img.digest,
                    "ecrImageRepositoryName": img.repository,
                    "findingStatus": "ACTIVE",
                    "severity": cve.severity,
                }
                if all(_matches(criteria.get(k, []), v) for k, v in fields.items()):
                    rows.append((img, cve, first))
        page, token = _page(rows, body, min(int(body.get("maxResults", 100)), FINDINGS_PAGE_CAP))
        out: dict[str, Any] = {"findings": [self._finding(img, cve, first) for img, cve, first in page]}
        if token:
            out["nextToken"] = token
        return out

    @staticmethod
    def _finding(img: DemoImage, cve: DemoCve, first: datetime) -> dict[str, Any]:
        url = f"https://nvd.nist.gov/vuln/detail/{cve.vid}"
        package: dict[str, Any] = {
            "name": cve.package,
            "version": cve.installed,
            "packageManager": cve.manager,
        }
        if cve.fixed:
            package["fixedInVersion"] = cve.fixed
            package["remediation"] = f"Upgrade {cve.package} to {cve.fixed}."
        finding: dict[str, Any] = {
            "findingArn": f"arn:aws:inspector2:{img.region}:{img.account}:finding/"
            + hashlib.sha256(f"{img.digest}/{cve.vid}".encode()).hexdigest()[:32],
            "awsAccountId": img.account,
            "type": "PACKAGE_VULNERABILITY",
            "title": f"{cve.vid} - {cve.package}",
            "description": f"{cve.vid} in {cve.package} {cve.installed}.",
            "remediation": {
                "recommendation": {
                    "text": f"Upgrade {cve.package} to {cve.fixed}." if cve.fixed else "None provided"
                }
            },
            "severity": cve.severity,
            "firstObservedAt": first,
            "lastObservedAt": first,
            "updatedAt": first,
            "status": "ACTIVE",
            "inspectorScore": cve.score,
            "fixAvailable": "YES" if cve.fixed else "NO",
            "exploitAvailable": "YES" if cve.exploit else "NO",
            "epss": {"score": cve.epss},
            "resources": [
                {
                    "type": RESOURCE_TYPE,
                    "id": img.arn,
                    "partition": "aws",
                    "region": img.region,
                    "details": {
                        "awsEcrContainerImage": {
                            "repositoryName": img.repository,
                            "imageHash": img.digest,
                            "registry": img.account,
                            "imageTags": [img.tag],
                            "architecture": "amd64",
                            "platform": "DEBIAN_12",
                        }
                    },
                }
            ],
            "packageVulnerabilityDetails": {
                "vulnerabilityId": cve.vid,
                "source": "NVD",
                "sourceUrl": url,
                "referenceUrls": [url],
                "vulnerablePackages": [package],
            },
        }
        if cve.last_exploit is not None:
            finding["exploitabilityDetails"] = {"lastKnownExploitAt": cve.last_exploit}
        return finding

    def _search_vulnerabilities(self, body: dict[str, Any]) -> dict[str, Any]:
        (vid,) = body["filterCriteria"]["vulnerabilityIds"]  # the model allows exactly one
        cve = next((c for img in self.images for c, _ in img.findings if c.vid == vid), None)
        if cve is None:
            return {"vulnerabilities": []}
        vuln: dict[str, Any] = {
            "id": cve.vid,
            "source": "NVD",
            "sourceUrl": f"https://nvd.nist.gov/vuln/detail/{cve.vid}",
            "epss": {"score": cve.epss},
        }
        if cve.kev is not None:
            vuln["cisaData"] = {
                "dateAdded": _midnight(cve.kev.added),
                "dateDue": _midnight(cve.kev.due),
                "action": cve.kev.action,
            }
        if cve.last_exploit is not None:
            vuln["exploitObserved"] = {"lastSeen": cve.last_exploit}
        return {"vulnerabilities": [vuln]}

    @staticmethod
    def _get_configuration(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "ecrConfiguration": {
                "rescanDurationState": {
                    "rescanDuration": "DAYS_180",
                    "pullDateRescanDuration": "DAYS_90",
                    "status": "SUCCESS",
                }
            }
        }
