"""Two `ecs-scan-operator run` processes of one policy at once: exactly one files tickets.

Real processes against moto's server and the contract-checked Jira test server, with Jira's
search slowed so that the two runs overlap. The one that loses the lease writes nothing and
exits 1 with `another run of <ns>/<policy> holds the lease since <time> (run <id>)`; over all
repetitions no dedup label is on more than one ticket. 3 repetitions by default;
ECS_SCAN_LEASE_REPS=20 runs the issue's 20 (about 5 s each).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from ecs_scan_operator.demo.fleet import REPORT_BUCKET, seed_fleet
from tests.jira_server.server import JiraTestServer
from tests.support.moto_fixtures import AWS_ENV

pytestmark = pytest.mark.integration
REPS = int(os.environ.get("ECS_SCAN_LEASE_REPS", "3"))
DEDUP = re.compile(r"ecsscan-[0-9a-f]{16}")


def write_policy(path: Path, jira_url: str, name: str) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": {"name": name, "namespace": "sec"},
        "spec": {
            "schedule": "@daily",
            "aws": {"region": "us-east-1"},
            "taskDefinitions": {"include": ["payments-*", "platform-*"], "exclude": ["*-sandbox"]},
            "severityThreshold": "HIGH",
            "report": {"s3": {"bucket": REPORT_BUCKET, "prefix": "scans"}},
            "jira": {"url": jira_url, "credentialsSecret": "jira", "project": "SEC", "labels": [name]},
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def cli_env(aws: str, jira: JiraTestServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JIRA_"))}
    env.update(AWS_ENV, AWS_ENDPOINT_URL=aws, **jira.credentials_env())
    return env


def start_run(policy: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ecs_scan_operator.cli", "run", "-f", str(policy), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def index_objects(name: str) -> list[str]:
    s3 = boto3.client("s3", region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=REPORT_BUCKET, Prefix="scans/")
    return [o["Key"] for p in pages for o in p.get("Contents", []) if f"/sec/{name}/" in o["Key"]]


def test_two_runs_at_once_one_files_tickets_the_other_exits_1(
    aws: str, jira_server: JiraTestServer, tmp_path: Path
) -> None:
    seed_fleet(aws)
    jira_server.search_delay = 1.5  # long enough that the second process meets a held lease
    env = cli_env(aws, jira_server)
    for rep in range(REPS):
        name = f"payments-{rep}"
        policy = write_policy(tmp_path / f"{name}.yaml", jira_server.url, name)
        procs = [start_run(policy, env) for _ in range(2)]
        outs = [p.communicate(timeout=180) for p in procs]
        codes = [p.returncode for p in procs]
        assert sorted(codes) == [0, 1], (codes, [err[-2000:] for _, err in outs])
        winner, loser = (outs[0], outs[1]) if codes[0] == 0 else (outs[1], outs[0])
        result = json.loads(winner[0])
        assert result["tickets"].get("create", 0) > 0, result
        assert loser[0] == ""  # nothing on stdout: no run happened
        message = rf"another run of sec/{name} holds the lease since \S+Z \(run {re.escape(result['id'])}\)"
        assert re.search(message, loser[1]), loser[1]
        # The loser wrote nothing: one run folder (the winner's), and no lease left behind.
        keys = index_objects(name)
        assert {k.split("/")[4] for k in keys} == {result["id"]}, keys
        state = boto3.client("s3", region_name="us-east-1").list_objects_v2(
            Bucket=REPORT_BUCKET, Prefix=f"scans/state/sec/{name}."
        )
        assert [o["Key"] for o in state.get("Contents", [])] == [f"scans/state/sec/{name}.json"]
    labels: Counter[str] = Counter()
    for issue in jira_server.state.issues.values():
        labels.update(lb for lb in issue.labels if DEDUP.fullmatch(lb))
    assert labels and max(labels.values()) == 1, [k for k, n in labels.items() if n > 1]
