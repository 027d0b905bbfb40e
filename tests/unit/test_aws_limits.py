"""AWS time limits: `ECS_SCAN_AWS_*` settings, the botocore Config made of them, the endpoint breaker."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from ecs_scan_operator.adapters.aws_session import (
    AwsClients,
    EndpointBreaker,
    EndpointUnavailable,
    default_config,
    map_aws_error,
)
from ecs_scan_operator.errors import TransientError
from ecs_scan_operator.settings import AwsSettings, SettingsError, load_aws_settings


def option(config: Config, name: str) -> object:
    """One option of a botocore Config (set as attributes at runtime; botocore-stubs declares none)."""
    return getattr(config, name)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ECS_SCAN_AWS_"):
            monkeypatch.delenv(key)


def test_defaults_bound_a_dead_endpoint_under_40_seconds_per_call() -> None:
    aws = load_aws_settings()
    assert (aws.connect_timeout_seconds, aws.read_timeout_seconds, aws.max_attempts) == (3.0, 10.0, 3)
    assert aws.retry_mode == "standard" and aws.endpoint_cooldown_seconds == 60.0
    # The worst case of one call: every attempt waits out the longer timeout (backoff is < 1 s).
    assert aws.max_attempts * max(aws.connect_timeout_seconds, aws.read_timeout_seconds) < 40
    config = default_config(aws)
    assert option(config, "retries") == {"mode": "standard", "total_max_attempts": 3}
    assert (option(config, "connect_timeout"), option(config, "read_timeout")) == (3.0, 10.0)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECS_SCAN_AWS_READ_TIMEOUT_SECONDS", "4.5")
    monkeypatch.setenv("ECS_SCAN_AWS_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("ECS_SCAN_AWS_RETRY_MODE", "adaptive")
    aws = load_aws_settings()
    assert (aws.read_timeout_seconds, aws.max_attempts, aws.retry_mode) == (4.5, 5, "adaptive")
    assert option(default_config(aws), "retries") == {"mode": "adaptive", "total_max_attempts": 5}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ECS_SCAN_AWS_READ_TIMEOUT_SECONDS", "0"),
        ("ECS_SCAN_AWS_READ_TIMEOUT_SECONDS", "ten"),
        ("ECS_SCAN_AWS_CONNECT_TIMEOUT_SECONDS", "-1"),
        ("ECS_SCAN_AWS_MAX_ATTEMPTS", "0"),
        ("ECS_SCAN_AWS_MAX_ATTEMPTS", "11"),
        ("ECS_SCAN_AWS_RETRY_MODE", "legacy"),
        ("ECS_SCAN_AWS_ENDPOINT_COOLDOWN_SECONDS", "-5"),
        ("ECS_SCAN_AWS_KEV_TTL_HOURS", "-1"),
        ("ECS_SCAN_AWS_KEV_TTL_HOURS", "721"),
        ("ECS_SCAN_AWS_KEV_WORKERS", "0"),
        ("ECS_SCAN_AWS_KEV_WORKERS", "65"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_aws_settings()
    assert [e.path for e in info.value.errors] == [name]


def test_kev_ttl_outlasts_a_daily_schedule_and_is_settable(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from ecs_scan_operator.adapters.aws_session import AwsClients
    from ecs_scan_operator.adapters.inspector import InspectorVulnerabilities

    assert load_aws_settings().kev_ttl_hours > 24  # runs 24 h apart reuse the answers
    monkeypatch.setenv("ECS_SCAN_AWS_KEV_TTL_HOURS", "6")
    assert InspectorVulnerabilities(AwsClients()).ttl == timedelta(hours=6)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_marks_refuses_then_lets_one_through_after_the_cooldown() -> None:
    clock = Clock()
    breaker = EndpointBreaker(60.0, monotonic=clock)
    breaker.check("ecr at https://x")  # nothing marked
    breaker._mark("ecr at https://x", "DescribeImages: ReadTimeoutError")
    clock.now += 59
    with pytest.raises(EndpointUnavailable) as info:
        breaker.check("ecr at https://x")
    assert "ReadTimeoutError" in str(info.value) and "1 s" in str(info.value)
    breaker.check("s3 at https://x")  # another service at the same URL is not affected
    # map_aws_error treats it as any connection problem: transient, retried by the next run
    assert isinstance(map_aws_error(info.value, "ecr:DescribeImages r"), TransientError)
    clock.now += 2
    breaker.check("ecr at https://x")  # the cooldown is over: the next call goes out


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connections to it are refused


def client_to_nowhere(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[Any, list[str]]:
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", **env}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{refused_port()}")
    sent: list[str] = []
    clients = AwsClients(
        hooks=[lambda c: c.meta.events.register("before-send.*.*", lambda **kw: sent.append("x"))]
    )
    return clients.registry("ecr", "eu-west-1"), sent


def test_a_refused_endpoint_is_called_once_then_refused_without_sending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ecr, sent = client_to_nowhere(monkeypatch, ECS_SCAN_AWS_MAX_ATTEMPTS="2")
    with pytest.raises(EndpointConnectionError) as first:
        ecr.describe_images(repositoryName="repo")
    assert not isinstance(first.value, EndpointUnavailable) and sent == ["x", "x"]  # two attempts
    with pytest.raises(EndpointUnavailable):
        ecr.get_registry_scanning_configuration()
    assert sent == ["x", "x"]  # not sent


def test_cooldown_zero_turns_the_breaker_off(monkeypatch: pytest.MonkeyPatch) -> None:
    ecr, sent = client_to_nowhere(
        monkeypatch, ECS_SCAN_AWS_MAX_ATTEMPTS="1", ECS_SCAN_AWS_ENDPOINT_COOLDOWN_SECONDS="0"
    )
    for _ in range(2):
        with pytest.raises(EndpointConnectionError) as info:
            ecr.describe_images(repositoryName="repo")
        assert not isinstance(info.value, EndpointUnavailable)
    assert sent == ["x", "x"]


def test_explicit_settings_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECS_SCAN_AWS_MAX_ATTEMPTS", "oops")  # not read when settings are given
    clients = AwsClients(aws=AwsSettings(max_attempts=2, read_timeout_seconds=7))
    assert option(clients._config, "retries") == {"mode": "standard", "total_max_attempts": 2}
    assert option(clients._config, "read_timeout") == 7


def test_kev_lookups_get_a_client_with_a_connection_per_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wider than the shared clients' pool: its own client; within it: the shared client."""
    from ecs_scan_operator.adapters.aws_session import AwsClients
    from ecs_scan_operator.adapters.inspector import InspectorVulnerabilities

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    clients = AwsClients()
    shared = clients.registry("inspector2", "eu-west-1")
    assert shared.meta.config.max_pool_connections == 16
    monkeypatch.setenv("ECS_SCAN_AWS_KEV_WORKERS", "40")
    asked: list[int | None] = []
    real = clients.registry

    def registry(service: str, region: str, **kw: Any) -> Any:
        asked.append(kw.get("pool"))
        return real(service, region, **kw)

    monkeypatch.setattr(clients, "registry", registry)
    InspectorVulnerabilities(clients).search([], "eu-west-1", datetime.now(UTC))
    wide = real("inspector2", "eu-west-1", pool=40)
    assert asked == [40] and wide is not shared and wide.meta.config.max_pool_connections == 40
    assert real("inspector2", "eu-west-1", pool=40) is wide  # made once
    assert real("inspector2", "eu-west-1", pool=8) is shared  # within the shared pool
