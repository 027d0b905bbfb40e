"""The JQL searches of one run: per route, its open tickets and the labels of its groups. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from ecs_scan_operator.core.policy import JiraSpec, PolicyRef
from ecs_scan_operator.core.tickets.grouping import DEFAULT_ROUTE, Group, resolve_routes
from ecs_scan_operator.core.tickets.identity import TicketIdentity, policy_label, route_label
from ecs_scan_operator.core.tickets.model import RouteSearch

#: Labels per `labels in (...)` clause: keeps one JQL well below Jira's URL and query limits.
LABELS_PER_SEARCH = 100


def quote_jql(label: str) -> str:
    """A JQL string literal."""
    return '"' + label.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_searches(
    policy: PolicyRef, jira: JiraSpec, groups: Sequence[Group], *, batch: int = LABELS_PER_SEARCH
) -> list[RouteSearch]:
    """One JQL per route (more when it has over `batch` groups): its open tickets + its groups' labels.

    The default route's open part takes the policy label minus the named routes' labels, so it
    also finds open tickets of routes that were removed from the policy.
    """
    routes = resolve_routes(jira)
    named = [route_label(policy, r.name) for r in routes if r.name != DEFAULT_ROUTE]
    out: list[RouteSearch] = []
    for route in routes:
        if route.name == DEFAULT_ROUTE:
            open_part = f"labels = {quote_jql(policy_label(policy))}"
            if named:
                open_part += f" AND labels not in ({', '.join(quote_jql(n) for n in named)})"
        else:
            open_part = f"labels = {quote_jql(route_label(policy, route.name))}"
        open_part = f"({open_part} AND statusCategory != Done)"
        labels = [TicketIdentity.of(policy, route.name, g.group_id).label for g in groups if g.route == route]
        chunks = [labels[i : i + batch] for i in range(0, len(labels), batch)] or [[]]
        for i, chunk in enumerate(chunks):
            parts = [open_part] if i == 0 else []
            if chunk:
                parts.append(f"labels in ({', '.join(quote_jql(lb) for lb in chunk)})")
            out.append(RouteSearch(route.name, " OR ".join(parts) + " ORDER BY created ASC"))
    return out
