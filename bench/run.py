"""The benchmark driver: fleets, runs, bounds, targets, bench/RESULTS.md.

    python -m bench.run --fleets S,M          # make bench
    python -m bench.run --fleets L            # make bench-large (ours only: memory and CPU)

Per fleet: a moto server subprocess seeded with the fleet (`bench/server.py`), a Jira test server
(tests/jira_server, in this process), then five runs, each in a fresh subprocess so that CPU time
and peak RSS are the run's own: ours (first run, empty state), ours again (nothing changed: the
revision cache is warm, read back from the state object in S3), the baseline, the baseline again,
and ours once more after every 50th family got a new revision.
Each fleet's measurements are saved as `<results-dir>/<fleet>.json`; RESULTS.md is rendered from
every saved fleet, so `make bench-large` adds L beside S and M.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fleet as fleetmod
from bench.model import DEFAULT_LATENCY
from bench.report import FILTER_MAX, FINDINGS_PAGE, render, targets_m

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
CHANGE_EVERY = 50  # the "after new revisions" run: every 50th family gets a new revision


# --- running ---


def _machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo", encoding="utf-8") as fh:  # noqa: PTH123 -- Linux only, as the bench
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as fh:  # noqa: PTH123
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    import boto3
    import botocore
    import moto

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ramGiB": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
        "moto": moto.__version__,
        "kernel": platform.release(),
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 -- git from PATH, as make does
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


class Server:
    """The seeded moto server subprocess."""

    def __init__(self, fleet: str, seed: int, seed_via: str, log: Path) -> None:
        self._log = log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(  # noqa: S603 -- our own module, fixed arguments
            [
                sys.executable,
                "-m",
                "bench.server",
                "--fleet",
                fleet,
                "--seed",
                str(seed),
                "--seed-via",
                seed_via,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"the moto server did not start; see {log}")
        self.info: dict[str, Any] = json.loads(line)
        self.endpoint: str = self.info["endpoint"]

    def stop(self) -> None:
        """Close its stdin (it exits), wait, and kill it only if it does not."""
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


def _run_child(module: str, args: list[str], env: Mapping[str, str], out: Path, log: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", module, *args, "--out", str(out)]
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(  # noqa: S603 -- our own modules
            cmd, cwd=ROOT, env={**os.environ, **env}, stdout=fh, stderr=fh, check=False, timeout=1800
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed with exit code {proc.returncode}; see {log}")
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def _jira_counts(records: list[Any]) -> dict[str, int]:
    out = {"requests": len(records), "writes": sum(1 for r in records if r.write)}
    out["creates"] = sum(1 for r in records if r.method == "POST" and r.path.endswith("/issue"))
    out["searches"] = sum(1 for r in records if "/search" in r.path)
    return out


def register_new_revisions(endpoint: str, size: fleetmod.FleetSize, seed: int, every: int) -> dict[str, int]:
    """A configuration-only deploy of every `every`-th family: a new ACTIVE revision, same containers."""
    import boto3

    from ecs_scan_operator.core.selection import family_selected

    ecs = boto3.client(
        "ecs",
        endpoint_url=endpoint,
        region_name=fleetmod.REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 -- the local emulator's dummy credentials
    )
    families = kept = 0
    for i in range(0, size.families, every):
        fam = fleetmod.family(size, seed, i)
        ecs.register_task_definition(
            family=fam.name,
            containerDefinitions=fam.container_definitions(size, seed, size.revisions),  # type: ignore[arg-type]
            tags=fam.tags,  # type: ignore[arg-type]
        )
        families += 1
        kept += int(family_selected(fam.name, fleetmod.INCLUDE, fleetmod.EXCLUDE))
    return {"families": families, "keptChanged": kept, "every": every}


def run_fleet(
    name: str,
    *,
    seed: int,
    latency: float,
    baseline: bool,
    jira: bool,
    seed_via: str,
    work: Path,
    changes: bool = True,
) -> dict[str, Any]:
    """Seed one fleet; run ours (first, rerun), the baseline (first, rerun), ours after new revisions."""
    size = fleetmod.FLEETS[name]
    started = time.perf_counter()
    t0 = time.perf_counter()
    truth = fleetmod.truth(size, seed, findings_page=FINDINGS_PAGE, filter_max=FILTER_MAX)
    truth_seconds = time.perf_counter() - t0
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"{name}.log"
    log.write_text("", encoding="utf-8")
    server = Server(name, seed, seed_via, work / f"{name}-moto.log")
    jira_server: Any = None
    env: dict[str, str] = {}
    if jira:
        try:
            from tests.jira_server.server import JiraTestServer
        except ImportError:
            jira_server = None
        else:
            jira_server = JiraTestServer("cloud").start()
            jira_server.state.add_project("SEC", "Security")
            jira_server.state.add_project("OPS", "Operations")
            env.update(jira_server.credentials_env())
            # The test server listens on loopback, which the operator refuses unless allowed.
            env["ECS_SCAN_JIRA_ALLOWED_HOSTS"] = "127.0.0.1"
    runs: dict[str, Any] = {}
    try:
        common = ["--endpoint", server.endpoint, "--fleet", name, "--latency", str(latency)]
        jira_args = ["--jira-url", jira_server.url] if jira_server else []
        plan = [("ours_first", "bench.ours"), ("ours_rerun", "bench.ours")]
        if baseline:
            plan += [("baseline_first", "bench.baseline"), ("baseline_rerun", "bench.baseline")]
        for key, module in plan:
            mark = jira_server.mark() if jira_server else 0
            extra = ["--seed", str(seed)] if module == "bench.ours" else []
            runs[key] = _run_child(module, common + extra + jira_args, env, work / f"{name}-{key}.json", log)
            if jira_server:
                runs[key]["jiraServer"] = _jira_counts(jira_server.since(mark))
        if changes:
            changed = register_new_revisions(server.endpoint, size, seed, CHANGE_EVERY)
            mark = jira_server.mark() if jira_server else 0
            runs["ours_changed"] = _run_child(
                "bench.ours",
                [*common, "--seed", str(seed), *jira_args],
                env,
                work / f"{name}-ours_changed.json",
                log,
            )
            runs["ours_changed"]["changes"] = changed
            if jira_server:
                runs["ours_changed"]["jiraServer"] = _jira_counts(jira_server.since(mark))
    finally:
        server.stop()
        if jira_server:
            jira_server.stop()
    return {
        "fleet": name,
        "size": size.__dict__,
        "seed": seed,
        "latency": latency,
        "truth": truth.to_dict(),
        "truthSeconds": round(truth_seconds, 2),
        "server": server.info,
        "runs": runs,
        "jira": bool(jira_server),
        "elapsedSeconds": round(time.perf_counter() - started, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "machine": _machine(),
        "command": os.environ.get("BENCH_COMMAND")
        or shlex.join(["python", "-m", "bench.run", *sys.argv[1:]]),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the fleets, save their JSON, render RESULTS.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fleets", default="S,M", help="comma-separated: S, M, L")
    parser.add_argument("--seed", type=int, default=fleetmod.DEFAULT_SEED)
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY)
    parser.add_argument("--baseline-fleets", default="S,M", help="fleets the baseline runs on")
    parser.add_argument("--no-jira", action="store_true")
    parser.add_argument("--no-changes", action="store_true", help="skip the run after new revisions")
    parser.add_argument("--seed-via", choices=["backend", "http"], default="backend")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS_MD)
    parser.add_argument("--work", type=Path, default=ROOT / ".out" / "bench")
    args = parser.parse_args(argv)
    fleets = [f.strip().upper() for f in args.fleets.split(",") if f.strip()]
    with_baseline = {f.strip().upper() for f in args.baseline_fleets.split(",")}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for name in fleets:
        print(f"fleet {name}: seeding and running ...", flush=True)
        data = run_fleet(
            name,
            seed=args.seed,
            latency=args.latency,
            baseline=name in with_baseline,
            jira=not args.no_jira,
            seed_via=args.seed_via,
            work=args.work,
            changes=not args.no_changes,
        )
        (args.results_dir / f"{name}.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
        print(f"fleet {name}: done in {data['elapsedSeconds']:.0f} s", flush=True)
        if name == "M":
            for target, measured, verdict in targets_m(data):
                print(f"  {verdict:4} {target}: {measured}", flush=True)
    results = {
        p.stem: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(args.results_dir.glob("*.json"))
        if p.stem in fleetmod.FLEETS
    }
    render(results, args.out)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
