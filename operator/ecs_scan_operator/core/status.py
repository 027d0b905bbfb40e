"""The ScanPolicy status: built from the spec's schedule and run results, bounded, diffed. Pure.

Follows the Kubernetes API conventions: `observedGeneration`, conditions as a map keyed by
`type` whose `lastTransitionTime` moves only when `status` flips, one summary condition
`Ready`, no `phase`. The status holds counters and the report's URI, never per-image or
per-finding lists, and every text in it is clipped by bytes, so its worst case stays far under
`MAX_STATUS_BYTES`. Builders return the whole desired status; `status_patch` turns the
difference from the current status into a JSON merge patch, or None when there is nothing to
write (the status is written only when it changes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, NotRequired, TypedDict, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ecs_scan_operator.core.coverage import SETTING
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.core.schedule import Decision, format_time, parse_time
from ecs_scan_operator.errors import FieldError

#: The status budget (etcd takes 1.5 MiB per object, but a status is read on every list/watch).
MAX_STATUS_BYTES = 16 * 1024

# Byte budgets of the free-text parts; the worst case of the whole status is tested.
MESSAGE_BYTES = 1024
TICKETS_MESSAGE_BYTES = 512
ERROR_BYTES = 256
MAX_ERRORS = 5
MAX_STAGE_FAILURES = 6
STAGE_KEY_BYTES = 64
MAX_COUNTER_KEYS = 12
COUNTER_KEY_BYTES = 40
ID_BYTES = 128
URI_BYTES = 512
MAX_FIELD_ERRORS = 8

READY = "Ready"
TICKETS_SYNCED = "TicketsSynced"
COVERAGE_AT_RISK = "CoverageAtRisk"

# The keys this module owns; anything else found in a status is dropped on the next write.
STATUS_KEYS = (
    "observedGeneration",
    "conditions",
    "lastScheduleTime",
    "lastSuccessfulTime",
    "nextScheduleTime",
    "lastRunNow",
    "activeRun",
    "lastRun",
    "message",
)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """One entry of `status.conditions` (metav1.Condition)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class ActiveRunStatus(TypedDict):
    """`status.activeRun`: the run in progress, written before it starts."""

    id: str
    startTime: str
    trigger: str
    holder: str
    scheduledTime: NotRequired[str]
    runNow: NotRequired[str]


class LastRunStatus(TypedDict):
    """`status.lastRun`: the bounded summary of the last finished run."""

    id: str
    trigger: str
    startTime: str
    result: str
    dryRun: bool
    images: int
    imagesByStatus: dict[str, int]
    affectedImages: int
    findings: int
    findingsBySeverity: dict[str, int]
    findingsByPriority: NotRequired[dict[str, int]]
    overdueFindings: NotRequired[int]
    kevFindings: NotRequired[int]
    suppressedFindings: int
    expiredSuppressions: int
    errors: list[str]
    errorsTotal: int
    stageFailures: dict[str, str]
    tickets: dict[str, int]
    completionTime: NotRequired[str]
    reportUri: NotRequired[str]
    errorCauses: NotRequired[str]
    # The running view only (issue #12): absent for policies without one.
    redeployNeeded: NotRequired[int]
    coverageAtRisk: NotRequired[int]
    imagesByAccount: NotRequired[dict[str, int]]
    affectedByAccount: NotRequired[dict[str, int]]


class ScanPolicyStatus(TypedDict, total=False):
    """The ScanPolicy `status` this module builds (the keys of STATUS_KEYS)."""

    observedGeneration: int
    conditions: list[Condition]
    lastScheduleTime: str
    lastSuccessfulTime: str
    nextScheduleTime: str
    lastRunNow: str
    activeRun: ActiveRunStatus
    lastRun: LastRunStatus
    message: str


