"""Prefetch (multi-account runs): digests, findings and KEV data read while the inventory is read.

What it must never change is the run's outcome: every test compares a run whose source tells the
pipeline each revision as it is read (the prefetch works) with the same run whose source does not
(the stages read everything), over the failure classes a read can have - a call that raises, a
scan that failed, a digest not found, a KEV lookup refused - and checks that the prefetch did the
reads (the stages asked only for the rest) and that each failure is recorded once, by its stage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from ecs_scan_operator import pipeline
from ecs_scan_operator.core.kev import KevEntry
from ecs_scan_operator.core.model import (
    Finding,
    ImageRef,
    ImageScan,
    Resolution,
    Severity,
    TaskDefinitionImages,
    TaskDefinitionListing,
)
from ecs_scan_operator.core.policy import PolicyRef, TaskDefinitionsSpec, parse_spec
from ecs_scan_operator.core.result import RunResult
from ecs_scan_operator.core.state import RevisionCache, RunState
from ecs_scan_operator.errors import ScanError
from ecs_scan_operator.pipeline import Prefetch, run_policy
from ecs_scan_operator.ports import FanOut, Ports
from tests.support.fakes import (
    FakeDigests,
    FakeFindings,
    FakeImageSource,
    FakeVulnerabilities,
    FixedClock,
    MemorySink,
)

ACCOUNTS = ("111111111111", "222222222222", "333333333333")
REGIONS = ("eu-west-1", "us-east-1")
PATTERN = "arn:aws:iam::{account}:role/ecs-scan-read"
REF = PolicyRef(namespace="team-a", name="org")
REPOS = ("app", "api", "broken-svc", "uncovered-job", "worker")


def registry(account: str, region: str) -> str:
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def fleet(account: str) -> dict[str, list[tuple[str, str]]]:
    """Per region the source substitutes nothing, so each family names its region's registry."""
    out: dict[str, list[tuple[str, str]]] = {}
    for region in REGIONS:
        for n in range(12):
            repo = REPOS[n % len(REPOS)]
            tag = "gone" if n == 7 else f"v{n % 3}"
            out[f"{region}-svc-{n:02d}"] = [
                ("app", f"{registry(account, region)}/{repo}:{tag}"),
                ("proxy", "public.ecr.aws/nginx/nginx:1.27"),
            ]
    return out


FINDINGS = {
    "app": [Finding("CVE-2024-0001", Severity.CRITICAL), Finding("CVE-2024-0002", Severity.HIGH)],
    "api": [Finding("CVE-2024-0002", Severity.HIGH), Finding("GHSA-xxxx-yyyy-zzzz", Severity.HIGH)],
    "worker": [Finding("CVE-2024-0003", Severity.MEDIUM), Finding("CVE-2024-0004", Severity.LOW)],
}
KNOWN = {"CVE-2024-0001": KevEntry(checked_at=datetime(2026, 1, 1, tzinfo=UTC), kev=True)}


class Quiet:
    """The same source, but it never tells the pipeline a revision early: the stages read everything."""

    def __init__(self, inner: FakeImageSource) -> None:
        self.inner = inner

    def task_definitions(
        self,
        selection: TaskDefinitionsSpec,
        region: str,
        cache: RevisionCache,
        account: str = "",
        found: Callable[[TaskDefinitionImages], None] | None = None,
    ) -> TaskDefinitionListing:
        return self.inner.task_definitions(selection, region, cache, account)


def in_prefetch() -> bool:
    return threading.current_thread().name.startswith("prefetch")


class Digests(FakeDigests):
    """FakeDigests recording who asked what; `fail_prefetch` makes the prefetch's calls raise."""

    def __init__(self, fail_prefetch: bool = False) -> None:
        self.fail_prefetch = fail_prefetch
        self.asked: list[tuple[bool, list[ImageRef]]] = []
        self.lock = threading.Lock()

    def resolve(self, refs: Sequence[ImageRef]) -> dict[ImageRef, Resolution]:
        with self.lock:
            self.asked.append((in_prefetch(), list(refs)))
        if self.fail_prefetch and in_prefetch():
            raise ScanError("ecr:DescribeImages: ThrottlingException after retries")
        return super().resolve(refs)


