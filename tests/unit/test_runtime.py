"""core/runtime.py: redeploy needed, first/last seen running, the running view's rows; its state."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import (
    ContainerImage,
    Finding,
    ImageRef,
    ImageResult,
    ImageScan,
    ImageUse,
    Resolution,
    ScanState,
    ScanType,
    Severity,
    TaskDefinitionImages,
    TaskDefinitionListing,
)
from ecs_scan_operator.core.policy import PolicyRef, TaskDefinitionsSpec, parse_spec
from ecs_scan_operator.core.report import render_index_json
from ecs_scan_operator.core.result import RunResult
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
from ecs_scan_operator.core.state import TD_TAGS_TTL, RevisionCache, RunState, dump_state, load_state
from ecs_scan_operator.pipeline import run_policy
from ecs_scan_operator.ports import Ports
from tests.support.fakes import FixedClock, MemorySink

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


# ------------------------------------------------------------------ through the pipeline (fakes)


@dataclass
class Fleet:
    """An ImageSource: declared revisions (tasks 0) and running records, as the ECS adapter returns them."""

    tds: list[TaskDefinitionImages]

    def task_definitions(
        self,
        selection: TaskDefinitionsSpec,
        region: str,
        cache: RevisionCache,
        account: str = "",
        found: Callable[[TaskDefinitionImages], None] | None = None,
    ) -> TaskDefinitionListing:
        return TaskDefinitionListing(task_definitions=list(self.tds), families_matched=1)


@dataclass
class Tags:
    """A resolver whose tags point where the test says."""

    digests: dict[str, str]
    asked: list[str] = field(default_factory=list)

    def resolve(self, refs: Sequence[ImageRef]) -> dict[ImageRef, Resolution]:
        self.asked.extend(r.raw for r in refs if not r.digest)
        return {r: Resolution(r.digest or self.digests[f"{r.repository}:{r.tag}"]) for r in refs}

    def repository_tags(self, refs: Sequence[ImageRef]) -> dict[tuple[str, str, str], dict[str, str]]:
        return {}


@dataclass
class ByDigest:
    """Findings per digest; Inspector's in-use count on every answer."""

    findings: dict[str, list[str]]
    asked: list[str] = field(default_factory=list)

    def scans(
        self, images: Sequence[tuple[ImageRef, str]], severities: Sequence[Severity]
    ) -> dict[tuple[ImageRef, str], ImageScan]:
        self.asked.extend(d for _, d in images)
        return {
            (r, d): ImageScan(
                ScanState.COMPLETE,
                tuple(Finding(v, Severity.HIGH, "openssl") for v in self.findings.get(d, [])),
                scan_type=ScanType.ENHANCED,
                in_use_count=7,
                last_in_use_at=T0,
            )
            for r, d in images
        }


def td(
    digest: str | None,
    tasks: int,
    *,
    service: str = "web",
    cluster: str = "prod",
    image: str = f"{ECR}/web:v1",
) -> TaskDefinitionImages:
    containers = (ContainerImage("app", image, digest),)
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3"
    return TaskDefinitionImages(
        arn, "web", 3, containers, "us-east-1", service=service, tasks=tasks, cluster=cluster
    )


def run(
    tds: list[TaskDefinitionImages],
    findings: dict[str, list[str]],
    td_spec: dict[str, Any],
    sink: MemorySink,
    clock: FixedClock | None = None,
) -> tuple[dict[str, dict[str, Any]], Tags, ByDigest]:
    spec = parse_spec(
        {
            "schedule": "@daily",
            "aws": {"region": "us-east-1"},
            "taskDefinitions": td_spec,
            "report": {"s3": {"bucket": "reports", "prefix": "scans"}},
        }
    )
    tags, scans = Tags({"web:v1": NEW, "web:latest": NEW}), ByDigest(findings)
    ports = Ports(images=Fleet(tds), digests=tags, findings=scans, reports=sink, state_key=KEY)
    result = run_policy(PolicyRef(namespace="ns", name="p"), spec, ports, clock or FixedClock())
    index_key = sorted(k for k in sink.objects if k.endswith("/index.json"))[-1]
    images = {i["image"]: i for i in json.loads(sink.objects[index_key])["images"]}
    assert result.outcome.value == "Succeeded", result.errors
    return images, tags, scans


