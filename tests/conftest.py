"""Shared pytest configuration: fixture plugins of each test level, and the test order."""

import pytest

pytest_plugins: list[str] = [
    "tests.cluster.fixtures",  # the real kube-apiserver + etcd (e2e)
    "tests.support.moto_fixtures",  # moto's AWS server over HTTP (integration)
    "tests.jira_server.fixtures",  # the contract-checked Jira test server (integration)
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need the workloads mode (``kube_workloads``: the real Job controller, scheduler
    and node agent on the shared cluster) run after all the others. Once started, those controllers
    stay for the session and would act on the Jobs of the tests that play the Job controller and
    the kubelet themselves (tests/e2e/test_jobs_runner.py); the order within each group is kept."""
    items.sort(key=lambda item: "kube_workloads" in getattr(item, "fixturenames", ()))
