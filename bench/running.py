"""The running-source benchmark (issue #12): `taskDefinitions.source: running` over a running fleet.

    python -m bench.running --fleets M        # make bench-running (M: 3 clusters, 3,000 tasks)
    python -m bench.running --fleets L        # make bench-running FLEETS=L (L: 15,000 tasks, RSS)

Per fleet: the benchmark's moto server seeded with the fleet (`bench/server.py`), 3 clusters
`bench-0..2` created in it, a Jira test server, then two runs of our pipeline, each in a fresh
process (`bench/ours.py --running-tasks N`): the first with an empty state, the rerun with nothing
redeployed. ListTasks and DescribeTasks are answered by `bench/running_fake.py` (moto's tasks carry
no digests); Inspector by `bench/inspector_fake.py`; the rest is moto. The policy is the fleet
benchmark's (include `prod-*`, exclude `*-sandbox`, `*-canary`, threshold MEDIUM) with
`source: running`, `clusters: [bench-*]` and a Jira route on a task-definition tag, so the running
revisions' tags must be read (DescribeTaskDefinition include=TAGS) and cached.

The lower bound (`running_bound`): ListClusters 1 + ListTasks pages + ceil(tasks/100) DescribeTasks
per cluster + GetRegistryScanningConfiguration 1 + DescribeImages (one per repository with a running
tag, 100 tags a call: the tags' current digests) + ListCoverage ceil(digests/10) + ListFindings
max(ceil(covered/10), ceil(matching findings/25)) over the running digests and the drifted tags'
current digests + GetConfiguration 1 (the re-scan window) + S3 (the state read; two PutObject per
affected image - its JSON and its page -, the 4 run objects and the state); on the first run also
one SearchVulnerabilities per distinct CVE of those findings (KEV; none on the rerun, within the
cache's TTL). The tag reads (one DescribeTaskDefinition per running kept revision) are not in it: the
first run makes them, the rerun must make none. Figures go to bench/results/running-<fleet>.json
and the "Running source" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fleet as fleetmod
from bench.model import DEFAULT_LATENCY
from bench.report import FILTER_MAX, FINDINGS_PAGE, total
from bench.run import RESULTS_DIR, RESULTS_MD, ROOT, Server, _git_commit, _jira_counts, _machine, _run_child
from bench.running_fake import bounds, running_fleet
from ecs_scan_operator.core.selection import family_selected

TASKS = {"S": 300, "M": 3000, "L": 15000}
CLUSTERS = 3
SECTION = "## Running source (issue 12)"
END = "<!-- end running source -->"


KEV_OP = "inspector2:SearchVulnerabilities"
KEV_ROW = "{:,} first run, 0 rerun"


def running_bound(size: fleetmod.FleetSize, seed: int, tasks: int, clusters: int) -> dict[str, Any]:
    """The fewest calls a run of source running can make on this fleet, and the counts behind them."""
    running = running_fleet(size, seed, tasks, clusters)
    calls: dict[str, int] = dict(bounds(running, clusters))
    kept = [t for t in running if family_selected(t.family, fleetmod.INCLUDE, fleetmod.EXCLUDE)]
    rows: set[tuple[str, str, str]] = set()  # (repository, tag, digest) of the kept ECR containers
    for t in kept:
        for _, uri, digest in t.containers:
            if uri.startswith(fleetmod.REGISTRY + "/"):
                repo, _, tag = uri[len(fleetmod.REGISTRY) + 1 :].rpartition(":")
                rows.add((repo, tag, digest))
    tags_by_repo: dict[str, set[str]] = defaultdict(set)
    for repo, tag, _ in rows:
        tags_by_repo[repo].add(tag)
    current = {(r, tag): fleetmod.image(r, int(tag.split(".")[1]), seed).digest for r, tag, _ in rows}
    read = {(r, d) for r, _, d in rows} | {
        (r, current[(r, tag)]) for r, tag, d in rows if current[(r, tag)] != d
    }
    per_digest = {}
    cves: set[str] = set()
    for _, d in read:
        if fleetmod.profile(d, seed).covered:
            matching = [c for c in fleetmod.findings_of(d, seed) if c.severity in fleetmod.MATCHING]
            per_digest[d] = len(matching)
            cves.update(c.vid for c in matching)
    affected = sum(1 for _, _, d in rows if per_digest.get(d, 0) > 0)
    calls.update(
        {
            "ecr:GetRegistryScanningConfiguration": 1,
            "ecr:DescribeImages": sum(math.ceil(len(v) / 100) for v in tags_by_repo.values()),
            "inspector2:ListCoverage": math.ceil(len(read) / FILTER_MAX),
            "inspector2:ListFindings": max(
                math.ceil(len(per_digest) / FILTER_MAX), math.ceil(sum(per_digest.values()) / FINDINGS_PAGE)
            ),
            # the running view's re-scan window: one registry (account, region)
            "inspector2:GetConfiguration": 1,
            "s3:GetObject": 1,
            # an affected image's JSON and its page, the 4 run objects, the state
            "s3:PutObject": 2 * affected + 4 + 1,
        }
    )
    return {
        "calls": calls,
        "tasks": len(running),
        "keptTasks": len(kept),
        "keptRevisions": len({t.td_arn for t in kept}),
        "rows": len(rows),
        "drifted": sum(1 for r, tag, d in rows if current[(r, tag)] != d),
        "digestsRead": len(read),
        "covered": len(per_digest),
        "affected": affected,
        # first run only (the rerun finds them in the state's KEV cache, within its TTL)
        "kevLookups": len(cves),
    }


def run_fleet(name: str, *, seed: int, latency: float, work: Path) -> dict[str, Any]:
    """Seed one fleet, create the clusters, run ours twice (first run, rerun)."""
    import boto3

    size = fleetmod.FLEETS[name]
    tasks = TASKS[name]
    started = time.perf_counter()
    bound = running_bound(size, seed, tasks, CLUSTERS)
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"running-{name}.log"
    log.write_text("", encoding="utf-8")
    server = Server(name, seed, "backend", work / f"running-{name}-moto.log")
    from tests.jira_server.server import JiraTestServer

    jira = JiraTestServer("cloud").start()
    jira.state.add_project("SEC", "Security")
    jira.state.add_project("OPS", "Operations")
    env = dict(jira.credentials_env(), ECS_SCAN_JIRA_ALLOWED_HOSTS="127.0.0.1")
    runs: dict[str, Any] = {}
    try:
        ecs = boto3.client(
            "ecs",
            endpoint_url=server.endpoint,
            region_name=fleetmod.REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 -- the local emulator's dummy credentials
        )
        for k in range(CLUSTERS):
            ecs.create_cluster(clusterName=f"bench-{k}")
        common = [
            "--endpoint",
            server.endpoint,
            "--fleet",
            name,
            "--latency",
            str(latency),
            "--seed",
            str(seed),
        ]
        common += ["--running-tasks", str(tasks), "--clusters", str(CLUSTERS), "--jira-url", jira.url]
        for key in ("ours_first", "ours_rerun"):
            mark = jira.mark()
            # MALLOC_ARENA_MAX=2 as in the image (Dockerfile): without it each of the run's threads
            # may get a malloc arena of its own, and the peak RSS measures fragmentation.
            child_env = dict(env, MALLOC_ARENA_MAX="2")
            runs[key] = _run_child("bench.ours", common, child_env, work / f"running-{name}-{key}.json", log)
            runs[key]["jiraServer"] = _jira_counts(jira.since(mark))
    finally:
        server.stop()
        jira.stop()
    return {
        "fleet": name,
        "seed": seed,
        "latency": latency,
        "clusters": CLUSTERS,
        "bound": bound,
        "runs": runs,
        "elapsedSeconds": round(time.perf_counter() - started, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "machine": _machine(),
        "command": os.environ.get("BENCH_COMMAND")
        or shlex.join(["python", "-m", "bench.running", *sys.argv[1:]]),
    }


def targets(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) of one fleet."""
    b, runs = data["bound"], data["runs"]
    first, rerun = runs["ours_first"], runs["ours_rerun"]
    bound = total(b["calls"])
    out = []
    n1 = total(first["calls"])
    tag_reads = first["calls"].get("ecs:DescribeTaskDefinition", 0)
    kev = b.get("kevLookups", 0)  # results written before the KEV term have none
    first_bound = bound + kev + b["keptRevisions"]
    out.append(
        (
            "first run: AWS calls within 1.1x of the lower bound plus the KEV lookups (one per distinct "
            f"CVE) and the tag reads ({b['keptRevisions']:,} running kept revisions)",
            f"{n1:,} vs {bound:,} + {kev:,} + {b['keptRevisions']:,} = {n1 / first_bound:.2f}x "
            f"({tag_reads:,} DescribeTaskDefinition)",
            "PASS" if n1 <= 1.1 * first_bound else "FAIL",
        )
    )
    n2 = total(rerun["calls"])
    out.append(
        (
            "rerun, nothing redeployed: AWS calls within 1.1x of the lower bound",
            f"{n2:,} vs {bound:,} = {n2 / bound:.2f}x",
            "PASS" if n2 <= 1.1 * bound else "FAIL",
        )
    )
    dtd = rerun["calls"].get("ecs:DescribeTaskDefinition", 0)
    out.append(
        ("rerun, nothing redeployed: zero DescribeTaskDefinition", str(dtd), "PASS" if dtd == 0 else "FAIL")
    )
    peak = max(first["maxrssMiB"], rerun["maxrssMiB"])
    if data["fleet"] == "L":
        out.append(
            (
                "peak RSS of the pipeline process below 150 MiB",
                f"{peak:.0f} MiB",
                "PASS" if peak < 150 else "FAIL",
            )
        )
    return out