class Findings(FakeFindings):
    """FakeFindings recording the keys asked, by whom; `fail_prefetch` makes the prefetch's calls raise."""

    def __init__(self, fail_prefetch: bool = False) -> None:
        super().__init__(by_repo=FINDINGS)
        self.fail_prefetch = fail_prefetch
        self.keys: list[tuple[bool, tuple[ImageRef, str]]] = []

    def scans(
        self, images: Sequence[tuple[ImageRef, str]], severities: Sequence[Severity]
    ) -> dict[tuple[ImageRef, str], ImageScan]:
        self.keys.extend((in_prefetch(), k) for k in images)
        if self.fail_prefetch and in_prefetch():
            raise ScanError("inspector2:ListFindings: InternalServerException")
        return super().scans(images, severities)


def policy() -> Any:
    return parse_spec(
        {
            "schedule": "@daily",
            "severityThreshold": "MEDIUM",
            "aws": {"regions": list(REGIONS), "accounts": list(ACCOUNTS), "roleArnPattern": PATTERN},
            "report": {"s3": {"bucket": "reports"}},
        }
    )


def run(
    *, early: bool, digests: Digests | None = None, findings: Findings | None = None, **kev: Any
) -> tuple[RunResult, Ports, FakeVulnerabilities]:
    src = FakeImageSource({}, by_account={a: fleet(a) for a in ACCOUNTS})
    intel = FakeVulnerabilities(known=dict(KNOWN), **kev)
    ports = Ports(
        images=src if early else Quiet(src),
        digests=digests or Digests(),
        findings=findings or Findings(),
        reports=MemorySink(),
        fanout=FanOut(workers_per_target=2, max_concurrency=12),
        vulnerabilities=intel,
    )
    return run_policy(REF, policy(), ports, FixedClock()), ports, intel


def outcome(result: RunResult) -> dict[str, Any]:
    """What a user sees of a run, without its id and times."""
    data = result.to_dict()
    for key in ("id", "startTime", "completionTime", "durationSeconds", "awsCalls", "reportUri"):
        data.pop(key, None)
    return data


def images_of(ports: Ports, result: RunResult) -> dict[str, bytes]:
    """The per-image report objects (JSON and HTML), without the run id."""
    sink = ports.reports
    assert isinstance(sink, MemorySink)
    objects = {k[k.index("/images/") :]: v for k, v in sink.objects.items() if "/images/" in k}
    assert objects
    return {k: v.replace(result.run_id.encode(), b"RUN") for k, v in objects.items()}


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # 12 families per registry name 5 repositories x 3 tags: groups of 4, batches of 8.
    monkeypatch.setattr(pipeline, "REGISTRY_GROUP", 4)
    monkeypatch.setattr(pipeline, "PREFETCH_BATCH", 8)


