"""Leader election over a Lease: one leader, takeover only after the lease expires, stepping down."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from ecs_scan_operator.controller.leader import AlwaysLeader, Attempt, LeaderElector, micro_time
from tests.unit.test_controller_worker import FakeKube


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(kube: FakeKube, identity: str, clock: Clock, lost: list[str]) -> LeaderElector:
    return LeaderElector(
        kube,
        name="ecs-scan-operator",
        namespace="ops",
        identity=identity,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        on_lost=lambda: lost.append(identity),
        monotonic=clock,
        wall=lambda: datetime(2025, 3, 1, tzinfo=UTC),
    )


def holder(kube: FakeKube) -> str:
    return str(kube.leases[("ops", "ecs-scan-operator")]["spec"]["holderIdentity"])


def test_first_comer_leads_and_the_other_waits() -> None:
    kube, clock, lost = FakeKube(), Clock(), list[str]()
    a, b = elector(kube, "a", clock, lost), elector(kube, "b", clock, lost)
    a.step()
    b.step()
    assert a.is_leader() and not b.is_leader() and holder(kube) == "a"
    lease = kube.leases[("ops", "ecs-scan-operator")]["spec"]
    assert lease["leaseDurationSeconds"] == 15 and lease["leaseTransitions"] == 0
    # renewals keep it
    for _ in range(10):
        clock.t += 2
        a.step()
        b.step()
    assert a.is_leader() and not b.is_leader() and lost == []


def test_takeover_only_after_a_full_lease_without_renewal() -> None:
    kube, clock, lost = FakeKube(), Clock(), list[str]()
    a, b = elector(kube, "a", clock, lost), elector(kube, "b", clock, lost)
    a.step()
    b.step()  # b first sees a's record now
    clock.t += 14  # a is silent (dead) but the lease is not yet expired for b
    b.step()
    assert not b.is_leader()
    clock.t += 2
    b.step()
    assert b.is_leader() and holder(kube) == "b"
    assert kube.leases[("ops", "ecs-scan-operator")]["spec"]["leaseTransitions"] == 1
    # a comes back: it sees b's lease and steps down at once
    a.step()
    assert not a.is_leader() and lost == ["a"]


def test_a_leader_that_cannot_renew_steps_down_before_the_lease_expires() -> None:
    kube, clock, lost = FakeKube(), Clock(), list[str]()
    a = elector(kube, "a", clock, lost)
    a.step()
    kube.fail_leases = True
    clock.t += 8
    a.step()
    assert a.is_leader() and lost == []  # within the renew deadline
    clock.t += 3  # 11 s without renewal > 10 s deadline < 15 s lease
    a.step()
    assert not a.is_leader() and lost == ["a"]


def test_release_hands_over_at_once() -> None:
    kube, clock, lost = FakeKube(), Clock(), list[str]()
    a, b = elector(kube, "a", clock, lost), elector(kube, "b", clock, lost)
    a.step()
    b.step()
    a.stop(release=True)
    assert holder(kube) == ""
    b.step()
    assert b.is_leader() and holder(kube) == "b"


def test_a_restarted_replica_with_the_same_name_resumes_at_once() -> None:
    kube, clock, lost = FakeKube(), Clock(), list[str]()
    elector(kube, "pod-0", clock, lost).step()
    again = elector(kube, "pod-0", clock, lost)
    again.step()
    assert again.is_leader()


def test_a_lost_race_is_a_conflict_not_an_error() -> None:
    kube, clock, lost = FakeKube(), Clock(), list[str]()
    a = elector(kube, "a", clock, lost)
    a.step()
    orig = kube.replace_lease

    def racing(namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        kube.leases[(namespace, name)]["metadata"]["resourceVersion"] = "moved"
        return orig(namespace, name, body)

    # Replaced on purpose: another replica's write lands between our read and our replace.
    kube.replace_lease = racing  # type: ignore[method-assign]
    assert a.attempt() is Attempt.TAKEN


def test_the_renew_deadline_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValueError, match="shorter"):
        LeaderElector(
            FakeKube(),
            name="x",
            namespace="y",
            identity="z",
            lease_duration=10,
            renew_deadline=10,
            retry_period=1,
            on_lost=lambda: None,
        )


def test_micro_time() -> None:
    assert micro_time(datetime(2025, 3, 1, 10, 0, 0, 5, tzinfo=UTC)) == "2025-03-01T10:00:00.000005Z"


async def test_wait_returns_once_leading_in_the_background() -> None:
    kube, lost = FakeKube(), []
    e = LeaderElector(
        kube,
        name="l",
        namespace="ops",
        identity="a",
        lease_duration=15,
        renew_deadline=10,
        retry_period=0.05,
        on_lost=lambda: lost.append("a"),
    )
    e.start(asyncio.get_running_loop())
    try:
        await asyncio.wait_for(e.wait(), 5)
        assert e.is_leader()
    finally:
        await asyncio.to_thread(e.stop)
    assert kube.leases[("ops", "l")]["spec"]["holderIdentity"] == ""
    await AlwaysLeader().wait()
    assert AlwaysLeader().is_leader()
