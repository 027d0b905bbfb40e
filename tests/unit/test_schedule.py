"""CronJob scheduling math: fire times in a time zone, what is due, deadlines, catch-up, suspend."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ecs_scan_operator.core.schedule import (
    MAX_MISSED_COUNT,
    Schedule,
    decide,
    format_time,
    parse_time,
    run_now_requested,
)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


HOURLY = Schedule.parse("0 * * * *")
CREATED = t("2025-03-01T09:15:00")


@pytest.mark.parametrize(
    ("expr", "tz", "after", "expected"),
    [
        ("*/5 * * * *", "UTC", "2025-03-01T10:02:00", "2025-03-01T10:05:00"),
        ("*/5 * * * *", "UTC", "2025-03-01T10:05:00", "2025-03-01T10:10:00"),  # strictly after
        ("@daily", "UTC", "2025-03-01T10:00:00", "2025-03-02T00:00:00"),
        ("@HOURLY", "UTC", "2025-03-01T10:00:01", "2025-03-01T11:00:00"),
        # 02:00 in Paris is 01:00 UTC in winter (CET, UTC+1)
        ("0 2 * * *", "Europe/Paris", "2025-03-01T00:00:00", "2025-03-01T01:00:00"),
        # and 00:00 UTC in summer (CEST, UTC+2)
        ("0 2 * * *", "Europe/Paris", "2025-07-01T00:30:00", "2025-07-02T00:00:00"),
        # 02:30 does not exist on 30 March 2025 in Paris: like Debian cron it runs at 03:00 CEST
        ("30 2 * * *", "Europe/Paris", "2025-03-29T12:00:00", "2025-03-30T01:00:00"),
        ("0 9 * * MON", "America/New_York", "2025-03-01T00:00:00", "2025-03-03T14:00:00"),
    ],
)
def test_next_after(expr: str, tz: str, after: str, expected: str) -> None:
    assert Schedule.parse(expr, tz).next_after(t(after)) == t(expected)


def test_latest_at_or_before_includes_the_instant_itself() -> None:
    assert HOURLY.latest_at_or_before(t("2025-03-01T10:00:00")) == t("2025-03-01T10:00:00")
    assert HOURLY.latest_at_or_before(t("2025-03-01T10:00:00.500000")) == t("2025-03-01T10:00:00")
    assert HOURLY.latest_at_or_before(t("2025-03-01T09:59:59")) == t("2025-03-01T09:00:00")


def test_parse_refuses_bad_expressions_and_zones() -> None:
    with pytest.raises(ValueError, match="5 fields"):
        Schedule.parse("* * * *")
    with pytest.raises(ValueError, match="not a valid cron"):
        Schedule.parse("61 * * * *")
    with pytest.raises(Exception, match="Mars"):
        Schedule.parse("* * * * *", "Mars/Olympus")


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        HOURLY.next_after(datetime(2025, 3, 1, 10))


def test_nothing_due_before_the_first_fire_time_after_creation() -> None:
    d = decide(HOURLY, now=t("2025-03-01T09:59:00"), last_schedule_time=None, created=CREATED)
    assert d.due is None and d.skipped is None and d.missed == 0
    assert d.next_time == t("2025-03-01T10:00:00") == d.wake_at


def test_a_fire_time_passed_is_due_once() -> None:
    now = t("2025-03-01T10:00:03")
    d = decide(HOURLY, now=now, last_schedule_time=None, created=CREATED)
    assert d.due == t("2025-03-01T10:00:00")
    assert d.next_time == t("2025-03-01T11:00:00")
    # once recorded as lastScheduleTime, the same instant is not due again (restart-safe)
    again = decide(HOURLY, now=now, last_schedule_time=d.due, created=CREATED)
    assert again.due is None and again.missed == 0


def test_at_most_one_catch_up_after_downtime() -> None:
    # the operator was down from 10:30 to 14:10: 11:00, 12:00, 13:00 and 14:00 were missed
    d = decide(
        HOURLY, now=t("2025-03-01T14:10:00"), last_schedule_time=t("2025-03-01T10:00:00"), created=CREATED
    )
    assert d.due == t("2025-03-01T14:00:00")  # only the latest one runs
    assert d.missed == 3  # the three older ones never run
    assert d.next_time == t("2025-03-01T15:00:00")


def test_starting_deadline_skips_a_run_that_is_too_late_and_says_so() -> None:
    d = decide(
        HOURLY,
        now=t("2025-03-01T14:10:00"),
        last_schedule_time=t("2025-03-01T10:00:00"),
        created=CREATED,
        starting_deadline_seconds=300,
    )
    assert d.due is None
    assert d.skipped == t("2025-03-01T14:00:00")
    assert d.missed == 4
    assert d.next_time == t("2025-03-01T15:00:00")


def test_starting_deadline_allows_a_run_within_it() -> None:
    d = decide(
        HOURLY,
        now=t("2025-03-01T14:04:59"),
        last_schedule_time=t("2025-03-01T13:00:00"),
        created=CREATED,
        starting_deadline_seconds=300,
    )
    assert d.due == t("2025-03-01T14:00:00") and d.skipped is None


def test_starting_deadline_zero_only_runs_exactly_on_time() -> None:
    on_time = decide(
        HOURLY,
        now=t("2025-03-01T14:00:00"),
        last_schedule_time=t("2025-03-01T13:00:00"),
        created=CREATED,
        starting_deadline_seconds=0,
    )
    assert on_time.due == t("2025-03-01T14:00:00")
    late = decide(
        HOURLY,
        now=t("2025-03-01T14:00:01"),
        last_schedule_time=t("2025-03-01T13:00:00"),
        created=CREATED,
        starting_deadline_seconds=0,
    )
    assert late.skipped == t("2025-03-01T14:00:00")


def test_suspend_schedules_nothing() -> None:
    d = decide(
        HOURLY,
        now=t("2025-03-01T14:10:00"),
        last_schedule_time=t("2025-03-01T10:00:00"),
        created=CREATED,
        suspend=True,
    )
    assert d.suspended and d.due is None and d.next_time is None and d.wake_at is None


@pytest.mark.parametrize(
    ("expr", "now", "interval"),
    [
        ("0 * * * *", "2025-03-01T14:10:00", 3600),
        ("0 * * * *", "2025-03-01T14:00:00", 3600),  # on a fire time: that one and the next
        # weekdays at 09:00: over the weekend the gap is Friday to Monday, so Sunday is not overdue
        ("0 9 * * 1-5", "2025-03-02T12:00:00", 3 * 86400),  # Sunday
        ("0 9 * * 1-5", "2025-03-04T12:00:00", 86400),  # Tuesday
    ],
)
def test_interval_is_the_gap_between_the_fire_times_around_now(expr: str, now: str, interval: int) -> None:
    """What the "no successful run" alert compares the age of the last success against."""
    d = decide(Schedule.parse(expr), now=t(now), last_schedule_time=t(now), created=CREATED)
    assert d.interval_seconds == interval


def test_a_suspended_policy_has_no_interval() -> None:
    d = decide(HOURLY, now=t("2025-03-01T14:10:00"), last_schedule_time=None, created=CREATED, suspend=True)
    assert d.interval_seconds is None


def test_resume_after_suspend_catches_up_once_like_a_cronjob() -> None:
    d = decide(
        HOURLY, now=t("2025-03-01T14:10:00"), last_schedule_time=t("2025-03-01T10:00:00"), created=CREATED
    )
    assert d.due == t("2025-03-01T14:00:00")


def test_last_schedule_time_in_the_future_is_clamped() -> None:
    d = decide(
        HOURLY, now=t("2025-03-01T10:30:00"), last_schedule_time=t("2025-03-01T12:00:00"), created=CREATED
    )
    assert d.due is None and d.next_time == t("2025-03-01T11:00:00")


def test_a_long_outage_with_a_frequent_schedule_is_counted_up_to_a_cap() -> None:
    every_minute = Schedule.parse("* * * * *")
    d = decide(
        every_minute,
        now=t("2025-03-08T10:00:30"),
        last_schedule_time=t("2025-03-01T10:00:00"),
        created=CREATED,
    )
    assert d.due == t("2025-03-08T10:00:00")  # found from the other end, not by walking a week
    assert d.missed == MAX_MISSED_COUNT - 1


def test_a_schedule_change_is_read_against_the_last_schedule_time() -> None:
    # hourly -> every 5 minutes at 10:12, last run 10:00: 10:05 and 10:10 passed, 10:10 runs now
    d = decide(
        Schedule.parse("*/5 * * * *"),
        now=t("2025-03-01T10:12:00"),
        last_schedule_time=t("2025-03-01T10:00:00"),
        created=CREATED,
    )
    assert d.due == t("2025-03-01T10:10:00") and d.missed == 1


def test_time_zone_is_honoured_across_dst_when_deciding() -> None:
    # 01:30 every day in New York; on 9 March 2025 clocks jump 02:00 -> 03:00 (01:30 still exists)
    sched = Schedule.parse("30 1 * * *", "America/New_York")
    d = decide(
        sched, now=t("2025-03-09T06:31:00"), last_schedule_time=t("2025-03-08T06:30:00"), created=CREATED
    )
    assert d.due == t("2025-03-09T06:30:00")  # 01:30 EST = 06:30 UTC
    assert d.next_time == t("2025-03-10T05:30:00")  # 01:30 EDT = 05:30 UTC


@pytest.mark.parametrize(
    ("annotation", "last", "expected"),
    [
        (None, None, False),
        ("", None, False),
        ("  ", "x", False),
        ("1", None, True),
        ("1", "1", False),
        ("2", "1", True),
        ("2025-03-01T10:00:00Z", "", True),
    ],
)
def test_run_now_requested(annotation: str | None, last: str | None, expected: bool) -> None:
    assert run_now_requested(annotation, last) is expected


def test_time_round_trip() -> None:
    when = t("2025-03-01T10:00:00.123456")
    assert format_time(when) == "2025-03-01T10:00:00Z"
    assert parse_time("2025-03-01T10:00:00Z") == t("2025-03-01T10:00:00")
    assert parse_time("2025-03-01T11:00:00+01:00") == t("2025-03-01T10:00:00")
    assert parse_time("nonsense") is None
    assert parse_time(None) is None
    assert parse_time(12) is None


def test_decide_is_fast_for_a_year_of_every_minute() -> None:
    import time

    start = time.perf_counter()
    decide(
        Schedule.parse("* * * * *"),
        now=t("2026-03-01T00:00:00"),
        last_schedule_time=None,
        created=t("2025-03-01T00:00:00"),
    )
    assert time.perf_counter() - start < 1.0, "decide() must not walk every missed minute"
