"""core/runtime.py: redeploy needed, first/last seen running, the running view's rows; its state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import ImageResult, ImageUse
from ecs_scan_operator.core.runtime import (
    RUNNING_KEEP,
    RUNNING_LIMIT,
    decide_redeploy,
    fixed_by_redeploy,
    fold_running_rows,
    running_key,
    runtime_context,
    track_running,
)
from ecs_scan_operator.core.state import TD_TAGS_TTL, RunState, dump_state, load_state

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
OLD, NEW, OTHER = ("sha256:" + c * 64 for c in "abc")
T0 = datetime(2026, 11, 1, tzinfo=UTC)
KEY = SecretStr("k" * 32)

# digest, running tasks, findings, tag digest, tag findings (None: not known) -> redeploy needed
REDEPLOY = [
    (OLD, 3, {"CVE-1"}, NEW, set(), True),  # the rebuilt tag is clean: redeploy
    (
        OLD,
        3,
        {"CVE-1", "CVE-2"},
        NEW,
        {"CVE-3"},
        True,
    ),  # other findings on the new digest: still none of ours
    (OLD, 3, {"CVE-1", "CVE-2"}, NEW, {"CVE-2"}, False),  # the new digest keeps one of them: a fix is needed
    (OLD, 3, {"CVE-1"}, NEW, None, False),  # the new digest's findings are unknown: never say redeploy
    (OLD, 0, {"CVE-1"}, NEW, set(), False),  # nothing runs it any more
    (OLD, 3, set(), NEW, set(), False),  # nothing to fix
    (OLD, 3, {"CVE-1"}, OLD, set(), False),  # no drift
    (OLD, 3, {"CVE-1"}, None, set(), False),  # the tag is gone / unresolved
    (None, 3, {"CVE-1"}, NEW, set(), False),  # PENDING: no digest
]


@pytest.mark.parametrize(("digest", "tasks", "findings", "tag_digest", "tag_findings", "expected"), REDEPLOY)
def test_redeploy_needed(
    digest: str | None,
    tasks: int,
    findings: set[str],
    tag_digest: str | None,
    tag_findings: set[str] | None,
    expected: bool,
) -> None:
    got = decide_redeploy(
        digest=digest,
        running_tasks=tasks,
        findings=findings,
        tag_digest=tag_digest,
        tag_findings=tag_findings,
    )
    assert got is expected


@pytest.mark.parametrize(
    ("findings", "tag_findings", "fixed"),
    [({"A", "B"}, {"B"}, {"A"}), ({"A"}, set(), {"A"}), ({"A"}, None, set()), (set(), {"A"}, set())],
)
def test_fixed_by_redeploy(findings: set[str], tag_findings: set[str] | None, fixed: set[str]) -> None:
    assert fixed_by_redeploy(findings, tag_findings) == fixed


def test_track_running_keeps_first_seen_and_ages_out() -> None:
    t1 = T0 + timedelta(days=1)
    seen = track_running({}, ["a", "b"], T0)
    assert seen == {"a": (T0, T0), "b": (T0, T0)}
    seen = track_running(seen, ["a"], t1)
    assert seen["a"] == (T0, t1)  # first seen kept, last seen moves
    assert seen["b"] == (T0, T0)  # not running now: kept until it ages out
    later = T0 + RUNNING_KEEP + timedelta(seconds=1)
    assert set(track_running(seen, [], later)) == {"a"}  # b last seen more than RUNNING_KEEP ago
    assert track_running(seen, [], later + timedelta(days=1)) == {}


def test_track_running_is_bounded_by_count_keeping_the_most_recent() -> None:
    old = {f"d{i}": (T0, T0) for i in range(RUNNING_LIMIT)}
    seen = track_running(old, ["new"], T0 + timedelta(hours=1))
    assert len(seen) == RUNNING_LIMIT and "new" in seen


def use(family: str, tasks: int, cluster: str = "", service: str = "") -> ImageUse:
    return ImageUse(family, 1, "app", f"arn:aws:ecs:us-east-1:1:task-definition/{family}:1", tasks=tasks,
                    cluster=cluster, service=service)  # fmt: skip


def test_runtime_context_from_running_uses() -> None:
    uses = [
        use("web", 3, "prod-a", "web"),
        use("web", 2, "prod-b", "web"),
        use("job", 1, "prod-b"),
        use("x", 0),
    ]
    rt = runtime_context(uses, running_digests=[OLD, OLD], tag_digest=NEW, seen=(T0, T0), in_use_count=6)
    assert rt.clusters == ("prod-a", "prod-b")
    assert rt.services == ("web",)
    assert rt.running_tasks == 6
    assert rt.running_digests == (OLD,)
    assert rt.drift and rt.first_seen_running == T0 and rt.in_use_count == 6
    assert not runtime_context(uses, running_digests=[OLD, NEW], tag_digest=NEW).drift


def test_fold_running_rows_into_the_declared_row_of_the_same_digest() -> None:
    declared = ImageResult(ref=parse_image(f"{ECR}/web:v1"), uses=[use("web", 0)], digest=NEW)
    same = ImageResult(ref=parse_image(f"{ECR}/web:v1@{NEW}"), uses=[use("web", 2, "prod")], digest=NEW)
    drifted = ImageResult(ref=parse_image(f"{ECR}/web:v1@{OLD}"), uses=[use("web", 1, "prod")], digest=OLD)
    alone = ImageResult(ref=parse_image(f"{ECR}/job:1@{OTHER}"), uses=[use("job", 1)], digest=OTHER)
    out = fold_running_rows([declared, same, drifted, alone])
    assert out == [declared, drifted, alone]
    assert [u.tasks for u in declared.uses] == [0, 2]


def test_running_and_td_tags_survive_the_state_and_are_bounded_by_trust() -> None:
    state = RunState()
    state.running = {running_key(parse_image(f"{ECR}/web:v1"), OLD): (T0, T0 + timedelta(hours=1))}
    state.cache.put_tags("arn:td/web:1", (("team", "pay"),), T0)
    raw = dump_state(state, "r1", {}, key=KEY, scope="ns/p")
    back = load_state(raw, key=KEY, scope="ns/p")
    assert back.running == state.running
    assert back.cache.fresh_tags("arn:td/web:1", T0 + TD_TAGS_TTL - timedelta(seconds=1)) == (
        ("team", "pay"),
    )
    assert back.cache.fresh_tags("arn:td/web:1", T0 + TD_TAGS_TTL) is None  # stale: read again
    assert (
        back.cache.fresh_tags("arn:td/web:1", T0 - timedelta(hours=1)) is None
    )  # from the future: distrusted
    # Without a key the tags (they steer ticket routing) are neither written nor read; first/last seen is.
    unkeyed = load_state(dump_state(state, "r1", {}), key=None)
    assert unkeyed.cache.tags == {} and unkeyed.running == state.running
