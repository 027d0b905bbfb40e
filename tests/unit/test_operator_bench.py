"""The operator benchmark's bookkeeping (bench/operator_bench.py): run checks, audit counts, RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import report
from bench.operator_bench import (
    SECTION,
    audit_counts,
    check_runs_once,
    policy_manifests,
    render_section,
    update_results_md,
    without_status,
)


def test_every_way_a_run_can_be_lost_or_repeated() -> None:
    keys = {"a/p1", "a/p2", "b/p3", "b/p4"}
    finished = {"a/p1": "r1", "a/p2": "r2", "b/p3": "r3"}  # p4 never finished
    reports = {
        "a/p1": {"r1"},  # exactly once
        "a/p2": {"r2", "r2b"},  # twice
        "b/p3": {"other"},  # a report, but not of the run the status names
        "b/p9": {"r9"},  # a policy nobody asked to run
    }
    lost, repeated = check_runs_once(finished, reports, keys)
    assert lost == ["a/p2", "b/p3", "b/p4"]
    assert repeated == ["a/p2", "b/p9"]
    assert check_runs_once({"a/p1": "r1"}, {"a/p1": {"r1"}}, {"a/p1"}) == ([], [])


def test_manifests_and_status_completeness() -> None:
    docs = policy_manifests(5, ["n0", "n1"])
    assert [d["metadata"]["namespace"] for d in docs] == ["n0", "n1", "n0", "n1", "n0"]
    assert len({d["metadata"]["name"] for d in docs}) == 5 and docs[0]["spec"]["schedule"]
    items: list[dict[str, Any]] = [
        {"metadata": {"namespace": "n0", "name": "a", "generation": 2}, "status": {"observedGeneration": 2}},
        {"metadata": {"namespace": "n0", "name": "b", "generation": 2}, "status": {"observedGeneration": 1}},
        {"metadata": {"namespace": "n1", "name": "c", "generation": 1}},
    ]
    assert without_status(items) == ["n0/b", "n1/c"]


def test_audit_counts_only_the_operator_in_the_window(tmp_path: Path) -> None:
    def event(user: str, at: str, verb: str, resource: str, sub: str = "") -> str:
        ref = {"resource": resource, **({"subresource": sub} if sub else {})}
        return json.dumps({"user": {"username": user}, "stageTimestamp": at, "verb": verb, "objectRef": ref})

    log = tmp_path / "audit.log"
    log.write_text(
        "\n".join(
            [
                event("operator", "2026-01-01T00:00:10.5Z", "get", "scanpolicies"),
                event("operator", "2026-01-01T00:00:20Z", "patch", "scanpolicies", "status"),
                event("admin", "2026-01-01T00:00:20Z", "list", "scanpolicies"),
                event("operator", "2026-01-01T00:02:00Z", "get", "scanpolicies"),  # after the window
            ]
        )
        + "\n"
    )
    start = 1767225600.0  # 2026-01-01T00:00:00Z
    counts = audit_counts(log, start, start + 60)
    assert dict(counts) == {"get scanpolicies": 1, "patch scanpolicies/status": 1}
    assert audit_counts(tmp_path / "absent.log", start, start + 60) == {}


def _result(n: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "policies": n,
        "namespaces": n // 100,
        "allStatusSeconds": 45.0,
        "rssIdleMiB": 200.0,
        "rssPeakBurstMiB": 230.0,
        "runNow": 100,
        "idleRequestsPerMinute": 0.0,
        "runNowFinished": 100,
        "runNowSeconds": 90.0,
        "runsLost": [],
        "runsRepeated": [],
        "rssAfterMiB": 210.0,
        "command": f"make bench-operator N={n}",
        "commit": "abc1234",
        "date": "2026-01-01 00:00 UTC",
    }
    return base | over


def test_targets_pass_and_fail_on_their_bounds() -> None:
    text = render_section([_result(5000)])
    assert text.count("**PASS**") == 5 and "**FAIL**" not in text
    worse = render_section([_result(5000, rssIdleMiB=257.0, allStatusSeconds=121.0, runsRepeated=["a/b"])])
    assert worse.count("**FAIL**") == 3
    assert "Targets" not in render_section([_result(1000)])  # the targets are the 5,000-policy ones


def test_the_section_keeps_the_hand_written_part_and_survives_make_bench(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\n\nfleets ...\n")
    update_results_md(md, render_section([_result(1000)]))
    with md.open("a") as fh:
        fh.write("\n### Where the memory went\n\nHAND-WRITTEN\n")
    update_results_md(md, render_section([_result(1000), _result(5000)]))
    text = md.read_text()
    assert text.count(SECTION) == 1 and "| 5,000 |" in text and "HAND-WRITTEN" in text
    assert text.index("| 5,000 |") < text.index("HAND-WRITTEN")
    # the pipeline benchmark re-renders the top of the file and keeps this section
    assert SECTION in report._kept_sections(md) and "HAND-WRITTEN" in report._kept_sections(md)
