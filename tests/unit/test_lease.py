"""The run lease: the pure decision as a table, the document, and RunLease over an in-memory sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecs_scan_operator.core.lease import (
    DEADLINE_GRACE_SECONDS,
    LEASE_TTL_SECONDS,
    Action,
    LeaseRecord,
    decide,
    expiry,
    load_lease,
    new_lease,
    refusal_message,
)
from ecs_scan_operator.errors import ConflictError, LeaseHeld, TransientError
from ecs_scan_operator.leasing import RunLease, break_lease, show
from ecs_scan_operator.ports import StoredObject
from tests.support.fakes import FixedClock, MemorySink

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
KEY = "scans/state/team-a/nightly.lease"


def lease(expires: datetime, run_id: str = "r-old") -> LeaseRecord:
    return LeaseRecord("team-a/nightly", run_id, "host-a:12", T0, T0, expires)


@pytest.mark.parametrize(
    ("present", "current", "now", "action"),
    [
        (False, None, T0, Action.TAKE),  # nobody holds it
        (True, lease(T0 + timedelta(minutes=5)), T0, Action.REFUSE),  # live holder
        (True, lease(T0 + timedelta(minutes=5)), T0 + timedelta(minutes=4, seconds=59), Action.REFUSE),
        (
            True,
            lease(T0 + timedelta(minutes=5)),
            T0 + timedelta(minutes=5),
            Action.STEAL,
        ),  # expiry is exclusive
        (True, lease(T0 + timedelta(minutes=5)), T0 + timedelta(days=3), Action.STEAL),  # long dead holder
        (True, None, T0, Action.STEAL),  # not a lease document: nobody can be holding it
    ],
)
def test_decide(present: bool, current: LeaseRecord | None, now: datetime, action: Action) -> None:
    assert decide(present, current, now=now).action is action


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b'{"version": 2}',
        b'{"version": 1, "runId": "x"}',
        b"\xff\xfe",
        b'{"version":1,"policy":"p","runId":"r","started":"2026-01-01T00:00:00","renewed":"x","expires":"y"}',
    ],
)
def test_unreadable_lease_documents(raw: bytes) -> None:
    assert load_lease(raw) is None


def test_document_round_trip_and_message() -> None:
    rec = new_lease("team-a/nightly", "r1", "host:1", T0, LATER)
    assert load_lease(rec.to_json()) == rec
    assert refusal_message("team-a/nightly", rec) == (
        "another run of team-a/nightly holds the lease since 2026-11-28T06:00:00Z (run r1)"
    )


@pytest.mark.parametrize(
    ("now", "deadline", "expected"),
    [
        (T0, LATER, T0 + timedelta(seconds=LEASE_TTL_SECONDS)),  # far from the deadline: the TTL
        (T0, T0, T0 + timedelta(seconds=DEADLINE_GRACE_SECONDS)),  # at the deadline: only the grace
        (LATER, T0, T0 + timedelta(seconds=DEADLINE_GRACE_SECONDS)),  # renewing late never extends it
    ],
)
def test_expiry(now: datetime, deadline: datetime, expected: datetime) -> None:
    assert expiry(now, deadline) == expected


def acquire(sink: MemorySink, clock: FixedClock, run_id: str) -> RunLease:
    return RunLease.acquire(
        sink,
        KEY,
        policy="team-a/nightly",
        run_id=run_id,
        holder="h:1",
        clock=clock,
        deadline=clock.now() + timedelta(hours=1),
    )


def test_take_refuse_release_take_again() -> None:
    sink, clock = MemorySink(), FixedClock()
    first = acquire(sink, clock, "r1")
    assert first.how == "taken"
    with pytest.raises(LeaseHeld, match=r"another run of team-a/nightly holds the lease since .* \(run r1\)"):
        acquire(sink, clock, "r2")
    assert first.release() is None
    assert KEY not in sink.objects
    assert acquire(sink, clock, "r3").how == "taken"


def test_expired_lease_is_stolen_and_the_old_holder_learns_it() -> None:
    sink, clock = MemorySink(), FixedClock()
    old = acquire(sink, clock, "r1")
    clock.advance(seconds=LEASE_TTL_SECONDS)
    new = acquire(sink, clock, "r2")
    assert new.how.startswith("stolen: ") and "r1" in new.how  # the run log names whom it was taken from
    assert old.renew() is False and old.lost is not None  # If-Match on its ETag fails
    assert old.release() is None and KEY in sink.objects  # the thief's lease is not deleted
    assert load_lease(sink.objects[KEY]).run_id == "r2"  # type: ignore[union-attr]


def test_renew_extends_and_a_broken_lease_is_lost() -> None:
    sink, clock = MemorySink(), FixedClock()
    held = acquire(sink, clock, "r1")
    clock.advance(seconds=100)
    assert held.renew()
    assert held.record.expires == clock.now() + timedelta(seconds=LEASE_TTL_SECONDS)
    record, etag, _ = show(sink, KEY)
    assert record == held.record and etag is not None
    break_lease(sink, KEY, etag)  # what `ecs-scan-operator lease break` does
    assert held.renew() is False and "broken" in (held.lost or "")


def test_break_refuses_a_lease_that_changed_since_it_was_shown() -> None:
    sink, clock = MemorySink(), FixedClock()
    held = acquire(sink, clock, "r1")
    _, etag, _ = show(sink, KEY)
    clock.advance(seconds=60)
    assert held.renew()
    with pytest.raises(ConflictError):
        break_lease(sink, KEY, etag or "")


def test_transient_renewal_failure_is_retried_until_expiry() -> None:
    class Flaky(MemorySink):
        failing = False

        def put_if(self, key: str, body: bytes, content_type: str, *, etag: str | None) -> str:
            if self.failing:
                raise TransientError("s3:PutObject: SlowDown")
            return super().put_if(key, body, content_type, etag=etag)

    sink, clock = Flaky(), FixedClock()
    held = acquire(sink, clock, "r1")
    sink.failing = True
    assert held.renew() and held.lost is None  # still within the TTL: keep the lease, try again
    clock.advance(seconds=LEASE_TTL_SECONDS)
    assert held.renew() is False and "expired" in (held.lost or "")


def test_lost_race_on_take_is_a_refusal_but_our_own_landed_write_is_ours() -> None:
    class Racing(MemorySink):
        winner = "r-other"

        def put_if(self, key: str, body: bytes, content_type: str, *, etag: str | None) -> str:
            # Another process's create lands between our read and our conditional write.
            theirs = new_lease("team-a/nightly", self.winner, "h:2", T0, LATER).to_json()
            self.objects[key] = theirs if self.winner != "mine" else body
            raise ConflictError("s3:PutObject: PreconditionFailed")

    sink, clock = Racing(), FixedClock()
    with pytest.raises(LeaseHeld, match=r"\(run r-other\)"):
        acquire(sink, clock, "mine")
    sink.objects.clear()
    sink.winner = "mine"  # our write landed, only its answer was lost (then the retry got 412)
    held = acquire(sink, clock, "mine")
    assert held.record.run_id == "mine" and isinstance(sink.read(KEY), StoredObject)


class LostAnswers(MemorySink):
    """Stores a conditional write, then answers 412 as a retried request would."""

    lose_next = False

    def put_if(self, key: str, body: bytes, content_type: str, *, etag: str | None) -> str:
        new = super().put_if(key, body, content_type, etag=etag)
        if self.lose_next:
            self.lose_next = False
            raise ConflictError("s3:PutObject: PreconditionFailed (the retry of a write that landed)")
        return new


def test_a_renewal_whose_answer_was_lost_keeps_the_lease() -> None:
    sink, clock = LostAnswers(), FixedClock()
    held = acquire(sink, clock, "r1")
    clock.advance(seconds=60)
    sink.lose_next = True
    assert held.renew() and held.lost is None
    clock.advance(seconds=60)
    assert held.renew()  # the adopted ETag is the right one
    assert held.release() is None and KEY not in sink.objects