def section(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The RESULTS.md section of every saved running fleet."""
    lines = [
        SECTION,
        "",
        "Written by `bench/running.py` (`make bench-running`, `make bench-running FLEETS=L`);",
        "do not edit by hand.",
        "`taskDefinitions.source: running` over 3 clusters, `MALLOC_ARENA_MAX=2` as in the image (the fleet",
        "sections above run without it); ListTasks/DescribeTasks emulated with digests",
        "(bench/running_fake.py: every 10th family's app tag was pushed again while its tasks run the old",
        "digest), Inspector emulated, the rest moto. Lower bound terms in the module docstring.",
        "",
    ]
    for name in ("S", "M", "L"):
        data = results.get(name)
        if not data:
            continue
        b, runs = data["bound"], data["runs"]
        lines += [
            f"### Fleet {name}: {b['tasks']:,} running tasks",
            "",
            f"`{data['command']}` - {data['date']}, commit {data['commit']}, seed {data['seed']}, "
            f"latency {data['latency'] * 1000:.0f} ms per call.",
            "",
            f"{b['keptTasks']:,} tasks of kept families ({b['keptRevisions']:,} revisions), "
            f"{b['rows']:,} running ECR images (repository, tag, digest), {b['drifted']:,} of them "
            "drifted (their tag points at "
            f"another digest now), {b['digestsRead']:,} digests read, {b['covered']:,} covered, "
            f"{b['affected']:,} affected.",
            "",
            "| target | measured | result |",
            "|---|---|---|",
            *[f"| {t} | {m} | **{v}** |" for t, m, v in targets(data)],
            "",
            "| AWS calls | first run | rerun | lower bound |",
            "|---|---|---|---|",
        ]
        ops = sorted(set(runs["ours_first"]["calls"]) | set(runs["ours_rerun"]["calls"]) | set(b["calls"]))
        first, rerun = runs["ours_first"], runs["ours_rerun"]
        for op in ops:
            lines.append(
                f"| {op} | {first['calls'].get(op, 0):,} | {rerun['calls'].get(op, 0):,} "
                f"| {b['calls'].get(op, KEV_ROW.format(b.get('kevLookups', 0)) if op == KEV_OP else '-')} |"
            )
        lines.append(
            f"| **total** | {total(runs['ours_first']['calls']):,} | {total(runs['ours_rerun']['calls']):,} "
            f"| {total(b['calls']):,} |"
        )
        lines += [
            "",
            f"Peak RSS first / rerun: {first['maxrssMiB']:.0f} / {rerun['maxrssMiB']:.0f} MiB; "
            "CPU of the run without the emulations: "
            f"{runs['ours_first']['cpuRunSeconds'] - runs['ours_first']['fakeCpuSeconds']:.2f} / "
            f"{runs['ours_rerun']['cpuRunSeconds'] - runs['ours_rerun']['fakeCpuSeconds']:.2f} s; "
            f"simulated wall time {runs['ours_first']['simulatedSeconds']:.1f} / "
            f"{runs['ours_rerun']['simulatedSeconds']:.1f} s; outcome {first['result']['result']} / "
            f"{rerun['result']['result']}{_why(first, rerun)}.",
            "",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def _why(*runs: Mapping[str, Any]) -> str:
    errors = sorted({e for r in runs for e in r["result"]["errors"]})
    return f" ({'; '.join(errors)})" if errors else ""


def write_section(text: str, dest: Path) -> None:
    """Replace (or append) the section in RESULTS.md; everything else stays as it is."""
    old = dest.read_text(encoding="utf-8") if dest.exists() else ""
    at = old.find("\n" + SECTION)
    if at >= 0:
        end = old.find(END, at)
        old = old[:at] + old[end + len(END) + 1 :] if end >= 0 else old[:at]
    dest.write_text(old.rstrip("\n") + "\n\n" + text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the fleets, save their JSON, write the section."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fleets", default="M")
    parser.add_argument("--seed", type=int, default=fleetmod.DEFAULT_SEED)
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS_MD)
    parser.add_argument("--work", type=Path, default=ROOT / ".out" / "bench")
    args = parser.parse_args(argv)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for name in [f.strip().upper() for f in args.fleets.split(",") if f.strip()]:
        print(f"running fleet {name}: seeding and running ...", flush=True)
        data = run_fleet(name, seed=args.seed, latency=args.latency, work=args.work)
        (args.results_dir / f"running-{name}.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
        for target, measured, verdict in targets(data):
            print(f"  {verdict:4} {target}: {measured}", flush=True)
    results = {
        p.stem.removeprefix("running-"): json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(args.results_dir.glob("running-*.json"))
    }
    write_section(section(results), args.out)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
