"""Shared pytest configuration: fixture plugins of each test level."""

pytest_plugins: list[str] = [
    "tests.cluster.fixtures",  # the real kube-apiserver + etcd (e2e)
    "tests.support.moto_fixtures",  # moto's AWS server over HTTP (integration)
    "tests.jira_server.fixtures",  # the contract-checked Jira test server (integration)
]
