"""The whole pipeline through the CLI: moto's AWS server + the contract-checked Jira test server.

Proves the wiring a user gets from `ecs-scan-operator run`: a dry run plans tickets and writes
nothing, a real run files one ticket per (route, repository), a rerun with nothing changed makes
no Jira write at all, and the Jira token appears in no output, report or log line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from ecs_scan_operator import cli
from ecs_scan_operator.demo.fleet import REPORT_BUCKET, seed_fleet
from tests.jira_server.server import JiraTestServer

pytestmark = pytest.mark.integration


def write_policy(path: Path, jira_url: str) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": {"name": "payments", "namespace": "sec"},
        "spec": {
            "schedule": "@daily",
            "aws": {"region": "us-east-1"},
            "taskDefinitions": {"include": ["payments-*", "platform-*"], "exclude": ["*-sandbox"]},
            "severityThreshold": "HIGH",
            "report": {"s3": {"bucket": REPORT_BUCKET, "prefix": "scans"}},
            "jira": {
                "url": jira_url,
                "credentialsSecret": "jira",
                "project": "SEC",
                "labels": ["ecs-scan"],
                "dueDays": {"CRITICAL": 7, "HIGH": 30},
                "routes": [{"name": "platform", "match": {"families": ["platform-*"]}, "project": "OPS"}],
            },
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = cli.main(["run", *args, "--format", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def writes(server: JiraTestServer, mark: int) -> list[str]:
    return [f"{r.method} {r.path}" for r in server.since(mark) if r.write]


def test_cli_dry_run_then_sync_then_steady_state(
    aws: str,
    jira_server: JiraTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seed_fleet(aws)
    for key, value in jira_server.credentials_env().items():
        monkeypatch.setenv(key, value)
    policy = str(write_policy(tmp_path / "policy.yaml", jira_server.url))

    mark = jira_server.mark()
    code, dry = run_cli(capsys, "-f", policy, "--dry-run")
    assert code == 0, dry["errors"]
    assert dry["tickets"].get("create", 0) > 0
    assert writes(jira_server, mark) == [] and not jira_server.state.issues

    code, first = run_cli(capsys, "-f", policy)
    assert code == 0, first["errors"]
    created = first["tickets"]["create"]
    assert created == dry["tickets"]["create"] == len(jira_server.state.issues)
    projects = {i.key.split("-")[0] for i in jira_server.state.issues.values()}
    assert projects == {"SEC", "OPS"}  # the platform route files into OPS
    for issue in jira_server.state.issues.values():
        assert any(label.startswith("ecsscan-") for label in issue.labels)

    mark = jira_server.mark()
    code, again = run_cli(capsys, "-f", policy)
    assert code == 0, again["errors"]
    assert writes(jira_server, mark) == []  # steady state: no write at all
    assert again["tickets"].get("unchanged") == created
    assert len(jira_server.state.issues) == created

    # the token is in no log record, CLI output or report object
    secret = jira_server.API_TOKEN
    assert all(secret not in r.getMessage() for r in caplog.records)
    assert secret not in json.dumps([dry, first, again])
    s3 = boto3.client("s3", region_name="us-east-1")
    for obj in s3.list_objects_v2(Bucket=REPORT_BUCKET, Prefix="scans/")["Contents"]:
        body = s3.get_object(Bucket=REPORT_BUCKET, Key=obj["Key"])["Body"].read().decode()
        assert secret not in body, obj["Key"]


def test_cli_reports_missing_jira_credentials(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_fleet(aws)
    for key in ("JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_PAT"):
        monkeypatch.delenv(key, raising=False)
    code, result = run_cli(capsys, "-f", str(write_policy(tmp_path / "p.yaml", "https://jira.invalid")))
    assert code == 1  # partial: the scan and report succeeded, tickets did not
    assert result["result"] == "PartialFailure"
    assert "tickets" in result["stageFailures"]
    assert "no Jira credentials" in result["stageFailures"]["tickets"]


def test_the_cli_warns_about_a_loopback_jira_and_proceeds(
    aws: str,
    jira_server: JiraTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed_fleet(aws)
    for key, value in jira_server.credentials_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ECS_SCAN_JIRA_ALLOWED_HOSTS")  # the operator would refuse 127.0.0.1 now
    logging.getLogger().handlers.clear()  # let the CLI's basicConfig install its stderr handler
    code = cli.main(
        ["run", "-f", str(write_policy(tmp_path / "p.yaml", jira_server.url)), "--format", "json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["tickets"].get("create", 0) > 0
    assert "sending credentials to 127.0.0.1 although 127.0.0.1 is a loopback address" in captured.err


def test_cli_refuses_ambiguous_jira_credentials_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JIRA_PAT", "pat-secret-value-1")
    monkeypatch.setenv("JIRA_EMAIL", "bot@example.com")
    monkeypatch.delenv("JIRA_API_TOKEN", raising=False)
    code = cli.main(["run", "-f", str(write_policy(tmp_path / "p.yaml", "https://jira.invalid"))])
    err = capsys.readouterr().err
    assert code == 2
    assert "not both" in err and "pat-secret-value-1" not in err
