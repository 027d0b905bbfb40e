"""Multi-account requests moto cannot check, checked with botocore's Stubber.

moto has no Inspector2 ListCoverage and ignores ListFindings' filterCriteria, so reading member
accounts' findings through Inspector's delegated administrator is emulated here: the Stubber
validates each request against the inspector2 service model (names, types, the filter shapes
`accountId` / `awsAccountId`) and each canned answer against the model's output shape, and fails
on any call not expected. Organizations pagination is checked the same way (moto answers every
list in one page).
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.inspector import image_arn
from ecs_scan_operator.adapters.organizations import OrganizationAccounts
from ecs_scan_operator.adapters.scanning import RegistryFindingsSource
from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import Account, ScanState, ScanType, Severity
from ecs_scan_operator.core.policy import OrganizationSpec

pytestmark = pytest.mark.integration
REGION = "eu-west-1"
A, B = "111111111111", "222222222222"
PATTERN = "arn:aws:iam::{account}:role/ecs-scan-read"
ADMIN = "arn:aws:iam::999999999999:role/inspector-read"
ORG_ROLE = "arn:aws:iam::123456789012:role/org-read"


class Stubs:
    """AwsClients (multi-account) whose every client gets an active Stubber; by (service, role)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> None:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        self.all: list[Stubber] = []
        self.clients = AwsClients(hooks=[self._hook], role_arn_pattern=PATTERN, **kw)

    def _hook(self, client: Any) -> None:
        stub = Stubber(client)
        stub.activate()
        self.all.append(stub)

    def of(self, client: Any) -> Stubber:
        return next(s for s in self.all if s.client is client)

    def assert_done(self) -> None:
        for s in self.all:
            s.assert_no_pending_responses()


def eq(*values: str) -> list[dict[str, str]]:
    return [{"comparison": "EQUALS", "value": v} for v in values]


def _finding(account: str, repo: str, digest: str, vid: str) -> dict[str, Any]:
    return {
        "awsAccountId": account,
        "description": "d",
        "findingArn": f"arn:aws:inspector2:{REGION}:{account}:finding/{vid}",
        "firstObservedAt": "2026-01-01T00:00:00Z",
        "lastObservedAt": "2026-01-02T00:00:00Z",
        "remediation": {},
        "severity": "HIGH",
        "status": "ACTIVE",
        "type": "PACKAGE_VULNERABILITY",
        "packageVulnerabilityDetails": {"vulnerabilityId": vid, "source": "NVD"},
        "resources": [
            {
                "id": "r",
                "type": "AWS_ECR_CONTAINER_IMAGE",
                "details": {
                    "awsEcrContainerImage": {"repositoryName": repo, "imageHash": digest, "registry": account}
                },
            }
        ],
    }


