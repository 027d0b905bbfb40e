"""Shared pytest configuration: fixture plugins of each test level."""

pytest_plugins: list[str] = ["tests.cluster.fixtures", "tests.support.moto_fixtures", "tests.jira_server.fixtures"]
