"""Amazon Inspector (inspector2) ListCoverage, ListFindings and SearchVulnerabilities, emulated in
the calling process.

moto 5.2.5 has no ListCoverage or SearchVulnerabilities route and ignores ListFindings'
filterCriteria, so the ENHANCED path cannot run against it. This emulation answers those operations
from the fleet's scan profiles
(`bench/fleet.py`), inside botocore: a `before-call` handler registered last on inspector2 clients
returns the parsed response, so no HTTP request is made (the latency model, registered first, has
already accounted the call). It is strict, so that what works here would be accepted by AWS:

- the request is the JSON body botocore serialized; it is checked with botocore's own
  `ParamValidator` against the operation's input shape, and then against the constraints botocore
  does not check client-side (maximums of list lengths, integers and string lengths; enum values):
  e.g. at most 10 values per filter list, `maxResults` at most 100 (ListFindings) or 200
  (ListCoverage). A violation answers HTTP 400 ValidationException, as AWS would;
- filters are evaluated as AWS documents them: values of one field are ORed (EQUALS/PREFIX), any
  NOT_EQUALS excludes, different fields are ANDed; a filter field the emulation does not know is a
  ValidationException (so the benchmark cannot silently ignore a filter, which is moto's gap);
- pages hold at most `maxResults` items and, for ListFindings, at most 25 findings: the service
  model declares `ListFindingsResponse.findings` with max 25 members, whatever maxResults says;
  `nextToken` is opaque and bound to the request's filters;
- every response is checked against the output shape the same way before it is returned;
- SearchVulnerabilities: the model allows one id per call (`vulnerabilityIds` max 1, checked with
  the other maximums) matching `CVE-[12][0-9]{3}-[0-9]{1,10}` (checked here: botocore does not
  check patterns); the answer is derived from the CVE id: about 1 in 12 fleet CVEs is on CISA's KEV
  list (`cisaData` with dateAdded, dateDue, action), about 1 in 6 has `exploitObserved`, each has an
  EPSS score; an id not in the fleet's pool is unknown (no vulnerabilities, as AWS answers).

Its CPU time is measured (`cpu_seconds`) so it can be told apart from the pipeline's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.validate import ParamValidator

from bench.fleet import (
    ACCOUNT,
    REGION,
    Cve,
    FleetSize,
    Image,
    catalog,
    cve_description,
    cve_pool,
    findings_of,
    profile,
)

RESOURCE_TYPE = "AWS_ECR_CONTAINER_IMAGE"
FINDINGS_PAGE_CAP = 25  # ListFindingsResponse.findings: max 25 in the service model
FIRST_SEEN = datetime(2026, 10, 1, 4, 0, tzinfo=UTC)
LAST_SEEN = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
PUSHED = datetime(2026, 9, 14, 12, 0, tzinfo=UTC)
_SEVERITY_RANK = {"CRITICAL": 5, "HIGH": 4, "MEDIUM": 3, "LOW": 2, "INFORMATIONAL": 1, "UNTRIAGED": 0}


CVE_ID = re.compile(r"CVE-[12][0-9]{3}-[0-9]{1,10}")
KEV_DATE_ADDED = datetime(2026, 6, 2, tzinfo=UTC)


def _draw(vid: str, salt: str) -> int:
    return int(hashlib.sha256(f"{salt}:{vid}".encode()).hexdigest()[:8], 16)


def vulnerability(vid: str) -> dict[str, Any]:
    """The SearchVulnerabilities `Vulnerability` of a fleet CVE (deterministic from its id)."""
    out: dict[str, Any] = {
        "id": vid,
        "source": "NVD",
        "sourceUrl": f"https://nvd.nist.gov/vuln/detail/{vid}",
        "epss": {"score": round((_draw(vid, "epss") % 1000) / 1000 * ((_draw(vid, "tail") % 4) / 3), 3)},
    }
    if _draw(vid, "kev") % 12 == 0:
        out["cisaData"] = {
            "dateAdded": KEV_DATE_ADDED,
            "dateDue": KEV_DATE_ADDED + timedelta(days=21),
            "action": "Apply mitigations per vendor instructions or discontinue use of the product.",
        }
    if _draw(vid, "exploit") % 6 == 0:
        out["exploitObserved"] = {"firstSeen": FIRST_SEEN, "lastSeen": LAST_SEEN}
    return out


class FakeValidationError(Exception):
    """The request would be refused by the service."""


def strict_errors(value: Any, shape: Any) -> list[str]:
    """botocore's ParamValidator, plus the maximums and enums it leaves to the server."""
    report = ParamValidator().validate(value, shape)
    errors = [report.generate_report()] if report.has_errors() else []
    _walk(value, shape, shape.name, errors)
    return errors


