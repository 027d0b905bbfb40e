"""What a run's AssumeRole tells STS: session name (checked at moto), tags and SourceIdentity (Stubber).

moto's STS keeps the RoleSessionName (it is in the assumed-role ARN GetCallerIdentity returns)
but drops Tags and SourceIdentity, so those are checked with botocore's Stubber: botocore
validates the request against the STS model before the Stubber compares it to what we expect.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from ecs_scan_operator.bootstrap import aws_clients
from ecs_scan_operator.core.grants import role_session
from ecs_scan_operator.core.policy import PolicyRef, parse_spec

pytestmark = pytest.mark.integration
REGION = "us-east-1"
ROLE = "arn:aws:iam::210987654321:role/scan-read"
REF = PolicyRef(namespace="team-a", name="nightly")


def spec(**aws: Any) -> Any:
    return parse_spec(
        {
            "schedule": "@daily",
            "aws": {"region": REGION, "roleArn": ROLE, **aws},
            "report": {"s3": {"bucket": "reports"}},
        }
    )


def test_the_session_name_reaches_moto_sts(aws: str) -> None:
    clients = aws_clients(REF, spec(externalId="ext-1"))
    arn = clients.workload("sts", REGION).get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::210987654321:assumed-role/scan-read/ecsscan-team-a-nightly"


def _stubbed_sts(monkeypatch: pytest.MonkeyPatch, expected: dict[str, Any]) -> list[Stubber]:
    """Every STS client botocore creates from now on answers AssumeRole once, checking the params."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    made: list[Stubber] = []
    create = botocore.session.Session.create_client

    def create_client(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        made_client = create(self, service_name, *args, **kwargs)
        if service_name == "sts":
            stub = Stubber(made_client)
            expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            stub.add_response(
                "assume_role",
                {
                    "Credentials": {
                        "AccessKeyId": "ASIAEXAMPLEEXAMPLE00",
                        "SecretAccessKey": "s" * 40,
                        "SessionToken": "t" * 40,
                        "Expiration": expiry,
                    },
                    "AssumedRoleUser": {"AssumedRoleId": "AROAEXAMPLE:x", "Arn": f"{ROLE}/x"},
                    **(
                        {"SourceIdentity": expected["SourceIdentity"]} if "SourceIdentity" in expected else {}
                    ),
                },
                expected,
            )
            stub.activate()
            made.append(stub)
        return made_client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    return made


def _fetch_credentials(clients: Any) -> None:
    creds = clients.workload("ecs", REGION)._request_signer._credentials  # what signing would fetch
    assert creds.get_frozen_credentials().access_key == "ASIAEXAMPLEEXAMPLE00"


def test_session_tags_and_source_identity_reach_sts(monkeypatch: pytest.MonkeyPatch) -> None:
    session = role_session(REF)
    expected = {
        "RoleArn": ROLE,
        "RoleSessionName": "ecsscan-team-a-nightly",
        "ExternalId": "ext-1",
        "Tags": [
            {"Key": "ecsscan-namespace", "Value": "team-a"},
            {"Key": "ecsscan-policy", "Value": "nightly"},
        ],
        "SourceIdentity": "ecsscan-team-a-nightly",
    }
    assert session.name == expected["RoleSessionName"]
    stubs = _stubbed_sts(monkeypatch, expected)
    _fetch_credentials(aws_clients(REF, spec(externalId="ext-1")))
    assert len(stubs) == 1
    stubs[0].assert_no_pending_responses()


def test_session_tags_can_be_turned_off_for_old_trust_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {"RoleArn": ROLE, "RoleSessionName": "ecsscan-team-a-nightly"}
    stubs = _stubbed_sts(monkeypatch, expected)
    _fetch_credentials(aws_clients(REF, spec(), session_identity=False))
    stubs[0].assert_no_pending_responses()
