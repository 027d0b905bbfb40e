"""The generated ScanPolicy CRD on a real API server: the agreement table (tests/unit/
test_crd_agreement.py) with real schema validation, CEL and defaulting, messages that name the
field, `kubectl explain`, printer columns and the status subresource."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.fixtures import Kubectl
from tests.e2e.conftest import Api, policy
from tests.unit.test_crd_agreement import CASES, DIVERGENCES, PAST_THE_SCHEMA, Case, Divergence

pytestmark = pytest.mark.e2e


def manifest(api: Api, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": {"name": "agreement", "namespace": api.namespace},
        "spec": spec,
    }


def _names(message: str, field: str) -> bool:
    want = "spec." + field
    bare = re.sub(r"\[\d+\]", "", want)
    flat = re.sub(r"\[\d+\]", "", message)
    if want in message or bare in flat:
        return True
    # a CEL rule on the parent object names the child in its message
    parent, _, child = bare.rpartition(".")
    return parent in flat and child.removesuffix("s") in flat


def test_the_agreement_table_against_the_api_server(api: Api) -> None:
    failures = []
    for case in [*CASES, *PAST_THE_SCHEMA]:
        status, body = api.create(manifest(api, case.spec), dry_run=True)
        expected_valid = case.valid or case in PAST_THE_SCHEMA  # those only the operator refuses
        if (status == 201) != expected_valid:
            failures.append(
                f"{case.id}: HTTP {status}: {body.get('message') if isinstance(body, dict) else body}"
            )
            continue
        if status != 201:
            assert status in (400, 422), (case.id, status, body)
            message = str(body.get("message", ""))
            if not _names(message, case.field):
                failures.append(f"{case.id}: the refusal does not name spec.{case.field}: {message}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("div", DIVERGENCES, ids=lambda d: d.id)
def test_known_divergences_hold_on_the_api_server(api: Api, div: Divergence) -> None:
    status, body = api.create(manifest(api, div.spec), dry_run=True)
    assert (status == 201) is div.crd_valid, body


def test_refusals_are_422_with_the_schema_message(api: Api) -> None:
    case = next(c for c in CASES if c.id == "external-id-alone")
    status, body = api.create(manifest(api, case.spec), dry_run=True)
    assert status == 422
    assert "spec.aws.externalId is only used with spec.aws.roleArn" in body["message"]
    cause_fields = {c.get("field") for c in body["details"]["causes"]}
    assert "spec.aws.externalId" in cause_fields


def test_defaults_are_applied_by_the_api_server(api: Api) -> None:
    status, body = api.create(manifest(api, Case("min", {**CASES[0].spec}, True).spec), dry_run=True)
    assert status == 201, body
    spec = body["spec"]
    assert spec["timeZone"] == "UTC" and spec["suspend"] is False and spec["dryRun"] is False
    assert spec["severityThreshold"] == "MEDIUM" and spec["includeUntriaged"] is True
    assert spec["taskDefinitions"] == {"source": "latestRevision"}
    assert spec["report"]["s3"]["prefix"] == "ecs-scan"


def test_kubectl_explain_teaches_the_fields(api: Api, kubectl: Kubectl) -> None:
    out = kubectl("explain", "scanpolicy.spec.startingDeadlineSeconds").stdout
    assert "missed by more" in out and "604800" in out
    out = kubectl("explain", "sp.spec.aws.externalId").stdout  # the short name works too
    assert "Only with roleArn" in out
    out = kubectl("explain", "scanpolicies.spec.jira.routes").stdout
    assert "first match wins" in out
    out = kubectl("explain", "scanpolicy.status.lastRun.reportUri").stdout
    assert "index.json" in out
    out = kubectl("explain", "scanpolicy.spec.actOn").stdout
    assert "any rule matches" in out and "severityThreshold" in out
    out = kubectl("explain", "scanpolicy.spec.actOn.epssAtLeast").stdout
    assert "EPSS" in out
    out = kubectl("explain", "scanpolicy.spec.noFix").stdout
    assert "reportOnly" in out and "Default ticket" in out
    out = kubectl("explain", "scanpolicy.spec.dueDays").stdout
    assert "overdue" in out and "dateDue" in out
    out = kubectl("explain", "scanpolicy.status.lastRun.overdueFindings").stdout
    assert "due date" in out


def test_printer_columns_short_names_and_category(api: Api, kubectl: Kubectl) -> None:
    status, body = api.create(policy("cols", api.namespace))
    assert status == 201, body
    wide = kubectl("get", "scanpol", "-n", api.namespace, "-o", "wide").stdout
    header = wide.splitlines()[0].split()
    assert header[:4] == ["NAME", "READY", "REASON", "IMAGES"]
    assert {"FINDINGS", "LAST", "NEXT", "AGE", "SCHEDULE", "MESSAGE"} <= set(header)
    narrow = kubectl("get", "sp", "-n", api.namespace).stdout.splitlines()[0]
    assert "SCHEDULE" not in narrow and "MESSAGE" not in narrow
    assert "cols" in kubectl("get", "ecsscan", "-n", api.namespace).stdout
    # the spec is the user's; the status is only written through the subresource
    api.patch("cols", {"status": {"message": "ignored"}})
    assert "message" not in api.status("cols")


def test_the_example_policy_is_accepted(api: Api) -> None:
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "scanpolicy.yaml").read_text())
    status, body = api.create(manifest(api, doc["spec"]), dry_run=True)
    assert status == 201, body


def test_the_status_the_operator_writes_survives_the_schema(api: Api) -> None:
    """The API server prunes what the status schema does not declare: a round trip loses nothing."""
    from ecs_scan_operator.core.result import RunResult
    from ecs_scan_operator.core.schedule import Decision
    from ecs_scan_operator.core.status import ActiveRun, Context, Trigger, finished_status, running_status

    now = datetime(2025, 3, 1, 10, tzinfo=UTC)
    result = RunResult(run_id="r1", policy="ns/p", started=now)
    result.fail_stage("tickets", "jira down")
    result.tickets = {"create": 1}
    result.report_uri = "s3://b/k/index.json"
    result.finish(now)
    ctx = Context(generation=1, now=now, decision=Decision(now=now, next_time=now), jira=True)
    written = running_status(
        finished_status({}, ctx, result, Trigger.SCHEDULE), ctx, ActiveRun("r2", now, "me", now, "x")
    )
    status, body = api.create(policy("status-shape", api.namespace))
    assert status == 201, body
    code, body = api.cluster.request(
        "PATCH",
        f"{api.base}/status-shape/status",
        {"status": written},
        content_type="application/merge-patch+json",
    )
    assert code == 200, body
    assert api.status("status-shape") == written