@pytest.fixture
def slow_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inventory outlasts the prefetch, as on a cold multi-account run: every batch submitted
    has run when the inventory ends (the fakes' inventory is instant, so close() would drop them)."""
    real = Prefetch.close

    def close(self: Prefetch) -> None:
        futures.wait(self._futures)
        real(self)

    monkeypatch.setattr(Prefetch, "close", close)


def test_a_prefetched_run_equals_a_run_without_it_and_the_stages_ask_only_the_rest(
    slow_inventory: None,
) -> None:
    quiet, quiet_ports, quiet_intel = run(early=False)
    early, early_ports, early_intel = run(early=True)
    assert outcome(early) == outcome(quiet)
    assert images_of(early_ports, early) == images_of(quiet_ports, quiet)
    assert early.errors_total == quiet.errors_total > 0  # broken-svc's scans fail in both
    digests, findings = early_ports.digests, early_ports.findings
    assert isinstance(digests, Digests) and isinstance(findings, Findings)
    by_prefetch = [r for pre, refs in digests.asked if pre for r in refs]
    by_stage = [r for pre, refs in digests.asked if not pre for r in refs]
    assert by_prefetch, "the prefetch resolved nothing"
    # The stage resolves only what the prefetch did not (not found, the last partial batch).
    found = {r for r in by_prefetch if r.tag != "gone"}
    assert not found & set(by_stage)
    stage_keys = [k for pre, k in findings.keys if not pre]
    prefetched_keys = {k for pre, k in findings.keys if pre}
    # A key the prefetch read completely is not read again; a failed scan is.
    again = {k for k in stage_keys if k in prefetched_keys}
    assert again and all("broken" in k[0].repository for k in again)
    # Every CVE is asked once, whoever asked it; the same CVEs as without the prefetch.
    asked = [v for call in early_intel.asked for v in call]
    assert len(asked) == len(set(asked))
    assert sorted(asked) == sorted(v for call in quiet_intel.asked for v in call)


@pytest.mark.parametrize("fail", ["digests", "findings"])
def test_a_prefetch_read_that_raises_is_read_again_by_its_stage_and_recorded_by_none(
    fail: str, slow_inventory: None
) -> None:
    quiet, quiet_ports, _ = run(early=False)
    digests = Digests(fail_prefetch=fail == "digests")
    findings = Findings(fail_prefetch=fail == "findings")
    early, early_ports, _ = run(early=True, digests=digests, findings=findings)
    assert outcome(early) == outcome(quiet)  # the same errors (broken-svc), none from the prefetch
    assert images_of(early_ports, early) == images_of(quiet_ports, quiet)
    assert any(pre for pre, _ in digests.asked)
    if fail == "findings":
        assert any(pre for pre, _ in findings.keys)


def test_a_refused_kev_lookup_is_asked_again_by_the_findings_stage_which_records_it(
    slow_inventory: None,
) -> None:
    quiet, _, quiet_intel = run(early=False, refuse={"CVE-2024-0002"})
    early, _, early_intel = run(early=True, refuse={"CVE-2024-0002"})
    assert outcome(early) == outcome(quiet)
    assert [e for e in early.errors if "kev" in e] == [e for e in quiet.errors if "kev" in e]
    asked = [v for call in early_intel.asked for v in call]
    assert asked.count("CVE-2024-0002") == 2  # the prefetch's refusal is not the last word
    assert quiet_intel.asked and sum(call.count("CVE-2024-0002") for call in quiet_intel.asked) == 1


def test_a_stopped_run_prefetches_nothing() -> None:
    stop = threading.Event()
    stop.set()
    digests, findings = Digests(), Findings()
    ports = Ports(images=Quiet(FakeImageSource({})), digests=digests, findings=findings, reports=MemorySink())
    prefetch = Prefetch(policy(), ports, RunState(), FixedClock().now(), stop)
    for n in range(40):
        image = f"{registry(ACCOUNTS[0], REGIONS[0])}/app:v{n}"
        prefetch.found(TaskDefinitionImages(f"arn:{n}", f"svc-{n}", 1, (container(image),), REGIONS[0]))
    prefetch.close()
    assert digests.asked == [] and findings.keys == []
    assert prefetch.digests == {} and prefetch.scans == {}


def container(image: str) -> Any:
    from ecs_scan_operator.core.model import ContainerImage

    return ContainerImage("app", image)


def test_batches_keep_a_registry_together_and_small_registries_go_when_enough_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline, "FLUSH_ALL", 2)
    monkeypatch.setattr(pipeline, "REGISTRY_GROUP", 8)
    digests = Digests()
    ports = Ports(
        images=Quiet(FakeImageSource({})), digests=digests, findings=Findings(), reports=MemorySink()
    )
    prefetch = Prefetch(policy(), ports, RunState(), FixedClock().now(), None)

    def tell(account: str, n: int) -> None:
        image = f"{registry(account, REGIONS[0])}/app:v{n}"
        prefetch.found(
            TaskDefinitionImages(f"arn:{account}:{n}", f"s{n}", 1, (container(image),), REGIONS[0])
        )
        # the same image again, and a public one: neither is queued
        prefetch.found(
            TaskDefinitionImages(f"arn:{account}:{n}b", f"t{n}", 1, (container(image),), REGIONS[0])
        )
        prefetch.found(TaskDefinitionImages("arn:p", "p", 1, (container("nginx:1"),), REGIONS[0]))

    for n in range(8):  # a full group of 8 in one registry: a batch of 8
        tell(ACCOUNTS[0], n)
    assert len(prefetch._futures) == 1
    for n in range(5):  # three registries with 5 images each: 15 wait, no group full
        for account in ACCOUNTS:
            tell(account, 100 + n)
    assert len(prefetch._futures) == 1
    tell(ACCOUNTS[1], 200)  # the 16th waiting image (2 batches of 8): everything waiting goes
    assert len(prefetch._futures) == 2
    tell(ACCOUNTS[2], 300)  # waits; the stages will read it
    futures.wait(prefetch._futures)
    prefetch.close()
    batches = [refs for _, refs in digests.asked]
    assert [len(b) for b in batches] == [8, 16]
    assert {r.account for r in batches[0]} == {ACCOUNTS[0]}
    assert {r.account for r in batches[1]} == set(ACCOUNTS)
    assert len(prefetch.digests) == 24 and len(prefetch.scans) == 24


