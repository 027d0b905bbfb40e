"""CronJob scheduling math for a ScanPolicy: what is due now, what was missed, when is next. Pure.

The rules follow Kubernetes CronJob: fire times come from `schedule` read in `timeZone`; the
times already handled are everything up to `lastScheduleTime` (or the policy's creation when it
never ran); of the times missed since then only the most recent one runs (at most one catch-up
after downtime); that one is skipped instead when it is more than `startingDeadlineSeconds`
late; `suspend` stops new runs. Because the answer depends only on the stored status and the
time passed in, an operator that restarts neither skips nor repeats a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from ecs_scan_operator.core.policy import normalize_cron

#: Counting missed fire times stops here (Kubernetes CronJob gives up counting at 100 too);
#: the count is only reported, never acted on.
MAX_MISSED_COUNT = 100


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: schedule math needs timezone-aware times")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Schedule:
    """A cron expression read in an IANA time zone; every method takes and returns UTC times."""

    expr: str
    time_zone: str = "UTC"

    @classmethod
    def parse(cls, schedule: str, time_zone: str = "UTC") -> Schedule:
        """Normalise the expression (macros expanded); raise ValueError when it is invalid."""
        ZoneInfo(time_zone)  # fail early on an unknown zone
        return cls(normalize_cron(schedule), time_zone)

    @property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def next_after(self, when: datetime) -> datetime | None:
        """The first fire time strictly after `when`, or None when there is none within 50 years."""
        local = _utc(when).astimezone(self._zone)
        try:
            return _utc(next(CronSim(self.expr, local)))
        except StopIteration:
            return None

    def latest_at_or_before(self, when: datetime) -> datetime | None:
        """The last fire time at or before `when` (None when there is none in the last 50 years)."""
        # cronsim's reverse iteration yields times strictly before its start, whole seconds only.
        start = _utc(when).replace(microsecond=0) + timedelta(seconds=1)
        try:
            return _utc(next(CronSim(self.expr, start.astimezone(self._zone), reverse=True)))
        except StopIteration:
            return None

    def fire_times(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Fire times in (after, until], oldest first, at most `limit` of them."""
        out: list[datetime] = []
        until = _utc(until)
        for fire in CronSim(self.expr, _utc(after).astimezone(self._zone)):
            fire_utc = _utc(fire)
            if fire_utc > until or len(out) >= limit:
                break
            out.append(fire_utc)
        return out


@dataclass(frozen=True)
class Decision:
    """What the scheduler should do at `now` for one policy."""

    now: datetime
    due: datetime | None = None  # the scheduled time to run now (the latest one missed, in time)
    skipped: datetime | None = None  # the latest scheduled time, skipped: later than the deadline
    missed: int = 0  # scheduled times since the last run that will never run (capped count)
    next_time: datetime | None = None  # the next scheduled time after now; None when suspended
    suspended: bool = False
    previous_time: datetime | None = None  # the last scheduled time at or before now

    @property
    def interval_seconds(self) -> float | None:
        """The gap between the scheduled times around now (what "overdue" is measured against)."""
        if self.previous_time is None or self.next_time is None:
            return None
        return (self.next_time - self.previous_time).total_seconds()

    @property
    def wake_at(self) -> datetime | None:
        """When to look again (the next fire time), None when nothing is scheduled."""
        return self.next_time


def decide(
    schedule: Schedule,
    *,
    now: datetime,
    last_schedule_time: datetime | None,
    created: datetime,
    starting_deadline_seconds: int | None = None,
    suspend: bool = False,
) -> Decision:
    """Compute what is due at `now` from the status (`lastScheduleTime`) and the spec."""
    now = _utc(now)
    if suspend:
        return Decision(now=now, suspended=True)
    # Times up to the last scheduled run are done; a policy that never ran starts at its creation.
    # A lastScheduleTime in the future (clock skew, a hand-edited status) is treated as now.
    earliest = min(_utc(last_schedule_time) if last_schedule_time else _utc(created), now)
    next_time = schedule.next_after(now)
    previous_time = schedule.latest_at_or_before(now)
    missed_times = schedule.fire_times(earliest, now, MAX_MISSED_COUNT)
    if not missed_times:
        return Decision(now=now, next_time=next_time, previous_time=previous_time)
    latest = missed_times[-1]
    if len(missed_times) >= MAX_MISSED_COUNT:
        # Too many to walk: the latest one is found from the other end.
        latest = schedule.latest_at_or_before(now) or latest
    older = len(missed_times) - 1  # collapsed into the one catch-up run (or skipped with it)
    if starting_deadline_seconds is not None and now - latest > timedelta(seconds=starting_deadline_seconds):
        return Decision(
            now=now, skipped=latest, missed=older + 1, next_time=next_time, previous_time=previous_time
        )
    return Decision(now=now, due=latest, missed=older, next_time=next_time, previous_time=previous_time)


def run_now_requested(annotation: str | None, last_handled: str | None) -> bool:
    """A run-now annotation asks for a run when it is set and differs from the value last handled."""
    value = (annotation or "").strip()
    return bool(value) and value != (last_handled or "")


def parse_time(value: object) -> datetime | None:
    """Read an RFC 3339 timestamp from the status; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a Z and whole seconds, as Kubernetes writes timestamps."""
    return _utc(value).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
