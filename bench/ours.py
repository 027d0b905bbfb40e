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
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fleet as fleetmod
from bench.model import DEFAULT_BUCKETS, DEFAULT_LATENCY, Model, install_executor_accounting, parse_bucket

POLICY_NAME = "bench"
NAMESPACE = "bench"


def policy_document(jira_url: str | None = None) -> dict[str, Any]:
    """The ScanPolicy spec the benchmark runs."""
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


def main(argv: list[str] | None = None) -> int:
    """Run once; write the measurements as JSON."""
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
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
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
    clients = AwsClients(session_name="bench", hooks=[model.attach, fake.attach])
    policy = PolicyRef(namespace=NAMESPACE, name=POLICY_NAME)
    spec = parse_spec(policy_document(args.jira_url))
    jira_credentials = None
    if args.jira_url:  # the Jira test server's credentials, passed by the driver in the environment
        from pydantic import SecretStr

        jira_credentials = {
            "email": SecretStr(os.environ["JIRA_EMAIL"]),
            "apiToken": SecretStr(os.environ["JIRA_API_TOKEN"]),
        }
    ports = build_ports(
        policy, spec, clients=clients, concurrency=args.concurrency, jira_credentials=jira_credentials
    )
    rss_by_stage: dict[str, float] = {"before the run": current_rss_mib()}

    def progress(stage: str, done: int, total: int) -> None:
        rss_by_stage[stage] = max(rss_by_stage.get(stage, 0.0), current_rss_mib())

    before = rusage()
    run_wall0 = time.perf_counter()
    result = run_policy(policy, spec, ports, _Clock(), progress=progress)
    rss_by_stage["after the run"] = current_rss_mib()
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
        "fakeCpuSeconds": round(fake.cpu_seconds, 3),
        "maxrssMiB": round(after["maxrssMiB"], 1),
        "realSeconds": round(time.perf_counter() - wall0, 2),
        "realRunSeconds": round(run_wall, 2),
        "rssByStageMiB": {k: round(v, 1) for k, v in rss_by_stage.items()},
        "fakeRejected": fake.rejected[:5],
        "result": result.to_dict(),
    }
    Path(args.out).write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
