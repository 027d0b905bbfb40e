"""`ecs-scan-operator validate --grants`: a policy checked against ScanAccessGrants offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ecs_scan_operator.cli import main

ROOT = Path(__file__).resolve().parents[2]
GRANTS = ROOT / "examples" / "scanaccessgrants.yaml"


def write_policy(tmp_path: Path, namespace: str, **aws: Any) -> str:
    doc = {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {
            "schedule": "@daily",
            "aws": {"region": "eu-west-1", "roleArn": "arn:aws:iam::111111111111:role/ecsscan-team-a", **aws},
            "report": {"s3": {"bucket": "scan-reports-team-a", "prefix": "ecs-scan"}},
        },
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(path)


def test_a_granted_policy_is_valid_and_names_its_grant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "-f", write_policy(tmp_path, "team-a"), "--grants", str(GRANTS)]) == 0
    assert "granted by ScanAccessGrant team-a" in capsys.readouterr().out


def test_another_teams_role_is_refused_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, "team-a", roleArn="arn:aws:iam::222222222222:role/ecsscan-x")
    assert main(["validate", "-f", policy, "--grants", str(GRANTS)]) == 2
    err = capsys.readouterr().err
    assert "access not granted: spec.aws.roleArn" in err and "role/ecsscan-team-a" in err


def test_namespace_labels_select_label_grants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write_policy(
        tmp_path, "team-b", region="us-east-1", roleArn="arn:aws:iam::222222222222:role/ecsscan-x"
    )
    doc = yaml.safe_load(Path(policy).read_text(encoding="utf-8"))
    doc["spec"]["report"]["s3"]["bucket"] = "scan-reports-team-b"
    Path(policy).write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert main(["validate", "-f", policy, "--grants", str(GRANTS)]) == 2
    assert "no ScanAccessGrant selects namespace team-b" in capsys.readouterr().err
    assert main(["validate", "-f", policy, "--grants", str(GRANTS), "--namespace-labels", "team=b,x=y"]) == 0
    assert main(["validate", "-f", policy, "--grants", str(GRANTS), "--namespace-labels", "team"]) == 2
    assert "--namespace-labels: 'team' is not key=value" in capsys.readouterr().err


def test_a_bad_grants_file_names_the_document_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "grants.yaml"
    bad.write_text(
        "kind: List\napiVersion: v1\nitems:\n"
        "- {apiVersion: ecsscan.io/v1alpha1, kind: ScanAccessGrant, metadata: {name: g},"
        " spec: {namespaces: {names: [BAD]}}}\n",
        encoding="utf-8",
    )
    assert main(["validate", "-f", write_policy(tmp_path, "team-a"), "--grants", str(bad)]) == 2
    assert "grants[0].spec.namespaces.names" in capsys.readouterr().err
    assert main(["validate", "-f", write_policy(tmp_path, "team-a"), "--grants", str(tmp_path / "nope")]) == 2
