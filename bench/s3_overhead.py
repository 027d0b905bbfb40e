"""Extra S3 requests per normal run from the run lease and the conditional writes (issue 10).

Runs one policy over the demo fleet against moto's server twice per code tree: a first run (no
state yet) and a rerun, and counts every S3 HTTP request the run sends (botocore's before-send
event: retries included, nothing left out: index.json and the lease release count too).

    .venv/bin/python -m bench.s3_overhead --base <git rev>

`--base` is the commit to compare with (default: the parent of the lease work, 348e784).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tests.support.moto_fixtures import AWS_ENV, start_moto

from ecs_scan_operator.demo.fleet import REPORT_BUCKET, seed_fleet

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys
from collections import Counter
from datetime import UTC, datetime
from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.bootstrap import build_ports
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.pipeline import run_policy

sent = Counter()
def hook(client):
    client.meta.events.register(
        "before-send.s3.*", lambda request, **_: sent.update([request.method + " " + sys.argv[2]])
    )
    client.meta.events.register("before-call.s3.*", lambda model, **_: sent.update([model.name]))

class Clock:
    def now(self):
        return datetime.now(UTC)

spec = parse_spec(json.loads(sys.argv[1]))
ref = PolicyRef(namespace="sec", name="payments")
ports = build_ports(ref, spec, clients=AwsClients(hooks=[hook]))
run_policy(ref, spec, ports, Clock())
print(json.dumps({k: v for k, v in sent.items() if " " not in k}))
"""

SPEC = {
    "schedule": "@daily",
    "aws": {"region": "us-east-1"},
    "taskDefinitions": {"include": ["payments-*", "platform-*"], "exclude": ["*-sandbox"]},
    "severityThreshold": "HIGH",
    "report": {"s3": {"bucket": REPORT_BUCKET, "prefix": "PREFIX"}},
}


def measure(tree: Path, endpoint: str, prefix: str) -> dict[str, int]:
    """S3 calls of one run by operation (one HTTP request each unless retried)."""
    spec = json.loads(json.dumps(SPEC).replace("PREFIX", prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENV, AWS_ENDPOINT_URL=endpoint, PYTHONPATH=str(tree / "operator"))
    out = subprocess.run(  # noqa: S603  # our own probe, fixed arguments
        [sys.executable, "-c", PROBE, json.dumps(spec), "x"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    counts: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return counts


def main() -> None:
    """Print a markdown table: S3 calls per run, base against this tree."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="348e784")
    args = parser.parse_args()
    proc, endpoint = start_moto()
    try:
        seed_fleet(endpoint)
        with tempfile.TemporaryDirectory() as tmp:
            git = ["git", "-C", str(REPO), "archive", args.base, "operator"]
            archive = subprocess.run(git, capture_output=True, check=True).stdout  # noqa: S603 -- git from PATH, fixed arguments
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(tmp, filter="data")
            rows = []
            for label, tree in (("base " + args.base, Path(tmp)), ("this tree", REPO)):
                prefix = "base" if tree != REPO else "this"
                first = measure(tree, endpoint, prefix)
                rerun = measure(tree, endpoint, prefix)
                rows.append((label, first, rerun))
    finally:
        proc.terminate()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## S3 requests per run: run lease and conditional writes (issue 10)",
        "",
        f"`.venv/bin/python -m bench.s3_overhead --base {args.base}` - {when}; the demo fleet "
        "(payments-*, platform-*), every S3 request of one run counted, index.json and the lease "
        "release included.",
        "",
        "| code | run | GetObject | PutObject | DeleteObject | total S3 |",
        "|---|---|---|---|---|---|",
    ]
    for label, first, rerun in rows:
        for name, counts in (("first run", first), ("rerun", rerun)):
            cells = [str(counts.get(op, 0)) for op in ("GetObject", "PutObject", "DeleteObject")]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + f" | {sum(counts.values())} |")
    extra = sum(rows[1][1].values()) - sum(rows[0][1].values())
    lines += [
        "",
        f"{extra:+d} S3 requests per run: the lease's GetObject, its conditional PutObject (take) and its "
        "conditional DeleteObject (release); one more PutObject per minute a run lasts (renewal). The "
        "state's If-Match / If-None-Match rides on the PutObject it always made: no extra request.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (REPO / "bench" / "results" / "s3_overhead.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
