"""Shared pytest configuration: fixture plugins of each test level, and the test order."""

import pytest

pytest_plugins: list[str] = [
    "tests.cluster.fixtures",  # the real kube-apiserver + etcd (e2e)
    "tests.support.moto_fixtures",  # moto's AWS server over HTTP (integration)
    "tests.jira_server.fixtures",  # the contract-checked Jira test server (integration)
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need the workloads mode (``kube_workloads``: the real Job controller, scheduler
    and node agent on the shared cluster) run after the other e2e tests, before the next level.
    Once started, those controllers stay for the session and would act on the Jobs of the tests
    that play the Job controller and the kubelet themselves (tests/e2e/test_jobs_runner.py); and
    the e2e tests share moto's seeded fleet, which the integration tests reset. The order within
    each group is kept."""
    workloads = [i for i in items if "kube_workloads" in getattr(i, "fixturenames", ())]
    if not workloads:
        return
    others = [i for i in items if "kube_workloads" not in getattr(i, "fixturenames", ())]
    e2e = [n for n, i in enumerate(others) if i.nodeid.startswith("tests/e2e/")]
    at = e2e[-1] + 1 if e2e else 0
    items[:] = [*others[:at], *workloads, *others[at:]]
