"""Jira tickets of a policy: identity, grouping, searches, the decision table and the plan. Pure.

The package may use the scanning core (model, policy, links); the rest of the core never imports
it (an import-linter contract). Modules, in the order data flows through them:

- grouping.py: which route takes an image, and which images share a ticket;
- identity.py: a ticket's dedup key and labels (`TicketIdentity`);
- jql.py: the searches of one run;
- property.py: the `ecsscan` issue property and the fingerprints;
- findings.py: the findings of one group, carried over for images not scanned;
- decide.py: the decision tables (docs/architecture.md, "Ticket decisions");
- build.py and plan.py: the `PlannedAction`s of one run;
- wiki.py: the ticket text;
- model.py: the types passed between the pipeline, the plan and the Jira adapter.
"""

from ecs_scan_operator.core.tickets.decide import Verdict, decide
from ecs_scan_operator.core.tickets.findings import GroupFindings, evaluate_group
from ecs_scan_operator.core.tickets.grouping import (
    DEFAULT_ROUTE,
    Group,
    Route,
    group_images,
    resolve_routes,
    route_for,
)
from ecs_scan_operator.core.tickets.identity import (
    LABEL_PREFIX,
    TicketIdentity,
    dedup_key,
    dedup_label,
    find_dedup_label,
    is_dedup_label,
    policy_label,
    route_label,
)
from ecs_scan_operator.core.tickets.jql import build_searches
from ecs_scan_operator.core.tickets.model import (
    WRITING,
    Action,
    ExistingTicket,
    JiraWorkflow,
    PlannedAction,
    RouteSearch,
    StatusCategory,
    TicketFields,
    TicketPlan,
    TicketReport,
    TicketRequest,
)
from ecs_scan_operator.core.tickets.plan import plan_tickets
from ecs_scan_operator.core.tickets.property import (
    PROPERTY_KEY,
    FindingRow,
    TicketProperty,
    TicketState,
)
from ecs_scan_operator.core.tickets.wiki import TEXT_LIMIT, esc, link

__all__ = [
    "DEFAULT_ROUTE",
    "LABEL_PREFIX",
    "PROPERTY_KEY",
    "TEXT_LIMIT",
    "WRITING",
    "Action",
    "ExistingTicket",
    "FindingRow",
    "Group",
    "GroupFindings",
    "JiraWorkflow",
    "PlannedAction",
    "Route",
    "RouteSearch",
    "StatusCategory",
    "TicketFields",
    "TicketIdentity",
    "TicketPlan",
    "TicketProperty",
    "TicketReport",
    "TicketRequest",
    "TicketState",
    "Verdict",
    "build_searches",
    "decide",
    "dedup_key",
    "dedup_label",
    "esc",
    "evaluate_group",
    "find_dedup_label",
    "group_images",
    "is_dedup_label",
    "link",
    "plan_tickets",
    "policy_label",
    "resolve_routes",
    "route_for",
    "route_label",
]
