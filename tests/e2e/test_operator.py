"""The operator as a process against a real API server, with moto's AWS server behind it.

Generous waits, no timing asserts: what is checked is what happened (status, report objects,
Events, logs), not how fast.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections import Counter
from typing import Any

import pytest

from ecs_scan_operator.demo.fleet import FleetInfo
from tests.cluster.fixtures import Kubectl
from tests.e2e.conftest import E2E_STATE_KEY, Api, StartOperator, policy, report_runs, s3_object, wait_for

pytestmark = pytest.mark.e2e


def ready(status: dict[str, Any]) -> dict[str, Any]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


def finished(api: Api, name: str, run_now: str | None = None) -> dict[str, Any] | None:
    """The status once a run (for that run-now value, if given) has finished."""
    status = api.status(name)
    if "activeRun" in status or "lastRun" not in status:
        return None
    if run_now is not None and status.get("lastRunNow") != run_now:
        return None
    return status


def test_run_now_writes_status_report_events_and_metrics(
    api: Api, start_operator: StartOperator, moto_server: str, demo_fleet: FleetInfo, kubectl: Kubectl
) -> None:
    op = start_operator(ECS_SCAN_LOG_FORMAT="json")
    status, body = api.create(policy("nightly", api.namespace, run_now="1"))
    assert status == 201, body
    st = wait_for("the run-now run to finish", lambda: finished(api, "nightly", "1"), timeout=120)

    last = st["lastRun"]
    assert last["trigger"] == "RunNow" and last["result"] in ("Succeeded", "PartialFailure"), last
    assert last["images"] > 0 and last["imagesByStatus"]["scanned"] > 0
    assert sum(last["findingsBySeverity"].values()) == last["findings"]
    assert st["observedGeneration"] == 1 and "lastScheduleTime" not in st
    cond = ready(st)
    assert cond["reason"] in ("RunSucceeded", "PartialFailure") and cond["lastTransitionTime"]
    assert st["nextScheduleTime"]  # the yearly schedule's next time

    # the report is in S3 where the status says
    uri = last["reportUri"]
    assert uri.startswith("s3://ecs-scan-reports/e2e/") and uri.endswith("/index.json")
    runs = report_runs(moto_server, api.namespace, "nightly")
    assert set(runs) == {last["id"]}
    assert {k.rsplit("/", 1)[-1] for k in runs[last["id"]]} >= {"index.json", "summary.csv", "index.html"}

    # Events on the policy, and the printer columns
    reasons = wait_for("the finish Event", lambda: (r := api.event_reasons("nightly")) and len(r) >= 2 and r)
    # (Events carry whole-second timestamps: both may share one, so no order is asserted)
    assert reasons.count("RunStarted") == 1 and {"RunSucceeded", "RunPartiallyFailed"} & set(reasons)
    row = kubectl("get", "scanpolicies", "-n", api.namespace, "-o", "wide").stdout.splitlines()[1]
    assert row.split()[0] == "nightly" and str(last["images"]) in row.split()

    # bounded metrics, the liveness endpoint
    text = op.metrics()
    assert re.search(
        rf'ecsscan_runs_total{{namespace="{api.namespace}",policy="nightly",result="\w+"}} 1.0', text
    )
    assert "ecsscan_aws_api_calls_total" in text and "ecsscan_findings" in text
    assert "CVE-" not in text and last["id"] not in text
    assert op.health().get("leader") is True
    lines = [json.loads(line) for line in op.log().splitlines() if line.startswith("{")]
    assert any("started" in line.get("message", "") for line in lines)  # ECS_SCAN_LOG_FORMAT=json
    assert all(line.startswith("{") for line in op.log().splitlines() if line.strip())

    # the same annotation value never runs again; a new one runs once more
    time.sleep(6)
    assert api.status("nightly")["lastRun"]["id"] == last["id"]
    api.run_now("nightly", "2")
    st2 = wait_for("the second run", lambda: finished(api, "nightly", "2"), timeout=120)
    assert st2["lastRun"]["id"] != last["id"]
    runs = report_runs(moto_server, api.namespace, "nightly")
    assert len(runs) == 2
    # The operator's state key (from the environment, as the chart mounts it): the second run
    # trusted the first run's state object, and the key is in nothing written.
    log_key = next(k for k in runs[st2["lastRun"]["id"]] if k.endswith("/run.log.jsonl"))
    events = [json.loads(line)["event"] for line in s3_object(moto_server, log_key).splitlines()]
    assert "run_finished" in events and not [e for e in events if e.startswith("state_")], events
    for key in (k for keys in runs.values() for k in keys):
        assert E2E_STATE_KEY.encode() not in s3_object(moto_server, key), key
    assert op.terminate() == 0


def test_an_every_minute_schedule_fires_and_suspend_stops_it(
    api: Api, start_operator: StartOperator, moto_server: str
) -> None:
    start_operator()
    status, body = api.create(policy("minutely", api.namespace, schedule="* * * * *"))
    assert status == 201, body
    st = wait_for("a scheduled run", lambda: finished(api, "minutely"), timeout=150, interval=1)
    assert st["lastRun"]["trigger"] == "Schedule" and st["lastScheduleTime"]
    assert st["lastRun"]["result"] in ("Succeeded", "PartialFailure")

    # suspend: no further runs (a run may have started before the patch landed)
    api.patch("minutely", {"spec": {"suspend": True}})
    st = wait_for(
        "Suspended", lambda: (s := api.status("minutely")) and ready(s).get("reason") == "Suspended" and s
    )
    assert "nextScheduleTime" not in st and st["observedGeneration"] == 2
    runs_when_suspended = len(report_runs(moto_server, api.namespace, "minutely"))
    time.sleep(75)  # more than a minute: at least one fire time passes
    assert len(report_runs(moto_server, api.namespace, "minutely")) == runs_when_suspended
    assert ready(api.status("minutely"))["reason"] == "Suspended"

    # resume: the missed fire time catches up once (CronJob semantics), then the schedule goes on
    resumed_at = api.status("minutely").get("lastScheduleTime")
    api.patch("minutely", {"spec": {"suspend": False}})
    wait_for(
        "the catch-up run",
        lambda: (s := finished(api, "minutely")) and s.get("lastScheduleTime") != resumed_at,
        timeout=120,
    )


def test_invalid_policies_are_refused_or_marked_invalid_without_aws_calls(
    api: Api, start_operator: StartOperator, moto_server: str, kubectl: Kubectl
) -> None:
    # refused by the API server, naming the field
    bad = policy("refused", api.namespace, aws={"region": "us-east-1", "externalId": "abc"})
    res = kubectl("apply", "-f", "-", input=_yaml(bad), check=False)
    assert res.returncode != 0 and "spec.aws.externalId is only used with spec.aws.roleArn" in res.stderr
    assert not api.exists("refused")

    # past the schema (cron and IANA zones only the operator knows): Ready=False InvalidSpec
    start_operator()
    bad_cron = policy("bad-cron", api.namespace, schedule="61 * * * *", run_now="1", timeZone="Mars/Olympus")
    status, body = api.create(bad_cron)
    assert status == 201, body
    st = wait_for(
        "InvalidSpec", lambda: (s := api.status("bad-cron")) and ready(s).get("reason") == "InvalidSpec" and s
    )
    cond = ready(st)
    assert cond["status"] == "False"
    assert "spec.schedule" in cond["message"] and "spec.timeZone" in cond["message"]
    assert "nextScheduleTime" not in st
    wait_for("the InvalidSpec Event", lambda: "InvalidSpec" in api.event_reasons("bad-cron"))
    time.sleep(3)
    assert "lastRun" not in api.status("bad-cron")
    assert report_runs(moto_server, api.namespace, "bad-cron") == {}  # no AWS call was made for it

    # fixing it (a new generation) revalidates: the pending run-now runs
    api.patch("bad-cron", {"spec": {"schedule": "0 0 1 1 *", "timeZone": "UTC"}})
    st = wait_for("the run after the fix", lambda: finished(api, "bad-cron", "1"), timeout=120)
    assert st["observedGeneration"] == 2 and ready(st)["reason"] in ("RunSucceeded", "PartialFailure")


def test_killing_the_operator_mid_run_leaves_consistent_status_and_no_double_run(
    api: Api, start_operator: StartOperator, moto_server: str
) -> None:
    op = start_operator("op-a")
    status, body = api.create(policy("crash", api.namespace))
    assert status == 201, body
    wait_for("Scheduled", lambda: ready(api.status("crash")).get("reason") == "Scheduled")

    killed_run = None
    for attempt in range(1, 6):
        value = f"kill-{attempt}"
        api.run_now("crash", value)

        def started(v: str = value) -> dict[str, Any] | None:
            s = api.status("crash")
            return (s.get("activeRun") or s.get("lastRun")) if s.get("lastRunNow") == v else None

        active = wait_for("the run to start", started, timeout=60, interval=0.02)
        if "holder" in active:  # still running: kill now, as a node crash would
            op.kill()
            killed_run = active["id"]
            break
        wait_for("the run to finish", functools.partial(finished, api, "crash", value), timeout=60)
    assert killed_run is not None, "no run was caught in flight in 5 attempts"
    assert api.status("crash")["activeRun"]["id"] == killed_run

    # a new operator process: the interrupted run is recorded once, and not run again
    op2 = start_operator("op-b")
    st = wait_for("the interrupted run recorded", lambda: finished(api, "crash"), timeout=60)
    assert st["lastRun"]["id"] == killed_run and st["lastRun"]["result"] == "Failed"
    assert "interrupted" in st["lastRun"]["errors"][0] and "op-a" in st["lastRun"]["errors"][0]
    assert ready(st)["reason"] == "RunFailed"
    wait_for("the RunInterrupted Event", lambda: "RunInterrupted" in api.event_reasons("crash"))
    time.sleep(8)
    st = api.status("crash")
    assert st["lastRun"]["id"] == killed_run  # nothing ran since
    assert f"run {killed_run} started" not in op2.log()
    assert not re.search(r"run \S+ started", op2.log())  # op-b started no run at all
    # run ids sort by time: no report folder was written after the killed run's
    assert [r for r in report_runs(moto_server, api.namespace, "crash") if r > killed_run] == []

    # and the policy works on: a new run-now runs once
    api.run_now("crash", "after")
    st = wait_for("a run after the restart", lambda: finished(api, "crash", "after"), timeout=120)
    assert st["lastRun"]["id"] != killed_run and ready(st)["reason"] in ("RunSucceeded", "PartialFailure")


def test_two_replicas_never_double_run(api: Api, start_operator: StartOperator, moto_server: str) -> None:
    a = start_operator("replica-a", leader_election=True)
    b = start_operator("replica-b", leader_election=True)
    status, body = api.create(policy("ha", api.namespace, run_now="0"))
    assert status == 201, body
    wait_for("the first run", lambda: finished(api, "ha", "0"), timeout=120)
    health: dict[str, bool] = {op.identity: op.health()["leader"] for op in (a, b)}
    assert sorted(health.values()) == [False, True], health
    leader, follower = (a, b) if health["replica-a"] else (b, a)

    for i in range(1, 4):
        api.run_now("ha", str(i))
        wait_for(f"run {i}", functools.partial(finished, api, "ha", str(i)), timeout=120)

    # kill the leader; the follower takes over once the lease expires and carries on
    leader.kill()
    api.run_now("ha", "4")
    wait_for("run 4 on the new leader", lambda: finished(api, "ha", "4"), timeout=120)
    # kopf serves probe results up to 10 s old: poll until the follower's fresh answer is in
    wait_for("the follower to report leadership", lambda: follower.health().get("leader") is True, timeout=30)

    runs = report_runs(moto_server, api.namespace, "ha")
    assert len(runs) == 5, sorted(runs)  # one run per run-now value, never two
    started = [
        (op.identity, m.group(1)) for op in (a, b) for m in re.finditer(r"run (\S+) started", op.log())
    ]
    ids = [run_id for _, run_id in started]
    assert sorted(ids) == sorted(runs), started
    assert len(set(ids)) == len(ids)  # no run id started twice, by either replica
    # runs 0-3 on the first leader, run 4 on the follower after the takeover
    assert Counter(who for who, _ in started) == {leader.identity: 4, follower.identity: 1}, started
    reasons = api.event_reasons("ha")
    assert reasons.count("RunStarted") == 5, reasons


def _yaml(doc: dict[str, Any]) -> str:
    return json.dumps(doc)  # JSON is YAML


def test_the_kopf_run_entry_module(api: Api, start_operator: StartOperator) -> None:
    start_operator("kopf-cli", kopf_run=True)
    status, body = api.create(policy("via-kopf", api.namespace, run_now="1"))
    assert status == 201, body
    st = wait_for("the run", lambda: finished(api, "via-kopf", "1"), timeout=120)
    assert st["lastRun"]["result"] in ("Succeeded", "PartialFailure")