def test_a_warm_rerun_prefetches_only_the_revisions_it_describes(slow_inventory: None) -> None:
    """Revisions from the state's cache are known at once: the stages read their images (with all
    their concurrency) instead of the prefetch, one batch at a time."""
    fleets = {a: fleet(a) for a in ACCOUNTS}
    src = FakeImageSource({}, by_account=fleets)
    digests, sink = Digests(), MemorySink()
    ports = Ports(
        images=src,
        digests=digests,
        findings=Findings(),
        reports=sink,
        fanout=FanOut(workers_per_target=2, max_concurrency=12),
        state_key=SecretStr("k" * 32),  # the revision cache is used only from a trusted state
    )
    clock = FixedClock()
    first = run_policy(REF, policy(), ports, clock)
    assert any(pre for pre, _ in digests.asked)
    digests.asked.clear()
    clock.advance(days=1)
    second = run_policy(REF, policy(), ports, clock)
    assert src.described == len(ACCOUNTS) * len(REGIONS) * 24  # in the first run only
    assert not any(pre for pre, _ in digests.asked)
    assert outcome(second) == outcome(first)


def test_images_waiting_go_once_revisions_stop_naming_new_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet names most of its images early: the stragglers of a small registry are read while
    the inventory still runs, not left to the stages after it."""
    monkeypatch.setattr(pipeline, "STALL", 5)
    digests = Digests()
    ports = Ports(
        images=Quiet(FakeImageSource({})), digests=digests, findings=Findings(), reports=MemorySink()
    )
    prefetch = Prefetch(policy(), ports, RunState(), FixedClock().now(), None)
    images = [f"{registry(ACCOUNTS[0], REGIONS[0])}/app:v{n}" for n in range(3)]

    def tell(n: int, image: str) -> None:
        prefetch.found(TaskDefinitionImages(f"arn:{n}", f"svc-{n}", 1, (container(image),), REGIONS[0]))

    for n, image in enumerate(images):
        tell(n, image)
    for n in range(4):  # 4 revisions naming known images: still waiting (a group needs 4)
        tell(10 + n, images[n % 3])
    assert prefetch._futures == []
    tell(20, images[0])  # the 5th in a row: the 3 waiting go
    futures.wait(prefetch._futures)
    prefetch.close()
    assert [sorted(r.tag or "" for r in refs) for _, refs in digests.asked] == [["v0", "v1", "v2"]]
