"""One run of our pipeline (`run_policy`) against the benchmark's moto server, in this process.

`python -m bench.ours --endpoint URL --fleet M --out result.json`. The driver starts a fresh
process per run, so CPU time and peak RSS (getrusage ru_maxrss) are this run's alone. The revision
cache persists between runs the way the product keeps it: in the state object in S3 (moto).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fleet as fleetmod
from bench.model import DEFAULT_BUCKETS, DEFAULT_LATENCY, Model, install_executor_accounting, parse_bucket

POLICY_NAME = "bench"
NAMESPACE = "bench"
BENCH_STATE_KEY = "bench-state-key-not-a-secret-0123456789"  # the HMAC key of the bench state object


def policy_document(jira_url: str | None = None, *, running: bool = False) -> dict[str, Any]:
    """The ScanPolicy spec the benchmark runs (`running`: source running over the bench-* clusters)."""
    spec: dict[str, Any] = {
        "schedule": "0 6 * * *",
        "aws": {"region": fleetmod.REGION},
        "taskDefinitions": {"include": list(fleetmod.INCLUDE), "exclude": list(fleetmod.EXCLUDE)},
        "severityThreshold": fleetmod.THRESHOLD,
        "report": {"s3": {"bucket": fleetmod.REPORT_BUCKET, "prefix": fleetmod.REPORT_PREFIX}},
    }
    if jira_url:
        # groupBy repository (the default): one ticket per affected repository and route
        spec["jira"] = {"url": jira_url, "credentialsSecret": "jira-bench", "project": "SEC"}
        if running:  # a route on task-definition tags: the running view must read them (and cache them)
            spec["jira"]["routes"] = [
                {"name": "ops", "match": {"taskDefinitionTags": {"team": "platform"}}, "project": "OPS"}
            ]
    if running:
        spec["taskDefinitions"].update(source="running", clusters=["bench-*"])
    return spec


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def rusage() -> dict[str, float]:
    """CPU seconds (user + system) and peak RSS (MiB) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu": ru.ru_utime + ru.ru_stime, "maxrssMiB": ru.ru_maxrss / 1024}


def current_rss_mib() -> float:
    """The resident set size now (Linux /proc), MiB."""
    with open("/proc/self/statm", encoding="utf-8") as fh:  # noqa: PTH123
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 1024 / 1024


class RssProbe:
    """Peak resident memory by pipeline stage: a sampler thread (every 20 ms) and proxies on the ports.

    While a port method runs, the stage is that port (e.g. `tickets.sync`); between port calls it is
    the pipeline's own work after the last port (rules, report rendering), e.g. `after tickets.sync`.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self._interval = interval
        self._stage = "before the run"
        self._peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-probe", daemon=True)

    def _note(self) -> None:
        rss = current_rss_mib()
        if rss > self._peaks.get(self._stage, 0.0):
            self._peaks[self._stage] = rss

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._note()

    def start(self) -> None:
        """Begin sampling."""
        self._note()
        self._thread.start()

    def stop(self) -> None:
        """End sampling."""
        self._stop.set()
        self._thread.join()
        self._note()

    def wrap(self, ports: Any) -> None:
        """Replace each port with a proxy that names the stage while its methods run."""
        for attr, methods in (
            ("images", ("task_definitions",)),
            ("digests", ("resolve",)),
            ("findings", ("scans",)),
            ("reports", ("put", "get")),
            ("tickets", ("sync",)),
        ):
            target = getattr(ports, attr)
            if target is not None:
                setattr(ports, attr, _StageProxy(self, attr, target, methods))

    def enter(self, stage: str) -> None:
        """A port method starts."""
        self._note()
        self._stage = stage

    def leave(self, stage: str) -> None:
        """A port method ended: what follows is the pipeline's own work."""
        self._note()
        self._stage = f"after {stage}"

    def peaks(self) -> dict[str, float]:
        """Stage -> peak RSS (MiB), in the order first seen."""
        return {k: round(v, 1) for k, v in self._peaks.items()}


class _StageProxy:
    def __init__(self, probe: RssProbe, name: str, target: Any, methods: tuple[str, ...]) -> None:
        self._probe, self._name, self._target, self._methods = probe, name, target, methods

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if attr not in self._methods:
            return value
        stage = f"{self._name}.{attr}"
        probe = self._probe

        def call(*args: Any, **kwargs: Any) -> Any:
            probe.enter(stage)
            try:
                return value(*args, **kwargs)
            finally:
                probe.leave(stage)

        return call


