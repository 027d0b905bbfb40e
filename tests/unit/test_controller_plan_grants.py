"""plan() in tenancy mode grants: refused before anything is scheduled; the allowing grant goes to the run."""

from __future__ import annotations

from typing import Any

import pytest

from ecs_scan_operator.controller.reconcile import Idle, Invalid, NotGranted, Recover, Start, plan
from ecs_scan_operator.core.grants import Grant, GrantSpec, Tenancy
from ecs_scan_operator.core.status import find_condition
from tests.unit.test_controller_plan import NOW, SPEC, obj, run_id

ALL = {"roleArns": ["*"], "regions": ["*"], "allowOperatorIdentity": True}


def tenancy(*grants: tuple[str, dict[str, Any]], labels: dict[str, str] | None = None) -> Tenancy:
    return Tenancy(tuple(Grant(n, GrantSpec.model_validate(s)) for n, s in grants), labels or {})


OPEN_TO_NS = ("ns-all", {"namespaces": {"names": ["ns"]}, "aws": ALL, "reports": [{"bucket": "*"}]})
WITH_SECRET = (
    "ns-secret",
    {
        "namespaces": {"names": ["ns"]},
        "aws": {**ALL, "externalIdSecretRef": {"namespace": "ops", "name": "ext"}},
        "reports": [{"bucket": "b-reports"}],
    },
)
OTHER_BUCKET = ("ns-other", {"namespaces": {"names": ["ns"]}, "aws": ALL, "reports": [{"bucket": "x"}]})


def test_refused_is_ready_false_access_not_granted_and_schedules_nothing() -> None:
    p = plan(obj(run_now="1"), now=NOW, identity="me", new_run_id=run_id, tenancy=tenancy(OTHER_BUCKET))
    assert isinstance(p, NotGranted)
    assert p.refusal.field == "spec.report.s3.bucket" and p.refusal.granted == ("x",)
    cond = find_condition(p.status, "Ready")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "AccessNotGranted")
    assert cond["message"].startswith("access not granted: spec.report.s3.bucket: bucket b-reports")
    assert "nextScheduleTime" not in p.status and "activeRun" not in p.status
    assert "lastRunNow" not in p.status  # the run-now stays pending until a grant allows it


@pytest.mark.parametrize(
    ("grants", "secret"),
    [((OPEN_TO_NS,), None), ((WITH_SECRET, OTHER_BUCKET), "ext"), ((OPEN_TO_NS, WITH_SECRET), None)],
)
def test_the_allowing_grant_supplies_the_external_id(grants: tuple[Any, ...], secret: str | None) -> None:
    p = plan(obj(), now=NOW, identity="me", new_run_id=run_id, tenancy=tenancy(*grants))
    assert isinstance(p, Start)
    assert (p.external_id_secret.name if p.external_id_secret else None) == secret


def test_open_mode_and_idle_and_invalid_are_as_before() -> None:
    assert isinstance(plan(obj(), now=NOW, identity="me", new_run_id=run_id), Start)
    idle = {"lastScheduleTime": "2025-03-01T11:00:00Z"}
    assert isinstance(
        plan(obj(status=idle), now=NOW, identity="me", new_run_id=run_id, tenancy=tenancy(OPEN_TO_NS)), Idle
    )
    bad = plan(
        obj(spec={**SPEC, "schedule": "nope"}), now=NOW, identity="me", new_run_id=run_id, tenancy=tenancy()
    )
    assert isinstance(bad, Invalid)  # an invalid spec is reported as invalid, not as not granted


def test_a_run_left_by_a_dead_operator_is_recorded_even_when_no_longer_granted() -> None:
    active = {
        "activeRun": {"id": "r1", "startTime": "2025-03-01T10:59:00Z", "trigger": "Schedule", "holder": "x"}
    }
    p = plan(obj(status=active), now=NOW, identity="me", new_run_id=run_id, tenancy=tenancy())
    assert isinstance(p, Recover)
