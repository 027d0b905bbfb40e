"""kill -9 of a `run` process at 10 random points: the folder is complete or has no index.json,
and the rerun (after `lease break`) gives the fault-free answer, with no duplicate ticket.

The kill points are the run's S3 requests and Jira writes. S3 traffic goes through
tests/support/kill_proxy.py, which SIGKILLs the process at its N-th S3 request, either before
the request reaches moto or after moto stored it (the answer never comes back); a Jira write is
killed after the Jira test server stored it. N is drawn from the S3 requests and Jira writes of
a fault-free run of the same fleet; ECS_SCAN_KILL_SEED picks another set of points.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecs_scan_operator import cli
from ecs_scan_operator.demo.fleet import REPORT_BUCKET, seed_fleet
from tests.integration.test_lease_two_runs import cli_env, start_run, write_policy
from tests.jira_server.server import JiraTestServer
from tests.support.kill_proxy import KillProxy

pytestmark = pytest.mark.integration
POINTS = 10
SEED = int(os.environ.get("ECS_SCAN_KILL_SEED", "20261129"))
DEDUP = re.compile(r"ecsscan-[0-9a-f]{16}")
SAME = ("images", "imagesByStatus", "affectedImages", "findings", "findingsBySeverity", "suppressedFindings")


@pytest.fixture
def proxy(aws: str) -> Iterator[KillProxy]:
    p = KillProxy(aws).start()
    try:
        yield p
    finally:
        p.stop()


class JiraKill:
    """Kills `pid` right after the Jira test server stored its `at`-th write."""

    def __init__(self, server: JiraTestServer) -> None:
        self.pid: int | None = None
        self.at: int | None = None
        self.count = 0
        self.killed_at: str | None = None
        dispatch = server._dispatch

        def counting(method: str, path: str, *args: Any) -> Any:
            out = dispatch(method, path, *args)
            if method in ("POST", "PUT", "DELETE") and not path.endswith(("/search", "/search/jql")):
                self.count += 1
                if self.pid is not None and self.count == self.at:
                    self.killed_at = f"jira {method} {path}"
                    os.kill(self.pid, signal.SIGKILL)
            return out

        # Wrapped on purpose: count the writes that reach the server, whatever their arguments.
        server._dispatch = counting  # type: ignore[method-assign, assignment]

    def arm(self, pid: int | None, at: int | None) -> None:
        self.pid, self.at, self.count, self.killed_at = pid, at, 0, None


def keys_of(name: str) -> set[str]:
    s3 = boto3.client("s3", region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=REPORT_BUCKET, Prefix="scans/")
    return {o["Key"] for p in pages for o in p.get("Contents", []) if f"/sec/{name}/" in o["Key"]}


def check_folders(name: str) -> int:
    """Every run folder of the policy is complete or has no index.json; how many are complete."""
    keys = keys_of(name)
    s3 = boto3.client("s3", region_name="us-east-1")
    complete = 0
    for index_key in sorted(k for k in keys if k.endswith("/index.json")):
        folder = index_key.rsplit("/", 1)[0]
        index = json.loads(s3.get_object(Bucket=REPORT_BUCKET, Key=index_key)["Body"].read())
        listed = [f"{folder}/{n}" for n in index["objects"]]
        listed += [f"{folder}/{i['report']}" for i in index["images"] if i["report"]]
        missing = [k for k in listed if k not in keys]
        assert not missing, f"{index_key} lists objects that are not there: {missing}"
        complete += 1
    return complete


def tickets_of(server: JiraTestServer, name: str) -> list[tuple[str, str, Any]]:
    out = []
    for issue in server.state.issues.values():
        if name in issue.labels:
            prop = issue.properties.get("ecsscan") or {}
            out.append((issue.project, issue.status, prop.get("fp")))
    return sorted(out, key=repr)


def run_in_process(capsys: pytest.CaptureFixture[str], policy: Path) -> tuple[int, dict[str, Any]]:
    code = cli.main(["run", "-f", str(policy), "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_kill_9_at_random_points_then_rerun(
    aws: str,
    jira_server: JiraTestServer,
    proxy: KillProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed_fleet(aws)
    for key, value in jira_server.credentials_env().items():
        monkeypatch.setenv(key, value)
    env = dict(cli_env(aws, jira_server), AWS_ENDPOINT_URL_S3=proxy.url)
    jira_kill = JiraKill(jira_server)

    # A fault-free run through the proxy: the answer to compare with, and how many S3 requests.
    base = write_policy(tmp_path / "base.yaml", jira_server.url, "base")
    proc = start_run(base, env)
    proxy.arm(proc.pid, None)
    jira_kill.arm(None, None)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    baseline, requests, writes = json.loads(out), proxy.count, jira_kill.count
    base_tickets = [(p, s, fp) for p, s, fp in tickets_of(jira_server, "base")]
    assert base_tickets and requests > 5 and writes > 0

    rng = random.Random(SEED)
    points = sorted(rng.sample(range(1, requests + writes + 1), POINTS))
    seen: list[str] = []
    for i, at in enumerate(points):
        name = f"kill-{i}"
        policy = write_policy(tmp_path / f"{name}.yaml", jira_server.url, name)
        mode = rng.choice(["before", "after"])
        proc = start_run(policy, env)
        if at <= requests:
            proxy.arm(proc.pid, at, mode)
            jira_kill.arm(None, None)
        else:
            proxy.arm(None, None)
            jira_kill.arm(proc.pid, at - requests)
        proc.communicate(timeout=180)
        assert proc.returncode == -9, (
            f"not killed at point {at} of {requests} S3 requests + {writes} Jira writes"
        )
        seen.append(f"{at}:{mode}:{proxy.killed_at or jira_kill.killed_at}")
        check_folders(name)

        # A person breaks the dead run's lease (docs/run-protocol.md), then runs again.
        assert cli.main(["lease", "break", "-f", str(policy)]) == 0
        capsys.readouterr()
        code, again = run_in_process(capsys, policy)
        assert code == 0, again["errors"]
        assert {k: again[k] for k in SAME} == {k: baseline[k] for k in SAME}
        assert check_folders(name) >= 1
        assert tickets_of(jira_server, name) == base_tickets, f"kill at {seen[-1]}"
    labels: Counter[str] = Counter()
    for issue in jira_server.state.issues.values():
        labels.update(lb for lb in issue.labels if DEDUP.fullmatch(lb))
    assert max(labels.values()) == 1, "duplicate tickets"
    print("kill points:", ", ".join(seen))
