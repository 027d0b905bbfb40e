"""Measure what a dead or failing AWS endpoint costs a run, with the default time limits.

    .venv/bin/python -m tests.support.measure_aws_faults [--only NAME ...]

Starts moto, seeds the demo fleet, puts the fault proxy (tests/support/fault_proxy.py) in front
of it, and runs the whole pipeline once per scenario: fault-free, then one stage's endpoint dead
(accepts the connection, never answers) or failing on every request. Prints a Markdown table:
the wall time of the run, the extra time over the fault-free run, and the requests the proxy
saw for the faulty service (attempts included). The figures go into docs/timeouts.md; tests
assert outcomes only (tests/integration/test_aws_faults.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

from ecs_scan_operator.bootstrap import build_ports
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.demo.fleet import REPORT_BUCKET, seed_fleet
from ecs_scan_operator.pipeline import run_policy
from ecs_scan_operator.settings import load_aws_settings
from tests.support.fakes import FixedClock
from tests.support.fault_proxy import FaultProxy, Rule
from tests.support.moto_fixtures import AWS_ENV, reset_moto, start_moto

REGION = "us-east-1"


@dataclass
class Scenario:
    """One fault: its name, the stage it hits, the rules."""

    name: str
    stage: str
    service: str
    rules: list[Rule] = field(default_factory=list)
    enhanced: bool = False


SCENARIOS = [
    Scenario("fault-free", "-", ""),
    Scenario("ecs dead", "ECS listing", "ecs", [Rule("blackhole", service="ecs")]),
    Scenario(
        "ecr DescribeImages dead",
        "digests",
        "ecr",
        [Rule("blackhole", service="ecr", operation="DescribeImages")],
    ),
    Scenario(
        "ecr findings dead (BASIC)",
        "findings",
        "ecr",
        [
            Rule("blackhole", service="ecr", operation="GetRegistryScanningConfiguration"),
            Rule("blackhole", service="ecr", operation="DescribeImageScanFindings"),
        ],
    ),
    Scenario(
        "ecr DescribeImageScanFindings dead (BASIC)",
        "findings",
        "ecr",
        [Rule("blackhole", service="ecr", operation="DescribeImageScanFindings")],
    ),
    Scenario(
        "inspector2 dead (ENHANCED)",
        "findings",
        "inspector2",
        [Rule("blackhole", service="inspector2")],
        True,
    ),
    Scenario("s3 dead", "state read + report writes", "s3", [Rule("blackhole", service="s3")]),
    Scenario("s3 503 on every PutObject", "report writes", "s3", [Rule("503", service="s3", method="PUT")]),
    Scenario(
        "ecr throttled on every DescribeImages",
        "digests",
        "ecr",
        [Rule("throttle", service="ecr", operation="DescribeImages")],
    ),
    Scenario("ecs resets every connection", "ECS listing", "ecs", [Rule("reset", service="ecs")]),
    Scenario("every endpoint dead", "all", "*", [Rule("blackhole")]),
]


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", nargs="*", default=None, help="scenario names (substring match)")
    args = parser.parse_args(argv)
    os.environ.update(AWS_ENV)
    for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[key]  # ECS_SCAN_AWS_* stay: to measure other limits than the defaults
    limits = load_aws_settings()
    proc, moto = start_moto()
    rows: list[str] = []
    baseline = None
    try:
        for sc in SCENARIOS:
            if args.only and sc.name != "fault-free" and not any(o in sc.name for o in args.only):
                continue
            reset_moto(moto)
            seed_fleet(moto, region=REGION)
            if sc.enhanced:
                import boto3

                boto3.client(
                    "ecr", region_name=REGION, endpoint_url=moto
                ).put_registry_scanning_configuration(scanType="ENHANCED", rules=[])
            with FaultProxy(moto, lifetime=900) as proxy:
                proxy.add(*sc.rules)
                os.environ["AWS_ENDPOINT_URL"] = proxy.url
                ref = PolicyRef(namespace="sec", name="measure")
                spec = parse_spec(
                    {
                        "schedule": "@daily",
                        "aws": {"region": REGION},
                        "report": {"s3": {"bucket": REPORT_BUCKET, "prefix": "scans"}},
                    }
                )
                started = time.monotonic()
                result = run_policy(ref, spec, build_ports(ref, spec), FixedClock(), run_id=f"m-{len(rows)}")
                took = time.monotonic() - started
                faulty = sum(
                    n for (s, _, m), n in proxy.seen.items() if sc.service in (s, "*") and m != "pass"
                )
            if baseline is None:
                baseline = took
            failures = "; ".join(f"{k}" for k in sorted(result.stage_failures)) or "-"
            failed = result.images_by_status.get("failed", 0)
            rows.append(
                f"| {sc.name} | {sc.stage} | {took:.1f} s | {took - baseline:+.1f} s | {faulty} | "
                f"{result.outcome.value} | {failures} | {failed} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        f"Limits: connect {limits.connect_timeout_seconds} s, read {limits.read_timeout_seconds} s, "
        f"{limits.max_attempts} attempts ({limits.retry_mode}), "
        f"cooldown {limits.endpoint_cooldown_seconds} s\n"
    )
    print(
        "| scenario | stage hit | run | over fault-free | faulty requests | outcome "
        "| stage failures | failed images |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