def test_findings_of_member_accounts_come_from_the_delegated_administrator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENHANCED findings of accounts A and B are read through the admin role only, filtered per account.

    The scan type stays a question to each registry account (its own role); Inspector is never
    asked through a member role (no member-role inspector2 client is even created).
    """
    stubs = Stubs(monkeypatch, inspector_admin_role_arn=ADMIN)
    refs = {
        acct: (parse_image(f"{acct}.dkr.ecr.{REGION}.amazonaws.com/app:v1"), f"sha256:{acct[0] * 64}")
        for acct in (A, B)
    }
    # Clients made up front so their Stubbers can be loaded; the adapters get the same (cached) ones.
    ecr = {acct: stubs.clients.registry("ecr", REGION, account=acct) for acct in (A, B)}
    admin = stubs.clients.inspector(REGION, A)
    assert admin is stubs.clients.inspector(REGION, B)  # one client, in the administrator account
    for acct in (A, B):
        stubs.of(ecr[acct]).add_response(
            "get_registry_scanning_configuration",
            {"registryId": acct, "scanningConfiguration": {"scanType": "ENHANCED", "rules": []}},
            {},
        )
    i2 = stubs.of(admin)
    for acct in (A, B):
        ref, digest = refs[acct]
        arn = image_arn(ref, digest)
        i2.add_response(
            "list_coverage",
            {
                "coveredResources": [
                    {
                        "accountId": acct,
                        "resourceId": arn,
                        "resourceType": "AWS_ECR_CONTAINER_IMAGE",
                        "scanType": "PACKAGE",
                        "scanStatus": {"statusCode": "ACTIVE", "reason": "SUCCESSFUL"},
                    }
                ]
            },
            {
                "filterCriteria": {
                    "resourceType": eq("AWS_ECR_CONTAINER_IMAGE"),
                    "resourceId": eq(arn),
                    "accountId": eq(acct),
                },
                "maxResults": 200,
            },
        )
        i2.add_response(
            "list_findings",
            {"findings": [_finding(acct, "app", digest, f"CVE-{acct[0]}")]},
            {
                "filterCriteria": {
                    "resourceType": eq("AWS_ECR_CONTAINER_IMAGE"),
                    "awsAccountId": eq(acct),
                    "ecrImageHash": eq(digest),
                    "findingStatus": eq("ACTIVE"),
                    "severity": eq("HIGH"),
                },
                "maxResults": 100,
            },
        )
    out = RegistryFindingsSource(stubs.clients).scans(list(refs.values()), [Severity.HIGH])
    stubs.assert_done()
    for acct in (A, B):
        scan = out[refs[acct]]
        assert scan.state is ScanState.COMPLETE and scan.scan_type is ScanType.ENHANCED
        assert [f.vulnerability_id for f in scan.findings] == [f"CVE-{acct[0]}"]
    inspector_clients = [s for s in stubs.all if s.client.meta.service_model.service_name == "inspector2"]
    assert len(inspector_clients) == 1


def test_without_an_administrator_each_member_role_reads_its_own_inspector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stubs = Stubs(monkeypatch)
    assert stubs.clients.inspector(REGION, A) is stubs.clients.registry("inspector2", REGION, account=A)
    assert stubs.clients.inspector(REGION, A) is not stubs.clients.inspector(REGION, B)


def test_organization_pages_and_child_ous_are_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    """ListAccountsForParent / ListOrganizationalUnitsForParent pages to the end, child OUs too."""
    stubs = Stubs(monkeypatch)
    org = stubs.of(stubs.clients.with_role("organizations", REGION, ORG_ROLE))

    def account(acct: str, state: str = "ACTIVE") -> dict[str, Any]:
        return {"Id": acct, "Name": f"n{acct[0]}", "Status": state, "State": state}

    org.add_response(
        "list_accounts_for_parent",
        {"Accounts": [account(A)], "NextToken": "t2"},
        {"ParentId": "ou-ab12-11111111", "MaxResults": 20},
    )
    org.add_response(
        "list_accounts_for_parent",
        {"Accounts": [account("333333333333", "SUSPENDED")]},
        {"ParentId": "ou-ab12-11111111", "MaxResults": 20, "NextToken": "t2"},
    )
    org.add_response(
        "list_organizational_units_for_parent",
        {"OrganizationalUnits": [{"Id": "ou-ab12-22222222", "Name": "team"}]},
        {"ParentId": "ou-ab12-11111111", "MaxResults": 20},
    )
    org.add_response(
        "list_accounts_for_parent",
        {"Accounts": [account(B), account("444444444444")]},
        {"ParentId": "ou-ab12-22222222", "MaxResults": 20},
    )
    org.add_response(
        "list_organizational_units_for_parent",
        {"OrganizationalUnits": []},
        {"ParentId": "ou-ab12-22222222", "MaxResults": 20},
    )
    spec = OrganizationSpec(
        role_arn=ORG_ROLE, parents=["ou-ab12-11111111"], exclude_accounts=["444444444444"]
    )
    found = OrganizationAccounts(stubs.clients).accounts(spec, REGION)
    stubs.assert_done()
    assert found == [Account(A, "n1"), Account(B, "n2")]
