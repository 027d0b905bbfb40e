"""The demo's ENHANCED part against moto's server: a second region whose Inspector is emulated and
checked against botocore's model. The run reads its findings with the signals the report shows
(fixed versions, package managers, first observed), and the image pages carry a remediation plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from ecs_scan_operator.bootstrap import aws_clients, build_ports
from ecs_scan_operator.core.model import ScanType
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome
from ecs_scan_operator.demo.enhanced import LOG4SHELL, LOONEY, SERVICES
from ecs_scan_operator.demo.fleet import seed_fleet
from ecs_scan_operator.demo.inspector import InspectorEmulator
from ecs_scan_operator.pipeline import run_policy
from tests.support.fakes import FixedClock

pytestmark = pytest.mark.integration

EAST, WEST = "us-east-1", "us-west-2"


def _spec() -> Any:
    return parse_spec(
        {
            "schedule": "@daily",
            "aws": {"regions": [EAST, WEST]},
            "taskDefinitions": {
                "include": ["payments-*", "orders-*", "platform-*"],
                "exclude": ["*-sandbox"],
            },
            "severityThreshold": "MEDIUM",
            "report": {"s3": {"bucket": "ecs-scan-reports", "prefix": "scans"}},
        }
    )


def _inspector(fake: InspectorEmulator) -> Any:
    client = boto3.client("inspector2", region_name=WEST)
    fake.attach(client)
    return client


def test_enhanced_region_end_to_end(aws: str) -> None:
    fleet = seed_fleet(aws, region=EAST, enhanced_region=WEST)
    assert fleet.inspector is not None
    ref, spec = PolicyRef(namespace="demo", name="enhanced"), _spec()
    ports = build_ports(ref, spec, clients=aws_clients(ref, spec, hooks=fleet.hooks))
    result = run_policy(ref, spec, ports, FixedClock(), run_id="r1")
    assert result.outcome is Outcome.SUCCEEDED, result.errors
    assert fleet.inspector.rejected == []  # every request the run made is one AWS would accept
    assert fleet.inspector.calls["ListCoverage"] >= 1 and fleet.inspector.calls["ListFindings"] >= 1
    assert result.aws_calls["ecr:GetRegistryScanningConfiguration"] == 2  # BASIC east, ENHANCED west

    s3 = boto3.client("s3", region_name=EAST)
    folder = "scans/2026-11-28/demo/enhanced/r1"
    index = json.loads(s3.get_object(Bucket="ecs-scan-reports", Key=f"{folder}/index.json")["Body"].read())
    west = {i["repository"]: i for i in index["images"] if ".us-west-2." in i["image"]}
    assert set(west) == {repo for repo, *_ in SERVICES.values()}
    assert all(i["scanType"] == ScanType.ENHANCED for i in west.values())
    assert west["checkout/cron"]["report"] is None  # covered, no findings: nothing to report

    doc = json.loads(
        s3.get_object(Bucket="ecs-scan-reports", Key=f"{folder}/{west['checkout/api']['report']}")[
            "Body"
        ].read()
    )
    looney = next(f for f in doc["findings"] if f["vulnerabilityId"] == LOONEY.vid)
    assert looney["fixedVersion"] == LOONEY.fixed and looney["packageManager"] == "OS"
    first = datetime.fromisoformat(looney["firstObserved"])
    assert datetime.now(UTC) - first > timedelta(days=365)  # old enough to be past any SLA: overdue
    plan = doc["remediation"]
    assert plan["baseImageHint"] and "operating-system packages" in plan["baseImageHint"]
    assert [s["package"] for s in plan["steps"]].count("libssl3") == 2  # 3.0.13 and 3.0.14: two steps
    assert plan["noFixKnown"] == [{"vulnerabilityId": "CVE-2023-45853", "package": "zlib1g"}]

    page = s3.get_object(
        Bucket="ecs-scan-reports", Key=f"{folder}/{west['checkout/payments-gateway']['page']}"
    )
    html = page["Body"].read().decode()
    assert "upgrade log4j-core from 2.14.1 to 2.15.0" in html and "operating-system packages" not in html


def test_search_vulnerabilities_gives_cisa_kev(aws: str) -> None:
    fleet = seed_fleet(aws, region=EAST, enhanced_region=WEST)
    assert fleet.inspector is not None
    client = _inspector(fleet.inspector)
    (vuln,) = client.search_vulnerabilities(filterCriteria={"vulnerabilityIds": [LOG4SHELL.vid]})[
        "vulnerabilities"
    ]
    assert LOG4SHELL.kev is not None
    assert vuln["cisaData"]["dateDue"].date() == LOG4SHELL.kev.due
    assert vuln["epss"]["score"] == LOG4SHELL.epss
    assert (
        client.search_vulnerabilities(filterCriteria={"vulnerabilityIds": ["CVE-1999-0001"]})[
            "vulnerabilities"
        ]
        == []
    )


@pytest.mark.parametrize(
    ("operation", "params", "why"),
    [
        ("search_vulnerabilities", {"filterCriteria": {"vulnerabilityIds": ["CVE-1", "CVE-2"]}}, "at most 1"),
        ("list_findings", {"maxResults": 500}, "maximum 100"),
        ("list_coverage", {"filterCriteria": {"resourceType": [{"comparison": "LIKE", "value": "x"}]}},
         "enum"),
        ("list_findings", {"filterCriteria": {"vulnerabilityId": [{"comparison": "EQUALS", "value": "x"}]}},
         "not emulated"),
        ("list_findings", {"nextToken": "not-a-token"}, "nextToken"),
        ("list_cis_scans", {}, "not emulated"),
    ],
)  # fmt: skip
def test_requests_aws_would_refuse_are_refused(operation: str, params: dict[str, Any], why: str) -> None:
    fake = InspectorEmulator([])
    client = boto3.client("inspector2", region_name=WEST, aws_access_key_id="x", aws_secret_access_key="x")
    fake.attach(client)
    with pytest.raises(ClientError) as info:
        getattr(client, operation)(**params)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert why in info.value.response["Error"]["Message"]
