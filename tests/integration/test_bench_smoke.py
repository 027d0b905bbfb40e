"""The benchmark runs end to end on the smallest fleet (S): a results table, real call counts, and a
rerun that describes no task definition. Figures are not asserted: this is not a timed test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import run

pytestmark = pytest.mark.bench


def test_bench_fleet_s(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    code = run.main(
        [
            "--fleets",
            "S",
            "--results-dir",
            str(tmp_path / "results"),
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ]
    )
    assert code == 0
    text = out.read_text(encoding="utf-8")
    assert "## Fleet S" in text
    assert "| AWS calls | ours, first run | bound, first run | ours, rerun |" in text

    data = json.loads((tmp_path / "results" / "S.json").read_text(encoding="utf-8"))
    first, rerun = data["runs"]["ours_first"], data["runs"]["ours_rerun"]
    assert first["calls"] and all(n > 0 for n in first["calls"].values())
    assert first["calls"]["ecs:DescribeTaskDefinition"] > 0
    assert first["calls"]["inspector2:ListFindings"] > 0
    assert data["runs"]["baseline_first"]["calls"]["ecr:StartImageScan"] > 0
    assert rerun["calls"].get("ecs:DescribeTaskDefinition", 0) == 0
    assert rerun["calls"]["ecs:ListTaskDefinitions"] > 0
    assert first["result"]["result"] == "Succeeded"
    assert not first["fakeRejected"], first["fakeRejected"]
    # Issue #13 through the emulated Inspector: one SearchVulnerabilities per distinct CVE (the
    # model's limit), none on the rerun (the state's cache), and every finding prioritised.
    assert first["calls"]["inspector2:SearchVulnerabilities"] == data["truth"]["distinct_cves"] > 0
    assert rerun["calls"].get("inspector2:SearchVulnerabilities", 0) == 0
    assert sum(first["result"]["findingsByPriority"].values()) == first["result"]["findings"] > 0
    assert first["result"]["kevFindings"] > 0


def test_model_overlaps_pool_workers_and_serializes_on_the_bucket() -> None:
    """The simulated clock (not wall time): 8 workers overlap; the shared ECS bucket holds them to 20/s."""
    from concurrent.futures import ThreadPoolExecutor

    from bench.model import Model, install_executor_accounting

    model = Model(latency=0.05)
    undo = install_executor_accounting(model)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: model.call("ecr:DescribeImages"), range(80)))  # no bucket
        assert model.now() == pytest.approx(80 / 8 * 0.05)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: model.call("ecs:DescribeTaskDefinition"), range(200)))
        assert model.now() == pytest.approx(0.5 + (200 - 50) / 20 + 0.05)  # burst 50, then 20/s
        model.sleep(5.0)
        assert model.now() == pytest.approx(13.05)
    finally:
        undo()


def test_bench_running_fleet_s(tmp_path: Path) -> None:
    """source running on fleet S: the emulated tasks are read and paged, the rerun reads no tags again."""
    from bench import running

    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\n## Operator at scale\n\nkept\n", encoding="utf-8")
    argv = ["--fleets", "S", "--results-dir", str(tmp_path / "results"), "--out", str(out)]
    assert running.main([*argv, "--work", str(tmp_path / "work")]) == 0
    text = out.read_text(encoding="utf-8")
    assert "## Operator at scale\n\nkept" in text and "### Fleet S: 300 running tasks" in text
    data = json.loads((tmp_path / "results" / "running-S.json").read_text(encoding="utf-8"))
    first, rerun = data["runs"]["ours_first"], data["runs"]["ours_rerun"]
    assert first["result"]["result"] == "Succeeded", first["result"]["errors"]
    assert not first["fakeRejected"], first["fakeRejected"]
    # 300 tasks over 3 clusters: ListTasks pages and DescribeTasks batches of 100, as the bound says.
    for op in ("ecs:ListClusters", "ecs:ListTasks", "ecs:DescribeTasks"):
        assert first["calls"][op] == data["bound"]["calls"][op], op
    assert first["calls"]["ecs:DescribeTaskDefinition"] == data["bound"]["keptRevisions"] > 0
    assert rerun["calls"].get("ecs:DescribeTaskDefinition", 0) == 0
    # Running the same command again replaces the section instead of adding a second one.
    assert running.main([*argv, "--work", str(tmp_path / "work")]) == 0
    assert out.read_text(encoding="utf-8").count("## Running source") == 1
