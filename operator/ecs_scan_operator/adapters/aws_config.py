"""AWS Config: source: awsConfig reads task definitions from an aggregator's advanced query.

One `SelectAggregateResourceConfig` query per scanned region, sent to the aggregator's own region,
returns the ACTIVE task-definition revisions of every account the aggregator covers, 100 a page
(the API's maximum), instead of one `DescribeTaskDefinition` per family per account. What the
query asks and how its rows become revisions is pure (core/config_inventory.py); here are the
call, the paging and the mapping of Config's errors. docs/aws-config-source.md says what the data
depends on and how fresh it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecs_scan_operator.adapters.aws_session import AwsClients, error_code, map_aws_error
from ecs_scan_operator.core.config_inventory import LatestRevisions, select_expression
from ecs_scan_operator.core.model import TaskDefinitionImages, TaskDefinitionListing
from ecs_scan_operator.core.policy import ConfigAggregatorSpec, TaskDefinitionsSpec
from ecs_scan_operator.core.state import RevisionCache
from ecs_scan_operator.errors import AuthError, NotFoundError, PermanentError, ScanError

log = logging.getLogger(__name__)
PAGE = 100  # SelectAggregateResourceConfig: Limit at most 100
OPERATION = "config:SelectAggregateResourceConfig"


class ConfigImageSource:
    """ImageSource over an AWS Config aggregator (every account and region it aggregates)."""

    def __init__(self, clients: AwsClients, aggregator: ConfigAggregatorSpec, default_region: str) -> None:
        self._clients = clients
        self._name = aggregator.name
        self._region = aggregator.region or default_region
        # Multi-account policies ask once per (account, region): the aggregator answers for every
        # account at once, so each region is queried once and shared out by account.
        self._lock = threading.Lock()
        self._by_region: dict[str, TaskDefinitionListing] = {}
        self._errors_told: set[str] = set()

    def _mapped(self, exc: ClientError | BotoCoreError, region: str) -> ScanError:
        what = f"{OPERATION} aggregator {self._name} in {self._region} (task definitions of {region})"
        err = map_aws_error(exc, what)
        code = error_code(exc) if isinstance(exc, ClientError) else ""
        out: ScanError = err
        if code == "NoSuchConfigurationAggregatorException":
            out = NotFoundError(
                f"{OPERATION}: no configuration aggregator named {self._name} in {self._region} "
                "(spec.taskDefinitions.configAggregator: its name and region)"
            )
        elif isinstance(err, AuthError):
            out = AuthError(
                f"{err} (the identity needs config:SelectAggregateResourceConfig on aggregator "
                f"{self._name}; docs/iam.md)"
            )
        elif code == "InvalidExpressionException":
            out = PermanentError(f"{err} (the query the operator built was refused: please report it)")
        out.cause = err.cause
        return out

    def task_definitions(
        self,
        selection: TaskDefinitionsSpec,
        region: str,
        cache: RevisionCache,
        account: str = "",
        found: Callable[[TaskDefinitionImages], None] | None = None,
    ) -> TaskDefinitionListing:
        """The newest ACTIVE revision of each selected family in `region`, for every aggregated account
        (or only `account`'s, for a multi-account policy: the region is queried once for all).

        `cache` is not used: each page carries the images already, so nothing is described. `found`
        is not called: the pages are few, so the listing is complete soon after its first image.
        """
        if not account:
            return self._query(selection, region)
        with self._lock:  # one query per region, whichever account asks first
            listing = self._by_region.get(region)
            if listing is None:
                listing = self._by_region[region] = self._query(selection, region)
            errors = [] if region in self._errors_told else listing.errors
            self._errors_told.add(region)
        tds = [td for td in listing.task_definitions if td.account == account]
        return TaskDefinitionListing(
            task_definitions=tds, families_matched=len({td.family for td in tds}), errors=list(errors)
        )

    def _query(self, selection: TaskDefinitionsSpec, region: str) -> TaskDefinitionListing:
        config: Any = self._clients.workload("config", self._region)
        reducer = LatestRevisions(selection, region)
        pages = config.get_paginator("select_aggregate_resource_config").paginate(
            ConfigurationAggregatorName=self._name,
            Expression=select_expression(region, selection.include),
            PaginationConfig={"PageSize": PAGE},
        )
        try:
            for page in pages:
                reducer.add(page.get("Results", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._mapped(exc, region) from exc
        tds, errors = reducer.finish()
        log.info(
            "aws config %s: %d rows, %d task definitions in %s", self._name, reducer.rows, len(tds), region
        )
        return TaskDefinitionListing(task_definitions=tds, families_matched=reducer.families, errors=errors)