@pytest.mark.parametrize(("new_findings", "redeploy"), [([], True), (["CVE-9"], True), (["CVE-1"], False)])
def test_running_source_redeploy_needed_reads_the_tags_digest_once(
    new_findings: list[str], redeploy: bool
) -> None:
    images, tags, scans = run(
        [td(OLD, 3)], {OLD: ["CVE-1"], NEW: new_findings}, {"source": "running"}, MemorySink()
    )
    row = images[f"{ECR}/web:v1@{OLD}"]
    assert row["redeployNeeded"] is redeploy
    rt = row["runtime"]
    assert (rt["tagDigest"], rt["drift"], rt["runningDigests"], rt["runningTasks"]) == (NEW, True, [OLD], 3)
    assert (rt["clusters"], rt["services"], rt["inUseCount"]) == (["prod"], ["web"], 7)
    assert tags.asked == [f"{ECR}/web:v1"]
    assert sorted(scans.asked) == sorted([OLD, NEW])  # one extra read: the tag's digest, not a row


def test_latest_revision_with_clusters_adds_the_running_view() -> None:
    tds = [td(None, 0, service="", cluster=""), td(OLD, 2), td(NEW, 1)]
    images, _, scans = run(tds, {OLD: ["CVE-1"]}, {"clusters": ["prod"]}, MemorySink())
    # The declared row took in the tasks running its digest; the old digest is a row of its own.
    assert set(images) == {f"{ECR}/web:v1", f"{ECR}/web:v1@{OLD}"}
    declared = images[f"{ECR}/web:v1"]["runtime"]
    assert (declared["tagDigest"], declared["runningDigests"], declared["runningTasks"]) == (
        NEW,
        sorted([NEW, OLD]),
        1,
    )
    assert declared["drift"] is False
    old = images[f"{ECR}/web:v1@{OLD}"]
    assert old["runtime"]["drift"] is True and old["redeployNeeded"] is True
    assert sorted(scans.asked) == sorted([OLD, NEW])  # no extra read: the declared row is the tag's digest


def test_first_seen_running_survives_runs_and_the_csv_carries_it() -> None:
    sink, clock = MemorySink(), FixedClock()
    first = clock.now()
    run([td(OLD, 3)], {OLD: ["CVE-1"]}, {"source": "running"}, sink, clock)
    clock.advance(hours=6)
    images, _, _ = run([td(OLD, 3)], {OLD: ["CVE-1"]}, {"source": "running"}, sink, clock)
    rt = images[f"{ECR}/web:v1@{OLD}"]["runtime"]
    assert (rt["firstSeenRunning"], rt["lastSeenRunning"]) == (first.isoformat(), clock.now().isoformat())
    csv_key = sorted(k for k in sink.objects if k.endswith("/summary.csv"))[-1]
    rows = list(csv.DictReader(io.StringIO(sink.objects[csv_key].decode())))
    assert rows[0]["first_seen_running"] == first.isoformat()
    assert (rows[0]["tag_digest"], rows[0]["drift"], rows[0]["redeploy_needed"]) == (NEW, "yes", "yes")


def test_an_untagged_reference_runs_latest_and_its_drift_is_seen() -> None:
    images, tags, _ = run(
        [td(OLD, 1, image=f"{ECR}/web")], {OLD: ["CVE-1"]}, {"source": "running"}, MemorySink()
    )
    row = images[f"{ECR}/web:latest@{OLD}"]
    assert tags.asked == [f"{ECR}/web:latest"]
    assert (row["runtime"]["tagDigest"], row["runtime"]["drift"], row["redeployNeeded"]) == (NEW, True, True)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_index_json_joined_per_image_is_one_compact_document(count: int) -> None:
    images = [
        ImageResult(
            ref=parse_image(f"{ECR}/web:v{i}"),
            uses=[use("web", 2, "prod", "web")],
            digest=OLD,
            findings=[Finding("CVE-1", Severity.HIGH, 'a "quoted" pkg\\u2028')],
            runtime=runtime_context([use("web", 2, "prod", "web")], running_digests=[OLD], tag_digest=NEW),
        )
        for i in range(count)
    ]
    result = RunResult(run_id="r1", policy="ns/p", started=T0)
    body = render_index_json(
        "f", PolicyRef(namespace="ns", name="p"), images, result, {}, [], written=set(), objects=["x"]
    )
    doc = json.loads(body)
    assert body == json.dumps(doc, separators=(",", ":")).encode()
    assert len(doc["images"]) == count and list(doc)[-1] == "images"
