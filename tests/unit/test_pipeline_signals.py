"""run_policy with signals (issue #13): KEV lookups and their cache, actOn, noFix, priorities, the
SLA's first sightings kept across runs, overdue in the report, result and state."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from ecs_scan_operator.core.kev import KevEntry
from ecs_scan_operator.core.model import Finding, FixAvailable, Severity, Signals
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.pipeline import run_policy
from ecs_scan_operator.ports import Ports
from tests.support.fakes import (
    FakeDigests,
    FakeFindings,
    FakeImageSource,
    FakeVulnerabilities,
    FixedClock,
    MemorySink,
)

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
POLICY = PolicyRef(namespace="team-a", name="nightly")
FLEET = {"svc-a": [("app", f"{ECR}/app:1")], "svc-b": [("web", f"{ECR}/web:2")]}
KEY = SecretStr("k" * 32)
STATE = "scans/state/team-a/nightly.json"
T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def spec(**over: Any) -> Any:
    base: dict[str, Any] = {
        "schedule": "@daily",
        "aws": {"region": "us-east-1"},
        "report": {"s3": {"bucket": "reports", "prefix": "scans"}},
    }
    base.update(over)
    return parse_spec(base)


def f(vid: str, sev: Severity, pkg: str, **signals: Any) -> Finding:
    return Finding(vid, sev, pkg, installed_version="1.0", fixed_version="1.1", signals=Signals(**signals))


def fleet_findings() -> FakeFindings:
    return FakeFindings(
        by_repo={
            "app": [
                f("CVE-2024-0001", Severity.LOW, "openssl", epss=0.02, fix_available=FixAvailable.YES),
                f(
                    "CVE-2024-0002",
                    Severity.CRITICAL,
                    "zlib",
                    exploit_available=False,
                    fix_available=FixAvailable.YES,
                ),
                f(
                    "CVE-2024-0003",
                    Severity.HIGH,
                    "curl",
                    exploit_available=True,
                    fix_available=FixAvailable.NO,
                ),
                f("GHSA-aaaa-bbbb-cccc", Severity.MEDIUM, "lodash", epss=0.3),
            ],
            "web": [
                f("CVE-2024-0001", Severity.LOW, "openssl", epss=0.02),
                f("CVE-2024-0004", Severity.MEDIUM, "xz"),
            ],
        }
    )


def intel() -> FakeVulnerabilities:
    kev = KevEntry(
        checked_at=T0, kev=True, date_added=date(2026, 11, 1), date_due=date(2026, 11, 22), action="Patch"
    )
    return FakeVulnerabilities(
        known={"CVE-2024-0001": kev, "CVE-2024-0002": KevEntry(checked_at=T0, kev=False)}
    )


def ports(sink: MemorySink, fs: FakeFindings, vi: FakeVulnerabilities | None) -> Ports:
    return Ports(
        images=FakeImageSource(FLEET),
        digests=FakeDigests(),
        findings=fs,
        reports=sink,
        state_key=KEY,
        vulnerabilities=vi,
    )


def image_doc(sink: MemorySink, run: str, repo: str, tag: str, day: str = "2026-11-28") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        sink.objects[f"scans/{day}/team-a/nightly/{run}/images/{repo}/{tag}.json"]
    )
    return doc


def test_kev_asked_once_per_distinct_cve_then_cached_within_the_ttl() -> None:
    sink, clock, vi = MemorySink(), FixedClock(T0), intel()
    s = spec(severityThreshold="LOW")
    r1 = run_policy(POLICY, s, ports(sink, fleet_findings(), vi), clock, run_id="r1")
    # distinct CVEs of both images, each once; the GHSA id is not something SearchVulnerabilities takes
    assert vi.asked == [["CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003", "CVE-2024-0004"]]
    assert r1.kev_findings == 2  # CVE-2024-0001 in app and in web
    doc = image_doc(sink, "r1", "app", "1")
    by_id = {x["vulnerabilityId"]: x for x in doc["findings"]}
    assert by_id["CVE-2024-0001"]["kev"] is True and by_id["CVE-2024-0001"]["kevDateDue"] == "2026-11-22"
    assert by_id["CVE-2024-0001"]["priority"] == "P1"  # LOW, but known-exploited
    assert by_id["CVE-2024-0002"]["kev"] is False and by_id["CVE-2024-0002"]["priority"] == "P2"
    assert by_id["CVE-2024-0003"]["kev"] is None  # unknown to Inspector: null, not false
    assert by_id["GHSA-aaaa-bbbb-cccc"]["kev"] is None
    # a rerun within the TTL asks nothing; past it, everything again
    clock.advance(hours=23)
    run_policy(POLICY, s, ports(sink, fleet_findings(), vi), clock, run_id="r2")
    assert len(vi.asked) == 1
    clock.advance(hours=2)
    run_policy(POLICY, s, ports(sink, fleet_findings(), vi), clock, run_id="r3")
    assert len(vi.asked) == 2 and len(vi.asked[1]) == 4


def test_a_new_cve_alone_is_asked_on_the_rerun() -> None:
    sink, clock, vi, fs = MemorySink(), FixedClock(T0), intel(), fleet_findings()
    run_policy(POLICY, spec(), ports(sink, fs, vi), clock, run_id="r1")
    fs.by_repo["web"].append(f("CVE-2025-0009", Severity.HIGH, "bash"))
    clock.advance(hours=1)
    run_policy(POLICY, spec(), ports(sink, fs, vi), clock, run_id="r2")
    assert vi.asked[1] == ["CVE-2025-0009"]


def test_a_failed_lookup_leaves_kev_unknown_and_is_a_run_error() -> None:
    sink, vi = MemorySink(), intel()
    vi.refuse = {"CVE-2024-0002"}
    result = run_policy(POLICY, spec(), ports(sink, fleet_findings(), vi), FixedClock(T0), run_id="r1")
    assert result.outcome.value == "PartialFailure"
    assert any("kev: 1 CVE(s) not looked up" in e for e in result.errors)
    assert result.error_causes["inspector2:SearchVulnerabilities AccessDeniedException"] == 1
    by_id = {x["vulnerabilityId"]: x for x in image_doc(sink, "r1", "app", "1")["findings"]}
    assert by_id["CVE-2024-0002"]["kev"] is None
    # not cached: asked again next run
    run_policy(
        POLICY, spec(), ports(sink, fleet_findings(), vi), FixedClock(T0 + timedelta(hours=1)), run_id="r2"
    )
    assert vi.asked[1] == ["CVE-2024-0002"]


def test_act_on_rules_and_no_fix_report_only() -> None:
    sink = MemorySink()
    s = spec(actOn=[{"severityAtLeast": "CRITICAL"}, {"kev": True}, {"epssAtLeast": 0.1}], noFix="reportOnly")
    result = run_policy(POLICY, s, ports(sink, fleet_findings(), intel()), FixedClock(T0), run_id="r1")
    doc = image_doc(sink, "r1", "app", "1")
    # LOW on the KEV list, CRITICAL, and the GHSA with EPSS 0.3; not the HIGH (no rule matches it)
    assert sorted(x["vulnerabilityId"] for x in doc["findings"]) == [
        "CVE-2024-0001",
        "CVE-2024-0002",
        "GHSA-aaaa-bbbb-cccc",
    ]
    assert result.findings_by_priority == {"P1": 2, "P2": 1, "P3": 1, "P4": 0}
    s2 = spec(actOn=[{"severityAtLeast": "HIGH", "exploitAvailable": True}], noFix="reportOnly")
    run_policy(POLICY, s2, ports(sink, fleet_findings(), intel()), FixedClock(T0), run_id="r2")
    index = json.loads(sink.objects["scans/2026-11-28/team-a/nightly/r2/index.json"])
    app = next(i for i in index["images"] if i["repository"] == "app")
    # HIGH with an exploit matches, but Inspector says it has no fix: reported, not acted on
    assert app["counts"]["HIGH"] == 0 and app["suppressed"] == 1


def test_without_act_on_the_threshold_decides_and_signals_do_not_widen_the_query() -> None:
    sink, fs = MemorySink(), fleet_findings()
    asked: list[list[Severity]] = []
    scans = fs.scans

    def spy(images: Any, severities: Any) -> Any:
        asked.append(list(severities))
        return scans(images, severities)

    fs.scans = spy  # type: ignore[method-assign]
    run_policy(POLICY, spec(severityThreshold="HIGH"), ports(sink, fs, intel()), FixedClock(T0), run_id="r1")
    assert asked == [[Severity.CRITICAL, Severity.HIGH, Severity.UNTRIAGED]]
    run_policy(POLICY, spec(actOn=[{"kev": True}]), ports(sink, fs, intel()), FixedClock(T0), run_id="r2")
    assert Severity.INFORMATIONAL in asked[1]  # a KEV rule can match any severity


def test_first_seen_survives_runs_and_makes_findings_overdue() -> None:
    sink, clock, fs = MemorySink(), FixedClock(T0), fleet_findings()
    s = spec(dueDays={"P1": 7, "P2": 30, "P3": 60, "P4": 90})
    run_policy(POLICY, s, ports(sink, fs, None), clock, run_id="r1")
    state = json.loads(sink.objects[STATE])
    assert len(state["firstSeen"]) == 4  # (image, vulnerability, package) at or above MEDIUM
    clock.advance(days=31)
    day = (T0 + timedelta(days=31)).date().isoformat()
    r2 = run_policy(POLICY, s, ports(sink, fs, None), clock, run_id="r2")
    by_id = {x["vulnerabilityId"]: x for x in image_doc(sink, "r2", "app", "1", day)["findings"]}
    critical = by_id["CVE-2024-0002"]  # P2: due 30 days after the first run, overdue a day later
    assert critical["firstSeen"] == T0.isoformat() and critical["due"] == "2026-12-28"
    assert critical["overdue"] is True
    assert by_id["CVE-2024-0003"]["priority"] == "P1" and by_id["CVE-2024-0003"]["overdue"] is True
    assert (
        by_id["GHSA-aaaa-bbbb-cccc"]["priority"] == "P3" and by_id["GHSA-aaaa-bbbb-cccc"]["overdue"] is False
    )
    assert r2.overdue_by_priority == {"P1": 1, "P2": 1, "P3": 0, "P4": 0} and r2.overdue_findings == 2
    rows = list(
        csv.DictReader(io.StringIO(sink.objects[f"scans/{day}/team-a/nightly/r2/summary.csv"].decode()))
    )
    overdue = {r["image"].rsplit("/", 1)[-1]: (r["overdue"], r["p1"], r["next_due"]) for r in rows}
    assert overdue == {"app:1": ("2", "1", "2026-12-05"), "web:2": ("0", "0", "2027-02-26")}
    # a fixed finding is forgotten: it starts afresh when it comes back
    fs.by_repo["app"] = [x for x in fs.by_repo["app"] if x.vulnerability_id != "CVE-2024-0002"]
    clock.advance(days=1)
    run_policy(POLICY, s, ports(sink, fs, None), clock, run_id="r3")
    assert not any("CVE-2024-0002" in k for k in json.loads(sink.objects[STATE])["firstSeen"])


def test_inspector_first_observed_starts_the_sla() -> None:
    sink = MemorySink()
    old = f("CVE-2024-0005", Severity.CRITICAL, "glibc")
    from dataclasses import replace

    fs = FakeFindings(by_repo={"app": [replace(old, first_observed=T0 - timedelta(days=100))]})
    result = run_policy(POLICY, spec(dueDays={"P2": 30}), ports(sink, fs, None), FixedClock(T0), run_id="r1")
    assert result.overdue_findings == 1 and result.overdue_by_priority["P2"] == 1


def test_an_image_not_scanned_keeps_its_first_sightings_an_image_gone_forgets_them() -> None:
    from ecs_scan_operator.core.model import ImageScan, ScanState

    sink, clock, fs = MemorySink(), FixedClock(T0), fleet_findings()
    run_policy(POLICY, spec(), ports(sink, fs, None), clock, run_id="r1")
    before = json.loads(sink.objects[STATE])["firstSeen"]
    scans = fs.scans

    def app_fails(images: Any, severities: Any) -> Any:
        out = scans(images, severities)
        return {
            k: ImageScan(ScanState.FAILED, reason="throttled") if k[0].repository == "app" else v
            for k, v in out.items()
        }

    fs.scans = app_fails  # type: ignore[method-assign]
    clock.advance(days=1)
    run_policy(POLICY, spec(), ports(sink, fs, None), clock, run_id="r2")
    assert json.loads(sink.objects[STATE])["firstSeen"] == before  # a failed scan is not a fix
    p = ports(sink, fs, None)
    p.images = FakeImageSource({"svc-b": [("web", f"{ECR}/web:2")]})
    clock.advance(days=1)
    run_policy(POLICY, spec(), p, clock, run_id="r3")
    after = json.loads(sink.objects[STATE])["firstSeen"]
    assert after == {k: v for k, v in before.items() if k.startswith("web:2")}  # app:1 left the fleet


def test_kev_looked_up_batch_by_batch_each_cve_once(monkeypatch: Any) -> None:
    """Findings batches are applied as they come (memory stays flat): each batch asks only the CVEs
    no earlier batch of the run asked (CVE-2024-0001 is in both images)."""
    from ecs_scan_operator import pipeline

    monkeypatch.setattr(pipeline, "SCAN_BATCH", 1)
    sink, vi = MemorySink(), intel()
    run_policy(
        POLICY, spec(severityThreshold="LOW"), ports(sink, fleet_findings(), vi), FixedClock(T0), run_id="r1"
    )
    assert vi.asked == [["CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003"], ["CVE-2024-0004"]]
    state = json.loads(sink.objects[STATE])
    assert sorted(state["kev"]) == ["CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003", "CVE-2024-0004"]
    # the image the second batch read still gets the first batch's answer for the shared CVE
    web = {x["vulnerabilityId"]: x for x in image_doc(sink, "r1", "web", "2")["findings"]}
    assert web["CVE-2024-0001"]["kev"] is True


def test_kev_cache_pruned_to_the_cves_still_found() -> None:
    sink, clock, vi, fs = MemorySink(), FixedClock(T0), intel(), fleet_findings()
    run_policy(POLICY, spec(), ports(sink, fs, vi), clock, run_id="r1")
    fs.by_repo["app"] = []
    fs.by_repo["web"] = []
    clock.advance(hours=1)
    run_policy(POLICY, spec(), ports(sink, fs, vi), clock, run_id="r2")
    assert "kev" not in json.loads(sink.objects[STATE])  # nothing found: nothing kept


def test_kev_lookups_of_a_batch_overlap_the_next_batch_read_and_precede_its_rules(monkeypatch: Any) -> None:
    """The first batch's lookups run while the second batch is read (they wait for that read, which
    would never come if the lookups blocked the stage), and each batch's rules see its answers."""
    import threading

    from ecs_scan_operator import pipeline

    monkeypatch.setattr(pipeline, "SCAN_BATCH", 1)
    sink, fs, vi = MemorySink(), fleet_findings(), intel()
    reads: list[str] = []
    second_read = threading.Event()
    scans, search = fs.scans, vi.search

    def read(images: Any, severities: Any) -> Any:
        reads.append(images[0][0].repository)
        if len(reads) == 2:
            second_read.set()
        return scans(images, severities)

    overlapped: list[bool] = []

    def looked_up(ids: Any, region: str, now: datetime) -> Any:
        if not overlapped:  # the first batch's lookups
            overlapped.append(second_read.wait(timeout=30))
        return search(ids, region, now)

    fs.scans = read  # type: ignore[method-assign]
    vi.search = looked_up  # type: ignore[method-assign, assignment]
    run_policy(POLICY, spec(severityThreshold="LOW"), ports(sink, fs, vi), FixedClock(T0), run_id="r1")
    assert overlapped == [True] and reads == ["app", "web"]
    assert vi.asked == [["CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003"], ["CVE-2024-0004"]]
    app = {x["vulnerabilityId"]: x for x in image_doc(sink, "r1", "app", "1")["findings"]}
    web = {x["vulnerabilityId"]: x for x in image_doc(sink, "r1", "web", "2")["findings"]}
    assert app["CVE-2024-0001"]["kev"] is True and app["CVE-2024-0002"]["kev"] is False
    assert web["CVE-2024-0001"]["kev"] is True and web["CVE-2024-0004"]["kev"] is None
