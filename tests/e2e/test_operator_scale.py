"""The operator benchmark's scenario at a small size (bench/operator_bench.py; `make bench-operator`).

Completeness only, never timing: every policy gets a status, and every run-now request runs
exactly once (one report folder for each chosen policy, none for the others).
"""

from __future__ import annotations

from typing import Any

import pytest
from bench.operator_bench import Scenario

from ecs_scan_operator.demo.fleet import FleetInfo
from tests.cluster.localcluster import LocalCluster
from tests.e2e.conftest import StartOperator

pytestmark = pytest.mark.e2e


def test_twenty_policies_in_two_namespaces_and_three_run_now_at_once(
    kube_cluster: LocalCluster,
    scanpolicy_crd: str,
    kube_namespace: str,
    start_operator: StartOperator,
    moto_server: str,
    demo_fleet: FleetInfo,
) -> None:
    namespaces = [kube_namespace, f"{kube_namespace}-b"]
    op = start_operator("scale", ECS_SCAN_WATCH_NAMESPACES=",".join(namespaces))
    scenario = Scenario(
        request=kube_cluster.request,
        moto_url=moto_server,
        pid=op.proc.pid,
        namespaces=namespaces,
        policies=20,
        run_now=3,
        settle_seconds=1,
        idle_seconds=2,
        timeout=300,
    )
    out: dict[str, Any] = scenario.run()  # raises when a status or a run does not come
    assert out["policies"] == 20 and out["runNow"] == 3
    assert out["runNowFinished"] == 3
    assert out["runsLost"] == [] and out["runsRepeated"] == []
    assert out["rssIdleMiB"] > 0 and out["rssPeakBurstMiB"] > 0
    assert op.alive()
