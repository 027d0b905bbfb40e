"""The JQL searches of one run (core/tickets/jql.py)."""

from __future__ import annotations

import re

from ecs_scan_operator.core.tickets import (
    build_searches,
    dedup_key,
    dedup_label,
    group_images,
    policy_label,
    route_label,
)
from tests.jira_server import fleet
from tests.unit.tickets.support import HIGH, ROUTED, spec_with


def test_searches_one_per_route() -> None:
    spec = spec_with(**ROUTED)
    assert spec.jira is not None
    groups = group_images(
        [fleet.image("app/api", "1.0", [HIGH]), fleet.image("app/x", "1", [], families=[("job", "c")])],
        spec.jira,
    )
    searches = build_searches(fleet.POLICY, spec.jira, groups)
    assert [s.route for s in searches] == ["web-team", "default"]
    web, default = searches
    assert web.jql.startswith(
        f'(labels = "{route_label(fleet.POLICY, "web-team")}" AND statusCategory != Done)'
    )
    assert dedup_label(dedup_key(fleet.POLICY, "web-team", f"{fleet.REGISTRY}/app/api")) in web.jql
    assert f'labels = "{policy_label(fleet.POLICY)}"' in default.jql
    assert f'labels not in ("{route_label(fleet.POLICY, "web-team")}")' in default.jql
    assert default.jql.endswith("ORDER BY created ASC")


def test_searches_batch_many_groups() -> None:
    spec = spec_with()
    assert spec.jira is not None
    groups = group_images([fleet.image(f"app/r{i}", "1", [HIGH]) for i in range(120)], spec.jira)
    searches = build_searches(fleet.POLICY, spec.jira, groups, batch=50)
    assert len(searches) == 3
    assert "statusCategory" in searches[0].jql and "statusCategory" not in searches[1].jql
    assert sum(len(re.findall(r'"ecsscan-[0-9a-f]{16}"', s.jql)) for s in searches) == 120
