"""AWS Organizations: the ACTIVE accounts of an organization, or of some of its OUs (child OUs too).

Read through `spec.aws.organization.roleArn`, a role in the management account or in a delegated
administrator account. With no parents, `ListAccounts` pages give the whole organization; with
parents, `ListAccountsForParent` for each parent and, breadth-first, for every OU under it
(`ListOrganizationalUnitsForParent`). Accounts that are not ACTIVE (SUSPENDED, PENDING_CLOSURE,
being created) are left out: their roles cannot be used.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecs_scan_operator.adapters.aws_session import AwsClients, map_aws_error
from ecs_scan_operator.core.model import Account
from ecs_scan_operator.core.policy import OrganizationSpec

PAGE = 20  # the maximum MaxResults of the Organizations list calls


def _active(item: dict[str, Any]) -> bool:
    # `State` (2024 on) replaces the deprecated `Status`; either says ACTIVE for a usable account.
    return str(item.get("State") or item.get("Status") or "") == "ACTIVE"


class OrganizationAccounts:
    """AccountSource over the Organizations API."""

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients

    def accounts(self, org: OrganizationSpec, region: str) -> list[Account]:
        """The ACTIVE accounts org selects (includeAccounts / excludeAccounts applied), sorted by ID."""
        client = self._clients.with_role("organizations", region, org.role_arn)
        try:
            found = self._all(client) if not org.parents else self._under(client, org.parents)
        except (ClientError, BotoCoreError) as exc:
            raise map_aws_error(exc, "organizations:ListAccounts") from exc
        kept = {a.id: a for a in found if org.keeps(a.id)}
        return [kept[k] for k in sorted(kept)]

    @staticmethod
    def _account(item: dict[str, Any]) -> Account:
        return Account(id=str(item["Id"]), name=str(item.get("Name", "")))

    def _all(self, client: Any) -> list[Account]:
        return [
            self._account(item)
            for page in client.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": PAGE})
            for item in page.get("Accounts", [])
            if _active(item)
        ]

    def _under(self, client: Any, parents: list[str]) -> list[Account]:
        out: list[Account] = []
        todo, seen = deque(parents), set(parents)
        while todo:
            parent = todo.popleft()
            for page in client.get_paginator("list_accounts_for_parent").paginate(
                ParentId=parent, PaginationConfig={"PageSize": PAGE}
            ):
                out.extend(self._account(i) for i in page.get("Accounts", []) if _active(i))
            for page in client.get_paginator("list_organizational_units_for_parent").paginate(
                ParentId=parent, PaginationConfig={"PageSize": PAGE}
            ):
                for ou in page.get("OrganizationalUnits", []):
                    if ou["Id"] not in seen:  # an OU named twice (itself and its parent) is read once
                        seen.add(ou["Id"])
                        todo.append(ou["Id"])
        return out
