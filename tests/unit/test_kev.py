"""core/kev.py and the state's KEV cache and first sightings: TTL, bounds, round trips."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import SecretStr

from ecs_scan_operator.core import kev as kev_mod
from ecs_scan_operator.core.kev import KevEntry, bounded, lookup_ids, stale, with_kev
from ecs_scan_operator.core.model import Finding, Severity, Signals
from ecs_scan_operator.core.state import RunState, dump_state, finding_key, load_state

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=24)
KEY = SecretStr("s" * 32)


def entry(at: datetime, kev: bool | None = True) -> KevEntry:
    return KevEntry(
        checked_at=at, kev=kev, date_added=date(2026, 1, 2), date_due=date(2026, 1, 23), action="Patch"
    )


def test_only_cves_are_looked_up_once_each() -> None:
    ids = [
        "CVE-2024-1",
        "GHSA-abcd-efgh-ijkl",
        "CVE-2024-1",
        "cve-2024-2",
        "CVE-2024-12345678901",
        "ALAS-2024-1",
    ]
    assert lookup_ids(ids) == ["CVE-2024-1"]  # the model's pattern: CVE-[12][0-9]{3}-[0-9]{1,10}


@pytest.mark.parametrize(
    ("cached_at", "asked"),
    [
        (None, True),  # never asked
        (NOW - timedelta(hours=23, minutes=59), False),  # within the TTL
        (NOW - TTL, True),  # exactly the TTL: asked again
        (NOW - timedelta(days=3), True),
        (NOW + timedelta(minutes=5), True),  # from the future (a clock jump): not trusted
    ],
)
def test_stale_by_ttl(cached_at: datetime | None, asked: bool) -> None:
    cache = {} if cached_at is None else {"CVE-2024-1": entry(cached_at)}
    assert stale(cache, ["CVE-2024-1"], NOW, TTL) == (["CVE-2024-1"] if asked else [])


def test_ttl_zero_asks_every_time() -> None:
    assert stale({"CVE-2024-1": entry(NOW)}, ["CVE-2024-1"], NOW, timedelta(0)) == ["CVE-2024-1"]


def test_bounded_keeps_found_cves_and_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kev_mod, "MAX_ENTRIES", 2)
    cache = {f"CVE-2024-{i}": entry(NOW - timedelta(hours=i)) for i in range(4)}
    assert set(bounded(cache, ["CVE-2024-1", "CVE-2024-2", "CVE-2024-3", "CVE-2099-9"])) == {
        "CVE-2024-1",
        "CVE-2024-2",
    }


def test_with_kev_fills_gaps_never_overrides() -> None:
    f = Finding("CVE-2024-1", Severity.HIGH, signals=Signals(epss=0.5, exploit_available=False))
    out = with_kev(f, KevEntry(checked_at=NOW, kev=True, date_due=date(2026, 2, 1), epss=0.9))
    assert out.signals.kev is True and out.signals.kev_date_due == date(2026, 2, 1)
    assert out.signals.epss == 0.5  # the finding's own score stays
    assert out.signals.exploit_available is True  # on CISA's list: exploited in the wild
    blank = with_kev(Finding("CVE-2024-1", Severity.HIGH), KevEntry(checked_at=NOW, kev=False, epss=0.2))
    assert (
        blank.signals.kev is False and blank.signals.epss == 0.2 and blank.signals.exploit_available is None
    )
    unknown = with_kev(Finding("CVE-2024-1", Severity.HIGH), KevEntry(checked_at=NOW, kev=None))
    assert unknown.signals.kev is None  # Inspector does not know the CVE: unknown, not "no"
    assert with_kev(f, None) is f


@pytest.mark.parametrize("key", [KEY, None])
def test_state_keeps_kev_and_first_seen_across_a_restart(key: SecretStr | None) -> None:
    state = RunState()
    state.kev = {
        "CVE-2024-1": KevEntry(
            checked_at=NOW,
            kev=True,
            date_added=date(2026, 1, 2),
            date_due=date(2026, 1, 23),
            action="Apply updates per vendor instructions.",
            exploit_observed_at=NOW - timedelta(days=2),
            epss=0.97,
        ),
        "CVE-2024-2": KevEntry(checked_at=NOW, kev=None),
        "CVE-2024-3": KevEntry(checked_at=NOW, kev=False),
    }
    state.first_seen = {finding_key("repo:1", "CVE-2024-1", "openssl"): NOW - timedelta(days=40)}
    raw = dump_state(state, "run-1", {}, key=key, scope="ns/p")
    back = load_state(raw, key=key, scope="ns/p")
    assert back.kev == state.kev
    assert back.first_seen == state.first_seen


def test_empty_signals_leave_the_state_as_before() -> None:
    """Absent while empty: a policy without ENHANCED findings writes the same bytes as before."""
    raw = dump_state(RunState(), "run-1", {"a": ["CVE-1"]}, key=KEY, scope="ns/p")
    assert b'"kev"' not in raw and b"firstSeen" not in raw


def test_naive_times_in_a_stored_state_are_dropped_not_fatal() -> None:
    import json

    raw = dump_state(RunState(), "run-1", {}, key=None)
    data = json.loads(raw)
    data["kev"] = {"CVE-2024-1": {"at": "2026-11-29T09:00:00", "kev": True}}
    data["firstSeen"] = {"x": "2026-11-29T09:00:00"}
    back = load_state(json.dumps(data).encode())
    assert back.kev == {} and back.first_seen == {}
