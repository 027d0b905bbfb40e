"""`ecs-scan-operator run` as a Job runs it: the result in the termination log, Secrets from mounted files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from ecs_scan_operator import cli
from ecs_scan_operator.core.jobs import decode_result
from ecs_scan_operator.core.result import Outcome
from ecs_scan_operator.errors import PermanentError

POLICY = {
    "apiVersion": "ecsscan.io/v1alpha1",
    "kind": "ScanPolicy",
    "metadata": {"name": "pay", "namespace": "team-a"},
    "spec": {
        "schedule": "@daily",
        "aws": {"region": "us-east-1"},
        "report": {"s3": {"bucket": "reports"}},
        "jira": {"url": "https://example.atlassian.net", "credentialsSecret": "jira", "project": "SEC"},
    },
}


def write(tmp_path: Path, doc: object) -> str:
    path = tmp_path / "scanpolicy.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


@pytest.mark.parametrize(
    ("doc", "code", "reason"),
    [
        ("{not yaml", cli.EXIT_BAD_INPUT, "not valid YAML"),
        ({**POLICY, "spec": {"schedule": "nope"}}, cli.EXIT_BAD_INPUT, "spec.aws: required field is missing"),
        (POLICY, cli.EXIT_BAD_INPUT, "jira credentials"),  # the mounted Secret folder is empty
    ],
)
def test_a_run_that_cannot_start_still_writes_its_result_naming_why(
    tmp_path: Path, doc: object, code: int, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "termination-log"
    (tmp_path / "jira").mkdir()
    argv = ["run", "-f", write(tmp_path, doc), "--run-id", "r-1", "--termination-log", str(log)]
    argv += ["--jira-credentials-dir", str(tmp_path / "jira"), "--format", "json"]
    assert cli.main(argv) == code
    result = decode_result(log.read_text(), "team-a/pay")
    assert result.run_id == "r-1" and result.outcome is Outcome.FAILED
    assert reason in result.errors[0]
    assert "Traceback" not in capsys.readouterr().err


def test_no_termination_log_without_the_operators_run_id(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    assert (
        cli.main(["run", "-f", write(tmp_path, "{not yaml"), "--termination-log", str(log)])
        == cli.EXIT_BAD_INPUT
    )
    assert not log.exists()


def test_jira_credentials_come_from_the_mounted_secret_files(tmp_path: Path) -> None:
    (tmp_path / "email").write_text("bot@example.com")
    (tmp_path / "apiToken").write_bytes(b"t0ken\n")
    args = cli.build_parser().parse_args(["run", "-f", "x", "--jira-credentials-dir", str(tmp_path)])
    creds = cli._jira_credentials(args)
    assert creds is not None and creds.email == "bot@example.com"
    assert "t0ken" not in repr(creds)


def test_notification_secrets_come_from_a_folder_per_secret(tmp_path: Path) -> None:
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "url").write_text("https://hooks.example.com/x\n")
    read = cli._secret_dir_reader(tmp_path)
    got = read("hook")
    assert (
        isinstance(got["url"], SecretStr) and got["url"].get_secret_value() == "https://hooks.example.com/x"
    )
    assert "signingKey" not in got
    with pytest.raises(PermanentError, match="Secret other is not mounted"):
        read("other")


def test_an_unwritable_termination_log_is_reported_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "-f", write(tmp_path, "{not yaml"), "--run-id", "r", "--termination-log", str(tmp_path)]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert f"could not write the result to {tmp_path}" in capsys.readouterr().err