def point_at(endpoint: str) -> None:
    """AWS SDK environment for the emulator (no real credentials are involved)."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": fleetmod.REGION,
        }
    )
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        os.environ.pop(key, None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--fleet", choices=sorted(fleetmod.FLEETS), required=True)
    parser.add_argument("--seed", type=int, default=fleetmod.DEFAULT_SEED)
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY)
    parser.add_argument(
        "--bucket", action="append", default=[], help="extra bucket name=svc:Op,...@burst/rate"
    )
    parser.add_argument("--findings-page-cap", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--jira-url", default=None)
    parser.add_argument("--running-tasks", type=int, default=0, help="source running: this many tasks")
    parser.add_argument("--clusters", type=int, default=3, help="source running: over this many clusters")
    parser.add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run once; write the measurements as JSON."""
    args = _parser().parse_args(argv)
    wall0 = time.perf_counter()
    point_at(args.endpoint)

    from bench.inspector_fake import InspectorFake
    from ecs_scan_operator.adapters.aws_session import AwsClients
    from ecs_scan_operator.bootstrap import build_ports
    from ecs_scan_operator.core.policy import PolicyRef, parse_spec
    from ecs_scan_operator.pipeline import run_policy

    buckets = DEFAULT_BUCKETS + tuple(parse_bucket(b) for b in args.bucket)
    model = Model(latency=args.latency, buckets=buckets)
    undo = install_executor_accounting(model)
    size = fleetmod.FLEETS[args.fleet]
    fake = InspectorFake(size, args.seed, findings_page_cap=args.findings_page_cap)
    hooks = [model.attach, fake.attach]
    ecs_fake = None
    if args.running_tasks:
        from bench.running_fake import EcsRunningFake

        ecs_fake = EcsRunningFake(size, args.seed, args.running_tasks, args.clusters)
        hooks.append(ecs_fake.attach)
    clients = AwsClients(session_name="bench", hooks=hooks)
    policy = PolicyRef(namespace=NAMESPACE, name=POLICY_NAME)
    spec = parse_spec(policy_document(args.jira_url, running=bool(args.running_tasks)))
    from pydantic import SecretStr

    jira_credentials = None
    if args.jira_url:  # the Jira test server's credentials, passed by the driver in the environment
        from ecs_scan_operator.adapters.jira_credentials import JiraCredentials

        jira_credentials = JiraCredentials.from_env()
    ports = build_ports(
        policy,
        spec,
        clients=clients,
        concurrency=args.concurrency,
        jira_credentials=jira_credentials,
        # As the chart deploys it: a state key, so the warm run trusts the cached revisions.
        state_key=SecretStr(BENCH_STATE_KEY),
    )
    probe = RssProbe()
    probe.wrap(ports)
    probe.start()
    before = rusage()
    run_wall0 = time.perf_counter()
    result = run_policy(policy, spec, ports, _Clock())
    probe.stop()
    run_wall = time.perf_counter() - run_wall0
    after = rusage()
    undo()
    counted = dict(clients.counter.calls)
    calls = model.calls()
    if counted != calls:  # two independent counters over the same events must agree
        print(f"call counters disagree: {counted} vs {calls}", file=sys.stderr)
        return 3
    out = {
        "impl": "ours",
        "fleet": args.fleet,
        "calls": calls,
        "waited": model.waited(),
        "simulatedSeconds": round(model.now(), 3),
        "critical": {k: round(v, 3) for k, v in sorted(model.critical.items())},
        "cpuSeconds": round(after["cpu"], 3),
        "cpuRunSeconds": round(after["cpu"] - before["cpu"], 3),
        "fakeCpuSeconds": round(fake.cpu_seconds + (ecs_fake.cpu_seconds if ecs_fake else 0.0), 3),
        "maxrssMiB": round(after["maxrssMiB"], 1),
        "realSeconds": round(time.perf_counter() - wall0, 2),
        "realRunSeconds": round(run_wall, 2),
        "rssByStageMiB": probe.peaks(),
        "fakeRejected": fake.rejected[:5] + (ecs_fake.rejected[:5] if ecs_fake else []),
        "result": result.to_dict(),
    }
    Path(args.out).write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