def _walk(value: Any, shape: Any, path: str, errors: list[str]) -> None:  # noqa: PLR0912 - one branch per botocore shape type and constraint it validates
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, member in shape.members.items():
            if key in value:
                _walk(value[key], member, f"{path}.{key}", errors)
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} members, the model allows at most {meta['max']}")
        for i, item in enumerate(value):
            _walk(item, shape.member, f"{path}[{i}]", errors)
    elif kind == "map" and isinstance(value, dict):
        for k, v in value.items():
            _walk(v, shape.value, f"{path}[{k}]", errors)
    elif kind in ("integer", "long") and isinstance(value, int):
        if "max" in meta and value > meta["max"]:
            errors.append(f"{path}: {value} is above the maximum {meta['max']}")
    elif kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: longer than {meta['max']} characters")
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of the model's enum values")


def _matches(filters: list[dict[str, str]], value: str) -> bool:
    positive = [f for f in filters if f["comparison"] in ("EQUALS", "PREFIX")]
    negative = [f["value"] for f in filters if f["comparison"] == "NOT_EQUALS"]
    if value in negative:
        return False
    if not positive:
        return True
    return any(
        value == f["value"] if f["comparison"] == "EQUALS" else value.startswith(f["value"]) for f in positive
    )


def _select(criteria: dict[str, list[dict[str, str]]], fields: dict[str, str]) -> bool:
    return all(_matches(filters, fields[name]) for name, filters in criteria.items())


def _equals_only(filters: list[dict[str, str]] | None) -> list[str] | None:
    if filters and all(f["comparison"] == "EQUALS" for f in filters):
        return [f["value"] for f in filters]
    return None


