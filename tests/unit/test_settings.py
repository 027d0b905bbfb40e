"""Operator settings: ECS_SCAN_* environment variables (as the Helm chart sets them) and secret files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ecs_scan_operator.core.destinations import AllowList
from ecs_scan_operator.settings import Settings, SettingsError, load_settings, state_key_from_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ECS_SCAN_") or key in ("POD_NAME", "POD_NAMESPACE"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings()
    assert s.clusterwide and s.watch_namespaces == []
    assert s.max_concurrent_runs == 2
    assert (s.log_format, s.log_level) == ("text", "INFO")
    assert s.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert (s.metrics_enabled, s.metrics_port) == (True, 9090)
    assert not s.leader_election
    assert s.effective_lease_namespace == "default"
    assert s.renew_deadline == 10.0
    assert s.identity  # host-pid when no pod name


def test_the_helm_charts_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "POD_NAME": "ecs-scan-operator-7d9f-abcde",
        "POD_NAMESPACE": "ecs-scan",
        "ECS_SCAN_WATCH_NAMESPACES": "team-b, team-a,team-b",
        "ECS_SCAN_MAX_CONCURRENT_RUNS": "4",
        "ECS_SCAN_LOG_FORMAT": "json",
        "ECS_SCAN_LOG_LEVEL": "DEBUG",
        "ECS_SCAN_HEALTH_PORT": "8081",
        "ECS_SCAN_METRICS_PORT": "9091",
        "ECS_SCAN_METRICS_ENABLED": "false",
        "ECS_SCAN_LEADER_ELECTION": "true",
        "ECS_SCAN_LEASE_NAME": "ecs-scan-operator",
        "ECS_SCAN_LEASE_NAMESPACE": "ecs-scan",
        "ECS_SCAN_LEASE_DURATION_SECONDS": "30",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    assert s.watch_namespaces == ["team-a", "team-b"] and not s.clusterwide
    assert s.max_concurrent_runs == 4
    assert (s.log_format, s.log_level) == ("json", "DEBUG")
    assert s.liveness_endpoint == "http://0.0.0.0:8081/healthz"
    assert (s.metrics_enabled, s.metrics_port) == (False, 9091)
    assert s.leader_election and s.effective_lease_namespace == "ecs-scan"
    assert s.renew_deadline == 20.0
    assert s.identity == "ecs-scan-operator-7d9f-abcde"


def test_jira_allowed_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().jira_allow_list == AllowList()  # nothing beyond public addresses by default
    monkeypatch.setenv("ECS_SCAN_JIRA_ALLOWED_HOSTS", "Jira.Internal, 10.20.0.0/16 ::1")
    allow = load_settings().jira_allow_list
    assert allow.hosts == {"jira.internal"}
    assert [str(n) for n in allow.networks] == ["10.20.0.0/16", "::1/128"]


def test_empty_namespace_list_means_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECS_SCAN_WATCH_NAMESPACES", "")
    assert load_settings().clusterwide


def test_health_port_zero_turns_the_probe_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECS_SCAN_HEALTH_PORT", "0")
    assert load_settings().liveness_endpoint is None


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("ECS_SCAN_MAX_CONCURRENT_RUNS", "0", "ECS_SCAN_MAX_CONCURRENT_RUNS"),
        ("ECS_SCAN_LOG_FORMAT", "xml", "ECS_SCAN_LOG_FORMAT"),
        ("ECS_SCAN_WATCH_NAMESPACES", "Team_A", "ECS_SCAN_WATCH_NAMESPACES"),
        ("ECS_SCAN_METRICS_PORT", "70000", "ECS_SCAN_METRICS_PORT"),
        ("ECS_SCAN_RENEW_DEADLINE_SECONDS", "20", "(settings)"),  # not shorter than the 15 s lease
        ("ECS_SCAN_JIRA_ALLOWED_HOSTS", "jira.internal, http://x/", "ECS_SCAN_JIRA_ALLOWED_HOSTS"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, named: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert any(e.path == named for e in info.value.errors), info.value.errors


def test_secrets_dir_supplies_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "ECS_SCAN_MAX_CONCURRENT_RUNS").write_text("7")
    monkeypatch.setenv("ECS_SCAN_SECRETS_DIR", str(tmp_path))
    assert load_settings().max_concurrent_runs == 7
    # the environment wins over a file
    monkeypatch.setenv("ECS_SCAN_MAX_CONCURRENT_RUNS", "3")
    assert load_settings().max_concurrent_runs == 3


def test_missing_secrets_dir_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ECS_SCAN_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="not a directory"):
        load_settings()


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(Exception, match="frozen"):
        s.max_concurrent_runs = 5  # type: ignore[misc]


def test_state_key_from_the_environment_or_a_secret_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_settings().state_key is None and state_key_from_env() is None
    monkeypatch.setenv("ECS_SCAN_STATE_KEY", "")
    assert load_settings().state_key is None and state_key_from_env() is None  # empty is no key
    key = "A1b2" * 16
    monkeypatch.setenv("ECS_SCAN_STATE_KEY", key)
    settings = load_settings()
    assert settings.state_key is not None and settings.state_key.get_secret_value() == key
    assert key not in repr(settings) and key not in str(settings.model_dump())
    assert state_key_from_env() is not None
    monkeypatch.delenv("ECS_SCAN_STATE_KEY")
    (tmp_path / "ecs_scan_state_key").write_text(key)
    monkeypatch.setenv("ECS_SCAN_SECRETS_DIR", str(tmp_path))
    mounted = load_settings().state_key
    assert mounted is not None and mounted.get_secret_value() == key


@pytest.mark.parametrize("short", ["x", "s3cr3t-but-short", "y" * 31])
def test_a_short_state_key_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch, short: str) -> None:
    monkeypatch.setenv("ECS_SCAN_STATE_KEY", short)
    for load in (load_settings, state_key_from_env):
        with pytest.raises(SettingsError) as err:
            load()
        (problem,) = err.value.errors
        assert problem.path == "ECS_SCAN_STATE_KEY" and "at least 32 characters" in problem.reason
        assert short not in str(err.value) and short not in problem.reason
