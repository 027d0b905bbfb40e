"""Issue #13 signals against the service models: parse both finding shapes, and KEV lookups.

moto has no SearchVulnerabilities and its ListFindings carries none of the signals, so:
- every finding document below is first validated against the botocore output shape it belongs
  to (inspector2 `ListFindingsResponse`, ECR `DescribeImageScanFindingsResponse`), then parsed;
- SearchVulnerabilities requests are checked by botocore's Stubber (parameter names, types and the
  model's pattern) with the exact parameters expected (one CVE per call: the model's max 1), and
  its answers are validated by the Stubber against the output shape.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from ecs_scan_operator.adapters.ecr import parse_basic_finding, parse_enhanced_finding
from ecs_scan_operator.adapters.inspector import InspectorVulnerabilities
from ecs_scan_operator.core.model import FixAvailable
from ecs_scan_operator.core.priority import signal_cells
from tests.integration.test_aws_stubbed import REGION, Stubs


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Stubs:
    return Stubs(monkeypatch)


pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
_SESSION = botocore.session.get_session()


def valid(service: str, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    shape = _SESSION.get_service_model(service).operation_model(operation).output_shape
    assert shape is not None
    report = ParamValidator().validate(body, shape)
    assert not report.has_errors(), report.generate_report()
    return body


def inspector_finding(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "findingArn": "arn:aws:inspector2:eu-west-1:123456789012:finding/1",
        "awsAccountId": "123456789012",
        "type": "PACKAGE_VULNERABILITY",
        "description": "d",
        "severity": "HIGH",
        "status": "ACTIVE",
        "firstObservedAt": datetime(2026, 9, 1, tzinfo=UTC),
        "lastObservedAt": NOW,
        "title": "CVE-2024-1 - openssl",
        "remediation": {"recommendation": {"text": "Upgrade openssl.", "Url": "https://x"}},
        "resources": [{"type": "AWS_ECR_CONTAINER_IMAGE", "id": "r"}],
        "inspectorScore": 8.1,
        "fixAvailable": "YES",
        "exploitAvailable": "YES",
        "exploitabilityDetails": {"lastKnownExploitAt": datetime(2026, 11, 1, tzinfo=UTC)},
        "epss": {"score": 0.42},
        "packageVulnerabilityDetails": {
            "vulnerabilityId": "CVE-2024-1",
            "source": "NVD",
            "vulnerablePackages": [
                {
                    "name": "openssl",
                    "version": "3.0.11",
                    "fixedInVersion": "3.0.13",
                    "remediation": "yum update openssl",
                }
            ],
        },
    }
    raw.update(over)
    return raw


def ecr_finding(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "awsAccountId": "123456789012",
        "description": "d",
        "findingArn": "arn:1",
        "severity": "CRITICAL",
        "status": "ACTIVE",
        "title": "CVE-2024-2 - zlib",
        "score": 9.8,
        "fixAvailable": "NO",
        "exploitAvailable": "NO",
        "remediation": {"recommendation": {"text": "No fix yet.", "url": "https://x"}},
        "packageVulnerabilityDetails": {
            "vulnerabilityId": "CVE-2024-2",
            "vulnerablePackages": [{"name": "zlib", "version": "1.2.11"}],
        },
    }
    raw.update(over)
    return raw


def test_inspector_list_findings_shape_gives_every_signal() -> None:
    raw = valid("inspector2", "ListFindings", {"findings": [inspector_finding()]})["findings"][0]
    f = parse_enhanced_finding(raw)
    s = f.signals
    assert (s.epss, s.exploit_available, s.fix_available, s.inspector_score) == (
        0.42,
        True,
        FixAvailable.YES,
        8.1,
    )
    assert s.last_known_exploit_at == datetime(2026, 11, 1, tzinfo=UTC)
    assert s.remediation == "yum update openssl"  # the package's own remediation wins
    assert f.fixed_version == "3.0.13" and f.first_observed == datetime(2026, 9, 1, tzinfo=UTC)
    assert s.kev is None  # only SearchVulnerabilities says


def test_ecr_enhanced_findings_shape_has_no_epss() -> None:
    body = {"imageScanFindings": {"enhancedFindings": [ecr_finding()]}}
    raw = valid("ecr", "DescribeImageScanFindings", body)["imageScanFindings"]["enhancedFindings"][0]
    s = parse_enhanced_finding(raw).signals
    assert (s.epss, s.exploit_available, s.fix_available, s.inspector_score) == (
        None,
        False,
        FixAvailable.NO,
        9.8,
    )
    assert s.remediation == "No fix yet."


@pytest.mark.parametrize(
    "over",
    [
        {"fixAvailable": "MAYBE"},
        {"exploitAvailable": "SOMETIMES"},
        {"epss": {"score": 7.0}},
        {"epss": {}},
        {"inspectorScore": True},
        {"remediation": {}},
        {"exploitabilityDetails": {}},
    ],
)
def test_odd_values_stay_unknown(over: dict[str, Any]) -> None:
    base = {
        k: v for k, v in inspector_finding().items() if k not in ("fixAvailable", "exploitAvailable", "epss")
    }
    f = parse_enhanced_finding({**base, **over})
    cells = signal_cells(f)
    assert "no" not in (cells["fixAvailable"], cells["exploitAvailable"])  # never "no" without an answer


def test_basic_findings_have_no_signals() -> None:
    raw = {"name": "CVE-2024-3", "severity": "HIGH", "attributes": [{"key": "package_name", "value": "curl"}]}
    cells = signal_cells(parse_basic_finding(raw))
    assert {cells[k] for k in ("epss", "exploitAvailable", "kev", "fixAvailable", "inspectorScore")} == {
        "unknown"
    }


def vulnerability(cve: str, *, kev: bool, observed: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id": cve, "source": "NVD", "epss": {"score": 0.31}}
    if kev:
        out["cisaData"] = {
            "dateAdded": datetime(2026, 3, 1, tzinfo=UTC),
            "dateDue": datetime(2026, 3, 22, tzinfo=UTC),
            "action": "Apply mitigations per vendor instructions or discontinue use.",
        }
    if observed:
        out["exploitObserved"] = {
            "firstSeen": datetime(2026, 2, 1, tzinfo=UTC),
            "lastSeen": datetime(2026, 11, 2, tzinfo=UTC),
        }
    return out


def ask(cve: str, token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"filterCriteria": {"vulnerabilityIds": [cve]}}
    if token:
        params["nextToken"] = token
    return params


def test_search_vulnerabilities_one_cve_per_call_pages_followed(stubs: Stubs) -> None:
    intel = InspectorVulnerabilities(stubs.clients, workers=1, ttl=timedelta(hours=1))
    stubs.clients.registry("inspector2", REGION)
    i2 = stubs.stub("inspector2")
    i2.add_response("search_vulnerabilities", {"vulnerabilities": [], "nextToken": "t2"}, ask("CVE-2024-1"))
    i2.add_response(
        "search_vulnerabilities",
        {"vulnerabilities": [vulnerability("CVE-2024-1", kev=True)]},
        ask("CVE-2024-1", "t2"),
    )
    i2.add_response(
        "search_vulnerabilities",
        {"vulnerabilities": [vulnerability("CVE-2024-2", kev=False, observed=True)]},
        ask("CVE-2024-2"),
    )
    i2.add_response("search_vulnerabilities", {"vulnerabilities": []}, ask("CVE-2024-3"))
    out = intel.search(["CVE-2024-1", "CVE-2024-2", "CVE-2024-3"], REGION, NOW)
    stubs.assert_done()
    assert out.errors == [] and out.calls == 3
    one, two, three = (out.entries[c] for c in ("CVE-2024-1", "CVE-2024-2", "CVE-2024-3"))
    assert (one.kev, one.date_added, one.date_due, one.checked_at) == (
        True,
        date(2026, 3, 1),
        date(2026, 3, 22),
        NOW,
    )
    assert one.action.startswith("Apply mitigations") and one.epss == 0.31
    assert two.kev is False and two.exploit_observed_at == datetime(2026, 11, 2, tzinfo=UTC)
    assert three.kev is None  # unknown to Inspector: not "not KEV"


def test_a_refused_search_stops_the_remaining_calls(stubs: Stubs) -> None:
    intel = InspectorVulnerabilities(stubs.clients, workers=1, ttl=timedelta(hours=1))
    stubs.clients.registry("inspector2", REGION)
    stubs.stub("inspector2").add_client_error(
        "search_vulnerabilities",
        "AccessDeniedException",
        "not authorized",
        403,
        expected_params=ask("CVE-2024-1"),
    )
    out = intel.search(["CVE-2024-1", "CVE-2024-2", "CVE-2024-3"], REGION, NOW)
    stubs.assert_done()  # one call only: the Stubber would refuse a second one
    assert out.entries == {} and out.calls == 1
    assert out.causes == ["inspector2:SearchVulnerabilities AccessDeniedException"]
    assert "SearchVulnerabilities" in out.errors[0]


def test_the_model_allows_one_id_per_call() -> None:
    shape = _SESSION.get_service_model("inspector2").operation_model("SearchVulnerabilities").input_shape
    assert shape is not None
    criteria: Any = shape.members["filterCriteria"]
    ids = criteria.members["vulnerabilityIds"]
    assert (ids.metadata["min"], ids.metadata["max"]) == (1, 1)  # why the adapter asks one at a time