class Reason(StrEnum):
    """Reasons of the Ready and TicketsSynced conditions (CamelCase, per the API conventions)."""

    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    PARTIAL_FAILURE = "PartialFailure"
    INVALID_SPEC = "InvalidSpec"
    ACCESS_NOT_GRANTED = "AccessNotGranted"
    SUSPENDED = "Suspended"
    TICKETS_SYNCED = "TicketsSynced"
    TICKETS_PLANNED = "TicketsPlanned"
    TICKET_SYNC_FAILED = "TicketSyncFailed"
    NOT_SYNCED_YET = "NotSyncedYet"
    RESCAN_WINDOW_EXCEEDED = "RescanWindowExceeded"
    WITHIN_RESCAN_WINDOW = "WithinRescanWindow"
    RESCAN_WINDOW_UNKNOWN = "RescanWindowUnknown"


_OUTCOME_REASON = {
    Outcome.SUCCEEDED.value: Reason.RUN_SUCCEEDED,
    Outcome.PARTIAL.value: Reason.PARTIAL_FAILURE,
    Outcome.FAILED.value: Reason.RUN_FAILED,
}


class Trigger(StrEnum):
    """Why a run started."""

    SCHEDULE = "Schedule"
    RUN_NOW = "RunNow"
    SCHEDULE_AND_RUN_NOW = "ScheduleAndRunNow"


def _encoded_len(ch: str) -> int:
    # Bytes one character takes in the JSON the API server writes (Go escapes <, > and & as
    # \u003c, control characters as \u00XX, and U+2028/U+2029), so the budgets are real bytes.
    if ch in '"\\':
        return 2
    if ch in "<>&\u2028\u2029" or ord(ch) < 0x20:
        return 6
    return len(ch.encode())


def clip_bytes(text: object, limit: int) -> str:
    """One line that takes at most `limit` bytes as JSON, cut on a character with an ellipsis."""
    line = " ".join(str(text).split())
    out: list[str] = []
    used = 0
    for ch in line:
        cost = _encoded_len(ch)
        if used + cost > limit:
            while out and used + 3 > limit:  # room for the ellipsis (3 bytes)
                used -= _encoded_len(out.pop())
            return "".join(out) + "…"
        out.append(ch)
        used += cost
    return line


@dataclass(frozen=True)
class ActiveRun:
    """A run in progress, recorded in the status before it starts (so a restart knows of it)."""

    run_id: str
    started: datetime
    holder: str
    scheduled_time: datetime | None = None  # the fire time it fulfils, if any
    run_now: str | None = None  # the run-now annotation value it fulfils, if any

    @property
    def trigger(self) -> Trigger:
        """Why this run started."""
        if self.scheduled_time and self.run_now:
            return Trigger.SCHEDULE_AND_RUN_NOW
        return Trigger.SCHEDULE if self.scheduled_time else Trigger.RUN_NOW

    def to_dict(self) -> ActiveRunStatus:
        """The `status.activeRun` form."""
        out: ActiveRunStatus = {
            "id": clip_bytes(self.run_id, ID_BYTES),
            "startTime": format_time(self.started),
            "trigger": self.trigger.value,
            "holder": clip_bytes(self.holder, ID_BYTES),
        }
        if self.scheduled_time:
            out["scheduledTime"] = format_time(self.scheduled_time)
        if self.run_now:
            out["runNow"] = clip_bytes(self.run_now, ID_BYTES)
        return out

    @classmethod
    def from_status(cls, status: Mapping[str, object]) -> ActiveRun | None:
        """Read `status.activeRun`, None when absent or unreadable."""
        raw = status.get("activeRun")
        if not isinstance(raw, Mapping):
            return None
        try:
            doc = _ActiveRunDoc.model_validate(raw)
        except ValidationError:  # no id or no readable start: not a run this operator can recover
            return None
        return cls(
            run_id=doc.id,
            started=doc.start_time,
            holder=doc.holder,
            scheduled_time=doc.scheduled_time,
            run_now=doc.run_now,
        )


