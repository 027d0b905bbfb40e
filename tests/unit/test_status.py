"""The status builder: conditions per the API conventions, bounded size, written only on change."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.core.schedule import Decision
from ecs_scan_operator.core.status import (
    MAX_STATUS_BYTES,
    READY,
    STATUS_KEYS,
    TICKETS_SYNCED,
    ActiveRun,
    Condition,
    Context,
    Trigger,
    clip_bytes,
    failed_result,
    find_condition,
    finished_status,
    idle_status,
    invalid_status,
    running_status,
    set_condition,
    status_bytes,
    status_patch,
)
from ecs_scan_operator.errors import FieldError

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def ctx(minutes: int = 0, *, generation: int = 1, jira: bool = False, suspended: bool = False) -> Context:
    now = T0 + timedelta(minutes=minutes)
    decision = Decision(
        now=now, suspended=suspended, next_time=None if suspended else T0 + timedelta(hours=1)
    )
    return Context(generation=generation, now=now, decision=decision, jira=jira)


def result(outcome: Outcome = Outcome.SUCCEEDED, **kw: Any) -> RunResult:
    r = RunResult(run_id="20250301T100000Z-abc123", policy="team-a/nightly", started=T0, **kw)
    r.images_total = 12
    r.images_by_status = {"scanned": 10, "unscannable": 1, "not_found": 1, "not_scanned": 0, "failed": 0}
    r.findings_by_severity = {
        "CRITICAL": 1,
        "HIGH": 2,
        "MEDIUM": 0,
        "LOW": 0,
        "INFORMATIONAL": 0,
        "UNTRIAGED": 0,
    }
    r.report_uri = (
        "s3://ecs-scan-reports/ecs-scan/2025-03-01/team-a/nightly/20250301T100000Z-abc123/index.json"
    )
    if outcome is Outcome.FAILED:
        r.record_error("sts: AccessDenied")
        r.finish(T0 + timedelta(minutes=2), fatal=True)
    elif outcome is Outcome.PARTIAL:
        r.fail_stage("digests", "ECR throttled")
        r.finish(T0 + timedelta(minutes=2))
    else:
        r.finish(T0 + timedelta(minutes=2))
    return r


def ready(status: Mapping[str, object]) -> Condition:
    cond = find_condition(status, READY)
    assert cond is not None
    return cond


def test_a_new_policy_is_scheduled() -> None:
    s = idle_status({}, ctx())
    r = ready(s)
    assert (r["status"], r["reason"]) == ("True", "Scheduled")
    assert "next run at 2025-03-01T11:00:00Z" in r["message"]
    assert s["nextScheduleTime"] == "2025-03-01T11:00:00Z"
    assert s["observedGeneration"] == 1 and r["observedGeneration"] == 1
    assert s["message"] == r["message"]
    assert "phase" not in s


def test_run_lifecycle_records_schedule_first_then_the_result() -> None:
    s0 = idle_status({}, ctx())
    run = ActiveRun("20250301T100000Z-abc123", T0, holder="op-1", scheduled_time=T0, run_now=None)
    s1 = running_status(s0, ctx(), run)
    assert s1["lastScheduleTime"] == "2025-03-01T10:00:00Z"
    assert s1["activeRun"]["id"] == run.run_id and s1["activeRun"]["trigger"] == "Schedule"
    assert ready(s1)["reason"] == "Running" and ready(s1)["status"] == "Unknown"
    assert "lastRunNow" not in s1

    s2 = finished_status(s1, ctx(2), result(), Trigger.SCHEDULE)
    assert "activeRun" not in s2
    assert s2["lastRun"]["result"] == "Succeeded"
    assert s2["lastRun"]["images"] == 12 and s2["lastRun"]["findings"] == 3
    assert s2["lastRun"]["findingsBySeverity"]["HIGH"] == 2
    assert s2["lastRun"]["findingsByPriority"] == {"P1": 0, "P2": 0, "P3": 0, "P4": 0}
    assert s2["lastRun"]["overdueFindings"] == 0 and s2["lastRun"]["kevFindings"] == 0
    assert s2["lastRun"]["reportUri"].startswith("s3://ecs-scan-reports/")
    assert s2["lastSuccessfulTime"] == "2025-03-01T10:02:00Z"
    assert s2["lastScheduleTime"] == "2025-03-01T10:00:00Z"
    r = ready(s2)
    assert (r["status"], r["reason"]) == ("True", "RunSucceeded")
    assert "12 images, 3 findings at or above MEDIUM" in r["message"]
    # Ready went Unknown -> True: the transition time moved
    assert r["lastTransitionTime"] == "2025-03-01T10:02:00Z"


def test_run_now_is_recorded_when_the_run_starts() -> None:
    run = ActiveRun("r1", T0, holder="op", run_now="2025-03-01-1")
    s = running_status({}, ctx(), run)
    assert s["lastRunNow"] == "2025-03-01-1"
    assert "lastScheduleTime" not in s  # a manual run does not move the schedule
    assert s["activeRun"]["trigger"] == "RunNow"
    both = ActiveRun("r2", T0, holder="op", scheduled_time=T0, run_now="x")
    assert both.trigger is Trigger.SCHEDULE_AND_RUN_NOW
    assert ActiveRun.from_status(running_status({}, ctx(), both)) == both


START = "2025-03-01T10:00:00Z"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "r1",
        [],
        {},
        {"id": "r1"},  # no start
        {"startTime": START},  # no id
        {"id": "", "startTime": START},
        {"id": None, "startTime": START},
        {"id": "r1", "startTime": "yesterday"},
        {"id": "r1", "startTime": 1740823200},
        {"id": "r1", "startTime": ""},
        {"id": ["r1"], "startTime": START},
    ],
)
def test_an_active_run_that_cannot_be_recovered_reads_as_none(raw: object) -> None:
    assert ActiveRun.from_status({"activeRun": raw}) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"id": "r1", "startTime": START}, ActiveRun("r1", T0, holder="")),
        ({"id": 7, "startTime": START, "holder": "op"}, ActiveRun("7", T0, holder="op")),
        ({"id": "r1", "startTime": "2025-03-01T10:00:00", "holder": None}, ActiveRun("r1", T0, holder="")),
        (  # an unreadable scheduled time is dropped, an empty run-now is none, unknown keys are ignored
            {"id": "r1", "startTime": START, "scheduledTime": "soon", "runNow": "", "extra": 1},
            ActiveRun("r1", T0, holder=""),
        ),
        (
            {"id": "r1", "startTime": START, "scheduledTime": START, "runNow": "x", "holder": "op"},
            ActiveRun("r1", T0, holder="op", scheduled_time=T0, run_now="x"),
        ),
    ],
)
def test_an_active_run_is_read_leniently(raw: dict[str, object], expected: ActiveRun) -> None:
    assert ActiveRun.from_status({"activeRun": raw}) == expected


@pytest.mark.parametrize(
    ("outcome", "status", "reason", "successful"),
    [
        (Outcome.SUCCEEDED, "True", "RunSucceeded", True),
        (Outcome.PARTIAL, "False", "PartialFailure", True),
        (Outcome.FAILED, "False", "RunFailed", False),
    ],
)
def test_ready_follows_the_outcome(outcome: Outcome, status: str, reason: str, successful: bool) -> None:
    s = finished_status({}, ctx(2), result(outcome), Trigger.SCHEDULE)
    r = ready(s)
    assert (r["status"], r["reason"]) == (status, reason)
    assert ("lastSuccessfulTime" in s) is successful
    if outcome is Outcome.FAILED:
        assert "sts: AccessDenied" in r["message"]


def test_last_transition_time_moves_only_when_status_flips() -> None:
    s1 = finished_status({}, ctx(2), result(), Trigger.SCHEDULE)
    first = ready(s1)["lastTransitionTime"]
    # a later run with the same status keeps the transition time, even though the message changes
    s2 = running_status(s1, ctx(60), ActiveRun("r2", T0 + timedelta(minutes=60), "op", T0))
    assert ready(s2)["status"] == "True" and ready(s2)["reason"] == "Running"
    assert ready(s2)["lastTransitionTime"] == first
    s3 = finished_status(s2, ctx(62), result(), Trigger.SCHEDULE)
    assert ready(s3)["lastTransitionTime"] == first
    # a failure flips it
    s4 = finished_status(s3, ctx(122), result(Outcome.FAILED), Trigger.SCHEDULE)
    assert ready(s4)["status"] == "False"
    assert ready(s4)["lastTransitionTime"] == "2025-03-01T12:02:00Z"


def test_set_condition_keeps_other_types_and_orders_ready_first() -> None:
    conds = set_condition([], "TicketsSynced", "True", "TicketsSynced", "ok", now=T0, generation=1)
    conds = set_condition(conds, "Ready", "True", "Scheduled", "ok", now=T0, generation=1)
    assert [c["type"] for c in conds] == ["Ready", "TicketsSynced"]
    again = set_condition(
        conds, "Ready", "True", "RunSucceeded", "x", now=T0 + timedelta(hours=1), generation=2
    )
    assert again[0]["lastTransitionTime"] == "2025-03-01T10:00:00Z" and again[0]["observedGeneration"] == 2


def test_suspended_is_not_ready_and_has_no_next_run() -> None:
    s1 = idle_status({"nextScheduleTime": "2025-03-01T11:00:00Z"}, ctx())
    s = idle_status(s1, ctx(suspended=True))
    r = ready(s)
    assert (r["status"], r["reason"]) == ("False", "Suspended")
    assert "nextScheduleTime" not in s
    assert status_patch(s1, s) is not None and status_patch(s1, s)["nextScheduleTime"] is None  # type: ignore[index]


def test_invalid_spec_names_the_fields_and_schedules_nothing() -> None:
    errors = [FieldError("spec.timeZone", "'Mars/Olympus' is not an IANA time zone name")]
    s = invalid_status({"nextScheduleTime": "2025-03-01T11:00:00Z"}, Context(generation=4, now=T0), errors)
    r = ready(s)
    assert (r["status"], r["reason"]) == ("False", "InvalidSpec")
    assert "spec.timeZone: 'Mars/Olympus' is not an IANA time zone name" in r["message"]
    assert s["observedGeneration"] == 4 and "nextScheduleTime" not in s


def test_invalid_spec_with_many_errors_stays_bounded() -> None:
    errors = [FieldError(f"spec.suppressions[{i}].vulnerabilityId", "x" * 300) for i in range(500)]
    s = invalid_status({}, Context(generation=1, now=T0), errors)
    assert "and 492 more" in ready(s)["message"] or ready(s)["message"].endswith("…")
    assert status_bytes(s) < 4096


def test_tickets_condition_only_with_jira() -> None:
    s = finished_status({}, ctx(2), result(), Trigger.SCHEDULE)
    assert find_condition(s, TICKETS_SYNCED) is None
    pending = idle_status({}, ctx(jira=True))
    assert find_condition(pending, TICKETS_SYNCED)["status"] == "Unknown"  # type: ignore[index]
    ok = result()
    ok.tickets = {"create": 2, "unchanged": 1}
    s = finished_status(pending, ctx(2, jira=True), ok, Trigger.SCHEDULE)
    cond = find_condition(s, TICKETS_SYNCED)
    assert cond is not None and (cond["status"], cond["reason"]) == ("True", "TicketsSynced")
    assert "create 2" in cond["message"]
    bad = result(Outcome.PARTIAL)
    bad.stage_failures["tickets"] = "jira: 401 Unauthorized"
    s = finished_status(s, ctx(62, jira=True), bad, Trigger.SCHEDULE)
    cond = find_condition(s, TICKETS_SYNCED)
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "TicketSyncFailed")
    assert "401" in cond["message"]
    # jira removed from the spec: the condition goes away
    s = idle_status(s, ctx(63))
    assert find_condition(s, TICKETS_SYNCED) is None


def test_dry_run_tickets_are_planned() -> None:
    r = result(dry_run=True)
    r.tickets = {"create": 3}
    s = finished_status({}, ctx(2, jira=True), r, Trigger.RUN_NOW)
    cond = find_condition(s, TICKETS_SYNCED)
    assert cond is not None and cond["reason"] == "TicketsPlanned"


def test_skipped_run_note_is_in_the_message() -> None:
    c = Context(generation=1, now=T0, decision=Decision(now=T0, next_time=T0), note="skipped the run at X")
    assert "skipped the run at X" in ready(idle_status({}, c))["message"]


def test_failed_result_for_a_run_that_never_started() -> None:
    r = failed_result("r1", "ns/p", T0, T0, "jira credentials: Secret ns/jira not found")
    s = finished_status({}, ctx(), r, Trigger.RUN_NOW)
    assert s["lastRun"]["result"] == "Failed" and "Secret ns/jira not found" in s["lastRun"]["errors"][0]
    assert ready(s)["reason"] == "RunFailed"


# --------------------------------------------------------------------------- written only on change


def test_status_patch_is_none_when_nothing_changed() -> None:
    s1 = finished_status({}, ctx(2), result(), Trigger.SCHEDULE)
    # the same facts a minute later build the same status: nothing to write
    s2 = idle_status(s1, ctx(3))
    assert status_patch(s1, s2) is None


def test_status_patch_is_a_minimal_merge_patch() -> None:
    s1 = finished_status({}, ctx(2), result(), Trigger.SCHEDULE)
    s2 = idle_status(
        s1, Context(generation=2, now=T0, decision=Decision(now=T0, next_time=T0 + timedelta(hours=2)))
    )
    patch = status_patch(s1, s2)
    assert patch is not None
    assert set(patch) == {"observedGeneration", "conditions", "nextScheduleTime", "message"}
    assert "lastRun" not in patch


def test_status_patch_removes_foreign_and_stale_keys() -> None:
    current = {"phase": "Running", "activeRun": {"id": "x", "startTime": "2025-03-01T10:00:00Z"}}
    desired = idle_status(current, ctx())
    assert set(desired) <= set(STATUS_KEYS)
    patch = status_patch(current, desired)
    assert patch is not None and patch["phase"] is None and patch["activeRun"] is None


def test_status_patch_diffs_nested_objects() -> None:
    patch = status_patch({"lastRun": {"a": 1, "b": 2}}, {"lastRun": {"a": 1, "b": 3, "c": None}})
    assert patch == {"lastRun": {"b": 3, "c": None}}
    assert status_patch({}, {"lastRun": {"a": None, "b": 1}}) == {"lastRun": {"b": 1}}


# --------------------------------------------------------------------------- bounded


def _nasty(n: int) -> str:
    # characters that grow most when the API server writes them as JSON
    return ('<&"\\\u2028\x01' * n)[:n]


def test_clip_bytes_counts_json_bytes() -> None:
    assert clip_bytes("a  b\n c", 10) == "a b c"
    clipped = clip_bytes(_nasty(1000), 100)
    assert len(json.dumps(clipped, ensure_ascii=False).encode()) + 5 * 2 * clipped.count("<") <= 200
    assert status_bytes({"m": clipped}) <= 100 + 10
    assert clip_bytes("é" * 100, 11).endswith("…")
    assert len(clip_bytes("é" * 100, 11).encode()) <= 11


def test_worst_case_status_stays_under_16_kib() -> None:
    r = RunResult(run_id=_nasty(500), policy="x", started=T0, dry_run=True)
    for i in range(50):
        r.record_error(_nasty(300) + str(i))
    r.errors = [_nasty(5000) for _ in range(50)]  # even if a caller ignores the result's own bounds
    r.errors_total = 10**12
    r.stage_failures = {_nasty(200) + str(i): _nasty(5000) for i in range(40)}
    r.images_by_status = {_nasty(100) + str(i): 10**15 for i in range(40)}
    r.findings_by_severity = {_nasty(100) + str(i): 10**15 for i in range(40)}
    r.tickets = {_nasty(100) + str(i): 10**15 for i in range(40)}
    r.images_total = r.affected_images = r.suppressed_findings = r.expired_suppressions = 10**15
    r.report_uri = _nasty(10000)
    r.finish(T0, fatal=False)
    run = ActiveRun(_nasty(500), T0, holder=_nasty(500), scheduled_time=T0, run_now=_nasty(500))
    c = Context(
        generation=10**15,
        now=T0,
        decision=Decision(now=T0, next_time=T0, skipped=T0, missed=10**6),
        threshold="INFORMATIONAL",
        jira=True,
        note=_nasty(5000),
    )
    s = finished_status({}, c, r, Trigger.SCHEDULE_AND_RUN_NOW)
    s = running_status(s, c, run)
    s["lastRun"]["stageFailures"]["tickets"] = _nasty(256)
    s = running_status(s, c, run)
    size = status_bytes(s)
    assert size < MAX_STATUS_BYTES, size
    # and the measured worst case leaves a wide margin
    assert size < 12 * 1024, size


def test_priority_and_overdue_counters_in_last_run() -> None:
    r = result()
    r.findings_by_priority = {"P1": 1, "P2": 2, "P3": 0, "P4": 0}
    r.overdue_by_priority = {"P1": 1, "P2": 0, "P3": 0, "P4": 0}
    r.kev_findings = 1
    s = finished_status(idle_status({}, ctx()), ctx(2), r, Trigger.SCHEDULE)
    last = s["lastRun"]
    assert last["findingsByPriority"] == {"P1": 1, "P2": 2, "P3": 0, "P4": 0}
    assert (last["overdueFindings"], last["kevFindings"]) == (1, 1)