def _token(offset: int, query: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": query}).encode()).decode()


def _offset(token: str | None, query: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        raise FakeValidationError("nextToken is not valid") from None
    if data.get("q") != query:
        raise FakeValidationError("nextToken was issued for a different request")
    return int(data["o"])


def _query_hash(body: dict[str, Any]) -> str:
    core = {k: v for k, v in body.items() if k not in ("nextToken", "maxResults")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


class InspectorFake:
    """ListCoverage + ListFindings over a fleet's images; attach() it to every client."""

    COVERAGE_FIELDS = frozenset(
        {"resourceType", "resourceId", "accountId", "ecrRepositoryName", "scanStatusCode", "scanStatusReason"}
    )
    FINDING_FIELDS = frozenset(
        {
            "resourceType",
            "awsAccountId",
            "ecrImageHash",
            "ecrImageRepositoryName",
            "ecrImageRegistry",
            "findingStatus",
            "severity",
            "findingType",
            "vulnerabilityId",
        }
    )

    def __init__(self, size: FleetSize, seed: int, *, findings_page_cap: int = FINDINGS_PAGE_CAP) -> None:
        self.seed = seed
        self.page_cap = findings_page_cap
        self._images = {img.digest: img for img in catalog(size, seed)}
        self._pool = cve_pool(seed)
        self._lock = threading.Lock()
        self.cpu_seconds = 0.0
        self.calls: Counter[str] = Counter()
        self.rejected: list[str] = []

    def attach(self, client: Any) -> None:
        """Answer inspector2 calls of this client (registered last: the call is accounted first)."""
        if client.meta.service_model.service_name == "inspector2":
            client.meta.events.register_last("before-call.*.*", self._answer)

    # --- dispatch ---

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        started = time.thread_time()
        try:
            return self._dispatch(model, params)
        finally:
            with self._lock:
                self.cpu_seconds += time.thread_time() - started

    def _dispatch(self, model: Any, params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        with self._lock:
            self.calls[model.name] += 1
        raw = params.get("body") or b"{}"
        body = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ListCoverage": self._list_coverage,
            "ListFindings": self._list_findings,
            "SearchVulnerabilities": self._search_vulnerabilities,
        }
        handler = handlers.get(model.name)
        if handler is None:
            return self._error(400, "ValidationException", f"{model.name} is not emulated by the benchmark")
        errors = strict_errors(body, model.input_shape)
        if errors:
            with self._lock:
                self.rejected.append(f"{model.name}: {'; '.join(errors)}")
            return self._error(400, "ValidationException", "; ".join(errors))
        try:
            out = handler(body)
        except FakeValidationError as exc:
            with self._lock:
                self.rejected.append(f"{model.name}: {exc}")
            return self._error(400, "ValidationException", str(exc))
        errors = strict_errors(out, model.output_shape)
        if errors:  # a bug in this emulation, not in the caller
            raise AssertionError(f"emulated {model.name} answer breaks the model: {errors}")
        out["ResponseMetadata"] = {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0}
        return AWSResponse(f"https://inspector2.{REGION}.amazonaws.com", 200, HTTPHeaders(), None), out

    @staticmethod
    def _error(status: int, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
        parsed = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
        }
        return AWSResponse(f"https://inspector2.{REGION}.amazonaws.com", status, HTTPHeaders(), None), parsed

    def _candidates(self, digests: Iterable[str] | None) -> list[Image]:
        if digests is None:
            return sorted(self._images.values(), key=lambda i: i.digest)
        return [self._images[d] for d in sorted(set(digests)) if d in self._images]

    # --- ListCoverage ---

    def _list_coverage(self, body: dict[str, Any]) -> dict[str, Any]:
        criteria: dict[str, list[dict[str, str]]] = body.get("filterCriteria", {})
        unknown = set(criteria) - self.COVERAGE_FIELDS
        if unknown:
            raise FakeValidationError(f"coverage filter fields not emulated: {sorted(unknown)}")
        ids = _equals_only(criteria.get("resourceId"))
        digests = [i.rsplit("/", 1)[-1] for i in ids] if ids is not None else None
        rows = []
        for img in self._candidates(digests):
            prof = profile(img.digest, self.seed)
            if prof.status is None:
                continue  # no coverage entry at all
            fields = {
                "resourceType": RESOURCE_TYPE,
                "resourceId": img.arn,
                "accountId": ACCOUNT,
                "ecrRepositoryName": img.repo,
                "scanStatusCode": prof.status,
                "scanStatusReason": prof.reason,
            }
            if _select(criteria, fields):
                rows.append((img, prof))
        query = _query_hash(body)
        start = _offset(body.get("nextToken"), query)
        size = int(body.get("maxResults", 100))
        out: dict[str, Any] = {
            "coveredResources": [
                {
                    "resourceType": RESOURCE_TYPE,
                    "resourceId": img.arn,
                    "accountId": ACCOUNT,
                    "scanType": "PACKAGE",
                    "scanStatus": {"statusCode": prof.status, "reason": prof.reason},
                    "resourceMetadata": {
                        "ecrRepository": {"name": img.repo, "scanFrequency": "CONTINUOUS_SCAN"},
                        "ecrImage": {"tags": [img.tag]},
                    },
                    "lastScannedAt": LAST_SEEN,
                }
                for img, prof in rows[start : start + size]
            ]
        }
        if start + size < len(rows):
            out["nextToken"] = _token(start + size, query)
        return out

    # --- SearchVulnerabilities ---

    def _search_vulnerabilities(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = body["filterCriteria"]["vulnerabilityIds"]
        bad = [v for v in ids if not CVE_ID.fullmatch(v)]
        if bad:  # the model's pattern, which botocore's validator does not check
            raise FakeValidationError(
                f"vulnerabilityIds: {bad[0]!r} does not match CVE-[12][0-9]{{3}}-[0-9]{{1,10}}"
            )
        if body.get("nextToken"):
            _offset(body["nextToken"], _query_hash(body))  # a token for another request is refused
            return {"vulnerabilities": []}
        known = {c.vid for c in self._pool}
        return {"vulnerabilities": [vulnerability(v) for v in ids if v in known]}

    # --- ListFindings ---

    def _list_findings(self, body: dict[str, Any]) -> dict[str, Any]:
        criteria: dict[str, list[dict[str, str]]] = body.get("filterCriteria", {})
        unknown = set(criteria) - self.FINDING_FIELDS
        if unknown:
            raise FakeValidationError(f"finding filter fields not emulated: {sorted(unknown)}")
        rows: list[tuple[Image, Cve]] = []
        for img in self._candidates(_equals_only(criteria.get("ecrImageHash"))):
            for cve in findings_of(img.digest, self.seed):
                fields = {
                    "resourceType": RESOURCE_TYPE,
                    "awsAccountId": ACCOUNT,
                    "ecrImageHash": img.digest,
                    "ecrImageRepositoryName": img.repo,
                    "ecrImageRegistry": ACCOUNT,
                    "findingStatus": "ACTIVE",
                    "severity": cve.severity,
                    "findingType": "PACKAGE_VULNERABILITY",
                    "vulnerabilityId": cve.vid,
                }
                if _select(criteria, fields):
                    rows.append((img, cve))
        sort = body.get("sortCriteria")
        if sort and sort["field"] == "SEVERITY":
            rows.sort(key=lambda r: _SEVERITY_RANK[r[1].severity], reverse=sort["sortOrder"] == "DESC")
        query = _query_hash(body)
        start = _offset(body.get("nextToken"), query)
        size = min(int(body.get("maxResults", 100)), self.page_cap)
        out: dict[str, Any] = {
            "findings": [self._finding(img, cve) for img, cve in rows[start : start + size]]
        }
        if start + size < len(rows):
            out["nextToken"] = _token(start + size, query)
        return out

    @staticmethod
    def _finding(img: Image, cve: Cve) -> dict[str, Any]:
        url = f"https://nvd.nist.gov/vuln/detail/{cve.vid}"
        arn_id = hashlib.sha256(f"{img.digest}/{cve.vid}".encode()).hexdigest()[:32]
        package: dict[str, Any] = {"name": cve.package, "version": cve.installed}
        if cve.fixed:
            package["fixedInVersion"] = cve.fixed
        return {
            "findingArn": f"arn:aws:inspector2:{REGION}:{ACCOUNT}:finding/{arn_id}",
            "awsAccountId": ACCOUNT,
            "type": "PACKAGE_VULNERABILITY",
            "title": f"{cve.vid} - {cve.package}",
            "description": cve_description(cve),
            "remediation": {
                "recommendation": {"text": f"Upgrade {cve.package} to {cve.fixed or 'a fixed version'}."}
            },
            "severity": cve.severity,
            "firstObservedAt": FIRST_SEEN,
            "lastObservedAt": LAST_SEEN,
            "updatedAt": LAST_SEEN,
            "status": "ACTIVE",
            "inspectorScore": cve.score,
            "fixAvailable": "YES" if cve.fixed else "NO",
            "exploitAvailable": "YES" if _draw(cve.vid, "exploit") % 6 == 0 else "NO",
            "epss": {"score": vulnerability(cve.vid)["epss"]["score"]},
            "resources": [
                {
                    "type": RESOURCE_TYPE,
                    "id": img.arn,
                    "partition": "aws",
                    "region": REGION,
                    "details": {
                        "awsEcrContainerImage": {
                            "repositoryName": img.repo,
                            "imageHash": img.digest,
                            "registry": ACCOUNT,
                            "imageTags": [img.tag],
                            "pushedAt": PUSHED,
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