class _ActiveRunDoc(BaseModel):
    """`status.activeRun` as read back: lenient where the status may hold anything (a person can edit it)."""

    model_config = ConfigDict(frozen=True, coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    start_time: datetime = Field(alias="startTime")
    holder: str = ""
    scheduled_time: datetime | None = Field(None, alias="scheduledTime")
    run_now: str | None = Field(None, alias="runNow")

    @field_validator("start_time", "scheduled_time", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> datetime | None:
        # The status's own time format (RFC 3339, naive read as UTC); unreadable is None (so a
        # start that cannot be read refuses the whole record, a scheduled time is just dropped).
        return parse_time(value)

    @field_validator("holder", mode="before")
    @classmethod
    def _holder(cls, value: object) -> object:
        return value or ""

    @field_validator("run_now", mode="before")
    @classmethod
    def _run_now(cls, value: object) -> object:
        return value or None


@dataclass(frozen=True)
class Context:
    """What every builder needs besides the current status."""

    generation: int
    now: datetime
    decision: Decision | None = None  # None when the spec is invalid
    threshold: str = "MEDIUM"
    jira: bool = False  # spec.jira is set: the TicketsSynced condition is kept
    note: str = ""  # e.g. a skipped run, said in the Ready message


# --------------------------------------------------------------------------- conditions


def find_condition(status: Mapping[str, object], type_: str) -> Condition | None:
    """The condition of that type, or None."""
    conditions = status.get("conditions")
    for cond in conditions if isinstance(conditions, list) else []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cast(Condition, dict(cond))  # read back as this module wrote it
    return None


def set_condition(
    conditions: Sequence[Mapping[str, object]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int,
) -> list[Condition]:
    """Upsert one condition; its lastTransitionTime changes only when `status` changes."""
    out: list[Condition] = []
    previous = None
    for cond in conditions:
        if cond.get("type") == type_:
            previous = cond
        else:
            out.append(cast(Condition, dict(cond)))  # another writer's condition, kept as it is
    since = format_time(now)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        since = str(previous["lastTransitionTime"])
    new: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": clip_bytes(message, MESSAGE_BYTES),
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    out.append(new)
    order = {READY: 0, TICKETS_SYNCED: 1}
    out.sort(key=lambda c: (order.get(str(c.get("type")), 9), str(c.get("type"))))
    return out


def remove_condition(conditions: Sequence[Mapping[str, object]], type_: str) -> list[Condition]:
    """Drop one condition type."""
    return [cast(Condition, dict(c)) for c in conditions if c.get("type") != type_]


# --------------------------------------------------------------------------- lastRun


def _counters(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    items = sorted((clip_bytes(k, COUNTER_KEY_BYTES), v) for k, v in value.items() if isinstance(v, int))
    return dict(items[:MAX_COUNTER_KEYS])


def last_run_from_result(result: RunResult, trigger: Trigger) -> LastRunStatus:
    """The bounded `status.lastRun` form of a run result."""
    full = result.to_dict()
    failures = sorted(full["stageFailures"].items())[:MAX_STAGE_FAILURES]
    out: LastRunStatus = {
        "id": clip_bytes(result.run_id, ID_BYTES),
        "trigger": trigger.value,
        "startTime": format_time(result.started),
        "result": result.outcome.value,
        "dryRun": result.dry_run,
        "images": result.images_total,
        "imagesByStatus": _counters(full["imagesByStatus"]),
        "affectedImages": result.affected_images,
        "findings": result.findings_total,
        "findingsBySeverity": _counters(full["findingsBySeverity"]),
        "findingsByPriority": _counters(full["findingsByPriority"]),
        "overdueFindings": result.overdue_findings,
        "kevFindings": result.kev_findings,
        "suppressedFindings": result.suppressed_findings,
        "expiredSuppressions": result.expired_suppressions,
        "errors": [clip_bytes(e, ERROR_BYTES) for e in result.errors[:MAX_ERRORS]],
        "errorsTotal": max(result.errors_total, len(result.errors)),
        "stageFailures": {clip_bytes(k, STAGE_KEY_BYTES): clip_bytes(v, ERROR_BYTES) for k, v in failures},
        "tickets": _counters(full["tickets"]),
    }
    if result.completed:
        out["completionTime"] = format_time(result.completed)
    if result.report_uri:
        out["reportUri"] = clip_bytes(result.report_uri, URI_BYTES)
    if result.error_causes:
        out["errorCauses"] = clip_bytes(result.causes_text(), ERROR_BYTES)
    if result.running_view:
        out["redeployNeeded"] = result.redeploy_needed
        out["coverageAtRisk"] = result.coverage_at_risk
    if result.account_images:  # multi-account: the top accounts, the rest as "other" (11 keys at most)
        out["imagesByAccount"] = result.by_account(result.account_images)
        out["affectedByAccount"] = result.by_account(result.account_affected)
    return out


def _coverage_condition(conditions: list[Condition], ctx: Context, result: RunResult) -> list[Condition]:
    """CoverageAtRisk after a run with a running view: digests that ran past Inspector's re-scan
    window, naming the setting; removed for policies without a running view (and failed runs keep
    what the last one said)."""
    if result.outcome is Outcome.FAILED:
        return conditions
    if not result.running_view:
        return remove_condition(conditions, COVERAGE_AT_RISK)
    args: tuple[ConditionStatus, Reason, str]
    if result.coverage_at_risk:
        shown = "; ".join(result.rescan_windows[:3])
        more = f" and {len(result.rescan_windows) - 3} more" if len(result.rescan_windows) > 3 else ""
        args = (
            "True",
            Reason.RESCAN_WINDOW_EXCEEDED,
            f"{result.coverage_at_risk} running images ran longer than Amazon Inspector re-scans them "
            f"({SETTING}: {shown}{more}); their findings may be stale (see the report's coverageAtRisk)",
        )
    elif result.coverage_unknown:
        args = ("Unknown", Reason.RESCAN_WINDOW_UNKNOWN, f"{SETTING} unreadable: {result.coverage_unknown}")
    else:
        args = (
            "False",
            Reason.WITHIN_RESCAN_WINDOW,
            "every running image is within Inspector's re-scan window",
        )
    status, reason, message = args
    return set_condition(
        conditions,
        COVERAGE_AT_RISK,
        status,
        reason.value,
        clip_bytes(message, TICKETS_MESSAGE_BYTES),
        now=ctx.now,
        generation=ctx.generation,
    )


def failed_result(run_id: str, policy: str, started: datetime, completed: datetime, error: str) -> RunResult:
    """A result for a run that could not start or did not finish (no pipeline result exists)."""
    result = RunResult(run_id=run_id, policy=policy, started=started)
    result.record_error(error)
    result.finish(completed, fatal=True)
    return result


# --------------------------------------------------------------------------- messages


def _run_summary(last: LastRunStatus, threshold: str) -> str:
    result = last.get("result", "?")
    text = f"run {last.get('id', '?')} {str(result).lower()}"
    causes = f" (causes: {last['errorCauses']})" if last.get("errorCauses") else ""
    if result == Outcome.FAILED.value:
        errors = last.get("errors") or []
        return text + (f": {errors[0]}" if errors else "") + causes
    text += f": {last.get('images', 0)} images, {last.get('findings', 0)} findings at or above {threshold}"
    if last.get("errorsTotal"):
        text += f", {last['errorsTotal']} errors"
        if last.get("errors"):
            text += f" (first: {last['errors'][0]})"
        text += causes
    if last.get("reportUri"):
        text += f"; report {last['reportUri']}"
    return text


def _next_text(decision: Decision | None) -> str:
    if decision is None or decision.next_time is None:
        return "no run scheduled"
    return f"next run at {format_time(decision.next_time)}"


def skipped_note(decision: Decision, deadline: int | None) -> str:
    """How a skipped (too late) scheduled run is said in the status message and the Event."""
    if decision.skipped is None:
        return ""
    more = f" ({decision.missed} scheduled runs missed)" if decision.missed > 1 else ""
    return (
        f"skipped the run scheduled at {format_time(decision.skipped)}: it was missed by more than "
        f"startingDeadlineSeconds ({deadline}s){more}"
    )


# --------------------------------------------------------------------------- builders


def _base(current: Mapping[str, object], ctx: Context) -> ScanPolicyStatus:
    # The stored status is read back as this module wrote it (the CRD schema holds its shape).
    out = cast(
        ScanPolicyStatus, {k: current[k] for k in STATUS_KEYS if k in current and current[k] is not None}
    )
    out["observedGeneration"] = ctx.generation
    conditions = current.get("conditions")
    out["conditions"] = [
        cast(Condition, dict(c))
        for c in (conditions if isinstance(conditions, list) else [])
        if isinstance(c, Mapping)
    ]
    return out


def _finish(
    out: ScanPolicyStatus, ctx: Context, status: ConditionStatus, reason: Reason, message: str
) -> ScanPolicyStatus:
    message = clip_bytes(message, MESSAGE_BYTES)
    out["conditions"] = set_condition(
        out["conditions"], READY, status, reason.value, message, now=ctx.now, generation=ctx.generation
    )
    out["message"] = message
    if ctx.decision is not None and ctx.decision.next_time is not None:
        out["nextScheduleTime"] = format_time(ctx.decision.next_time)
    else:
        out.pop("nextScheduleTime", None)
    out["conditions"] = _tickets_condition(out, ctx)
    return out


def _ready_of_last_run(last: LastRunStatus | None) -> tuple[ConditionStatus, Reason]:
    if not last:
        return "True", Reason.SCHEDULED
    reason = _OUTCOME_REASON.get(str(last.get("result")), Reason.RUN_FAILED)
    return ("True" if reason is Reason.RUN_SUCCEEDED else "False"), reason


def _tickets_condition(out: ScanPolicyStatus, ctx: Context) -> list[Condition]:
    conditions = out.get("conditions", [])
    if not ctx.jira:
        return remove_condition(conditions, TICKETS_SYNCED)
    last = out.get("lastRun")
    args: tuple[ConditionStatus, Reason, str]
    if not isinstance(last, Mapping) or not last.get("completionTime"):
        args = ("Unknown", Reason.NOT_SYNCED_YET, "tickets are synced at the end of the next run")
    elif "tickets" in (last.get("stageFailures") or {}):
        args = (
            "False",
            Reason.TICKET_SYNC_FAILED,
            f"run {last.get('id')}: {last['stageFailures']['tickets']}",
        )
    elif last.get("result") == Outcome.FAILED.value:
        args = ("Unknown", Reason.RUN_FAILED, f"run {last.get('id')} failed before tickets were synced")
    else:
        actions = ", ".join(f"{k} {v}" for k, v in sorted((last.get("tickets") or {}).items()) if v) or "none"
        if last.get("dryRun"):
            args = ("True", Reason.TICKETS_PLANNED, f"dry run {last.get('id')} planned: {actions}")
        else:
            args = ("True", Reason.TICKETS_SYNCED, f"run {last.get('id')}: {actions}")
    status, reason, message = args
    return set_condition(
        conditions,
        TICKETS_SYNCED,
        status,
        reason.value,
        clip_bytes(message, TICKETS_MESSAGE_BYTES),
        now=ctx.now,
        generation=ctx.generation,
    )


def idle_status(current: Mapping[str, object], ctx: Context) -> ScanPolicyStatus:
    """No run in progress: Ready follows the last run (or Scheduled / Suspended)."""
    out = _base(current, ctx)
    out.pop("activeRun", None)
    last = out.get("lastRun")
    decision = ctx.decision
    status: ConditionStatus
    if decision is not None and decision.suspended:
        status, reason = "False", Reason.SUSPENDED
        message = "suspended: no scheduled runs until spec.suspend is false (run-now still works)"
        if last:
            message += "; last " + _run_summary(last, ctx.threshold)
    else:
        status, reason = _ready_of_last_run(last)
        message = ("last " + _run_summary(last, ctx.threshold)) if last else "waiting for the first run"
        message += "; " + _next_text(decision)
    if ctx.note:
        message += "; " + ctx.note
    return _finish(out, ctx, status, reason, message)


def invalid_status(
    current: Mapping[str, object], ctx: Context, errors: Sequence[FieldError]
) -> ScanPolicyStatus:
    """The spec failed validation: Ready=False InvalidSpec naming the fields; nothing is scheduled."""
    out = _base(current, ctx)
    shown = [f"{e.path}: {e.reason}" for e in errors[:MAX_FIELD_ERRORS]]
    if len(errors) > MAX_FIELD_ERRORS:
        shown.append(f"and {len(errors) - MAX_FIELD_ERRORS} more")
    message = "invalid spec: " + "; ".join(shown or ["(no details)"])
    # A policy that was running keeps its activeRun: that run finishes with the spec it started with.
    return _finish(out, ctx, "False", Reason.INVALID_SPEC, message)


def not_granted_status(current: Mapping[str, object], ctx: Context, message: str) -> ScanPolicyStatus:
    """The spec names something no ScanAccessGrant allows: Ready=False AccessNotGranted; nothing runs."""
    out = _base(current, ctx)
    return _finish(out, ctx, "False", Reason.ACCESS_NOT_GRANTED, "access not granted: " + message)


def running_status(current: Mapping[str, object], ctx: Context, run: ActiveRun) -> ScanPolicyStatus:
    """A run starts: record what it fulfils first, so a restart neither repeats nor loses it."""
    out = _base(current, ctx)
    out["activeRun"] = run.to_dict()
    if run.scheduled_time is not None:
        out["lastScheduleTime"] = format_time(run.scheduled_time)
    if run.run_now is not None:
        out["lastRunNow"] = clip_bytes(run.run_now, ID_BYTES)
    last = out.get("lastRun")
    status, _ = _ready_of_last_run(last)
    if not last:
        status = "Unknown"
    message = f"run {run.run_id} started at {format_time(run.started)} ({run.trigger.value})"
    if last:
        message += "; last " + _run_summary(last, ctx.threshold)
    return _finish(out, ctx, status, Reason.RUNNING, message)


def finished_status(
    current: Mapping[str, object], ctx: Context, result: RunResult, trigger: Trigger
) -> ScanPolicyStatus:
    """A run ended: lastRun, lastSuccessfulTime (a report was written), Ready from the outcome."""
    out = _base(current, ctx)
    out["lastRun"] = last_run_from_result(result, trigger)
    out["conditions"] = _coverage_condition(out["conditions"], ctx, result)
    if result.outcome is not Outcome.FAILED and result.completed is not None:
        out["lastSuccessfulTime"] = format_time(result.completed)
    return idle_status(out, ctx)


def status_bytes(status: Mapping[str, object]) -> int:
    """The size of a status as the API server stores it (compact JSON, Go's escaping)."""
    text = json.dumps(status, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode()) + 5 * sum(text.count(ch) for ch in "<>&\u2028\u2029")


# --------------------------------------------------------------------------- diff


def status_patch(current: Mapping[str, object], desired: Mapping[str, object]) -> dict[str, object] | None:
    """The JSON merge patch (RFC 7386) from current to desired, or None when they are equal.

    Keys of the current status that are not in desired are removed (null), lists are replaced
    whole (conditions included), nested objects are diffed key by key.
    """
    patch = _merge_diff(current, desired)
    return patch or None


def _merge_diff(current: Mapping[str, object], desired: Mapping[str, object]) -> dict[str, object]:
    patch: dict[str, object] = {}
    for key in current:
        if key not in desired:
            patch[key] = None
    for key, value in desired.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            sub = _merge_diff(cast("Mapping[str, object]", old), cast("Mapping[str, object]", value))
            if sub:
                patch[key] = sub
        elif key not in current or old != value:
            patch[key] = _strip_nulls(value)
    return patch


def _strip_nulls(value: object) -> object:
    # A null inside a merge patch means "delete"; a fresh object must not carry any.
    if isinstance(value, Mapping):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return value
