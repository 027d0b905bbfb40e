"""The plan of one run, end to end: what happens to each ticket, in which order (core/tickets/plan.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest

from ecs_scan_operator.core.model import ImageStatus
from ecs_scan_operator.core.tickets import (
    Action,
    JiraWorkflow,
    dedup_key,
    dedup_label,
)
from tests.jira_server import fleet
from tests.unit.tickets.support import CRIT, DONE, HIGH, NOW, ROUTED, existing, plan, spec_with, ticket_from


@pytest.mark.parametrize(
    ("before", "ticket", "now_findings", "status", "action", "reason"),
    [
        (None, {}, [HIGH], ImageStatus.SCANNED, Action.CREATE, "new findings"),
        ([HIGH], {}, [HIGH], ImageStatus.SCANNED, Action.UNCHANGED, "no change"),
        ([HIGH], {}, [HIGH, CRIT], ImageStatus.SCANNED, Action.UPDATE, "findings changed"),
        ([HIGH, CRIT], {}, [HIGH], ImageStatus.SCANNED, Action.UPDATE, "findings changed"),
        ([HIGH], {}, [], ImageStatus.SCANNED, Action.CLOSE, "all findings fixed"),
        (
            [HIGH],
            {"status": "In Progress", "status_category": "indeterminate"},
            [],
            ImageStatus.SCANNED,
            Action.CLOSE,
            "all findings fixed",
        ),
        ([HIGH], {}, [], ImageStatus.NOT_SCANNED, Action.UPDATE, "no longer monitored"),
        ([HIGH], {}, [], ImageStatus.NOT_FOUND, Action.UPDATE, "no longer monitored"),
        ([HIGH], {}, [], ImageStatus.FAILED, Action.UNCHANGED, "scan failed"),
        ([HIGH], {}, [HIGH, CRIT], ImageStatus.FAILED, Action.UNCHANGED, "scan failed"),
        ([HIGH], DONE, [HIGH], ImageStatus.SCANNED, Action.REOPEN, "within 14 days"),
        ([HIGH], {**DONE, "resolution": "Done"}, [HIGH], ImageStatus.SCANNED, Action.REOPEN, "within"),
        (
            [HIGH],
            {**DONE, "resolved": NOW - timedelta(days=20)},
            [HIGH],
            ImageStatus.SCANNED,
            Action.NEW_LINKED,
            "more than 14 days",
        ),
        (
            [HIGH],
            {**DONE, "resolution": "Won't Do"},
            [HIGH],
            ImageStatus.SCANNED,
            Action.SKIP_WONTDO,
            "Won't Do by a person",
        ),
        (
            [HIGH],
            {**DONE, "resolution": "Duplicate"},
            [HIGH, CRIT],
            ImageStatus.SCANNED,
            Action.SKIP_WONTDO,
            "not reopened",
        ),
        (
            [HIGH],
            {"status": "Won't Fix", "status_category": "indeterminate"},
            [HIGH, CRIT],
            ImageStatus.SCANNED,
            Action.SKIP_WONTDO,
            "set by a person",
        ),
        ([HIGH], DONE, [], ImageStatus.SCANNED, Action.UNCHANGED, "still no findings"),
        ([HIGH], DONE, [], ImageStatus.NOT_SCANNED, Action.UNCHANGED, "still no findings"),
        ([HIGH], {**DONE, "resolution": "Won't Do"}, [], ImageStatus.SCANNED, Action.UNCHANGED, "closed as"),
        (None, {}, [], ImageStatus.SCANNED, None, ""),  # clean and no ticket: nothing to do
        (None, {}, [], ImageStatus.NOT_SCANNED, None, ""),
    ],
)
def test_decisions(
    before: list[tuple[str, str, str]] | None,
    ticket: dict[str, Any],
    now_findings: list[tuple[str, str, str]],
    status: ImageStatus,
    action: Action | None,
    reason: str,
) -> None:
    tickets = [existing(before, **ticket)] if before is not None else []
    actions = plan([fleet.image("app/api", "1.0", now_findings, status=status)], tickets)
    if action is None:
        assert actions == []
        return
    (got,) = actions
    assert got.action is action
    assert reason in got.reason


def test_unchanged_means_no_write_at_all() -> None:
    (got,) = plan([fleet.image("app/api", "1.0", [HIGH])], [existing([HIGH])])
    assert not got.writes
    assert got.fields.empty and got.comment is None and got.prop is None and got.transition is None


def test_update_has_one_comment_with_new_and_fixed() -> None:
    (got,) = plan([fleet.image("app/api", "1.0", [CRIT])], [existing([HIGH])])
    assert got.action is Action.UPDATE
    assert got.comment is not None
    assert "*New (1):* CVE-2024-2 (CRITICAL, zlib)" in got.comment
    assert "*Fixed (1):* CVE-2024-1 (HIGH, openssl)" in got.comment
    assert got.fields.priority == "Highest"  # the worst severity's priority, changed from High
    assert got.fields.duedate == NOW.date() + timedelta(days=7)  # SLA tightened by the CRITICAL
    assert got.prop is not None and got.prop.fp != existing([HIGH]).prop.fp  # type: ignore[union-attr]


def test_due_date_only_gets_earlier() -> None:
    ticket = existing([CRIT], duedate=date(2025, 3, 1))
    (got,) = plan([fleet.image("app/api", "1.0", [CRIT, HIGH])], [ticket])
    assert got.action is Action.UPDATE and got.fields.duedate is None


def test_priority_a_person_changed_is_kept() -> None:
    # The tool last set High (in the property); a person may have set something else since.
    (got,) = plan([fleet.image("app/api", "1.0", [HIGH, ("CVE-2024-3", "curl", "HIGH")])], [existing([HIGH])])
    assert got.action is Action.UPDATE and got.fields.priority is None


def test_not_monitored_is_noted_once_and_never_fixed() -> None:
    first = existing([HIGH])
    (note,) = plan([fleet.image("app/api", "1.0", [], status=ImageStatus.NOT_SCANNED)], [first])
    assert note.action is Action.UPDATE and note.transition is None
    assert note.comment and "not a fix" in note.comment
    assert note.prop is not None and not note.prop.monitored
    assert note.prop.findings == first.prop.findings  # type: ignore[union-attr]
    again = replace(first, prop=note.prop)
    (later,) = plan([fleet.image("app/api", "1.0", [], status=ImageStatus.NOT_SCANNED)], [again])
    assert later.action is Action.UNCHANGED and not later.writes


def test_unmonitored_image_keeps_its_findings_in_a_repository_group() -> None:
    images = [fleet.image("app/api", "1.0", [HIGH]), fleet.image("app/api", "0.9", [CRIT])]
    (create,) = plan(images, [])
    ticket = ticket_from(create)
    # 0.9 is no longer covered by Inspector, 1.0 is fixed: CRIT stays, the ticket stays open.
    later = [fleet.image("app/api", "1.0", []), fleet.image("app/api", "0.9", status=ImageStatus.NOT_SCANNED)]
    (got,) = plan(later, [ticket])
    assert got.action is Action.UPDATE
    assert got.prop is not None
    assert [r.vulnerability_id for r in got.prop.findings] == ["CVE-2024-2"]
    assert got.fields.description and "last known" in got.fields.description
    # And when nothing at all is left in the scanned image while 0.9 stays unknown: not closed.
    ticket2 = ticket_from(create, prop=got.prop)
    (again,) = plan(later, [ticket2])
    assert again.action is Action.UNCHANGED


def test_reopen_rewrites_only_when_out_of_date() -> None:
    same = plan([fleet.image("app/api", "1.0", [HIGH])], [existing([HIGH], **DONE)])[0]
    assert same.action is Action.REOPEN and same.transition == "reopen"
    assert same.prop is None and same.fields.description is None
    assert same.comment and "findings are back" in same.comment
    other = plan([fleet.image("app/api", "1.0", [CRIT])], [existing([HIGH], **DONE)])[0]
    assert other.action is Action.REOPEN and other.prop is not None and other.fields.description


def test_new_linked_points_at_the_old_ticket() -> None:
    old = existing([HIGH], **{**DONE, "resolved": NOW - timedelta(days=40)})
    (got,) = plan([fleet.image("app/api", "1.0", [HIGH])], [old])
    assert got.action is Action.NEW_LINKED and got.link_to == "SEC-1"
    assert got.fields.description and "Follows up SEC-1" in got.fields.description
    assert got.label in got.fields.labels


def test_new_ticket_after_new_linked_is_the_one_tracked() -> None:
    old = existing([HIGH], **{**DONE, "resolved": NOW - timedelta(days=40)})
    new = replace(existing([HIGH]), key="SEC-2", id="10002", created=NOW - timedelta(days=1))
    (got,) = plan([fleet.image("app/api", "1.0", [HIGH])], [old, new])
    assert got.action is Action.UNCHANGED and got.ticket == "SEC-2"


def test_duplicates_are_reported_not_touched() -> None:
    a = existing([HIGH])
    b = replace(a, key="SEC-7", id="10007", created=NOW - timedelta(days=1))
    actions = plan([fleet.image("app/api", "1.0", [HIGH])], [b, a])
    assert {(x.action, x.ticket) for x in actions} == {
        (Action.UNCHANGED, "SEC-1"),
        (Action.DUPLICATE, "SEC-7"),
    }


def test_close_when_fixed_off_updates_once() -> None:
    spec = spec_with(closeWhenFixed=False)
    ticket = existing([HIGH])
    (got,) = plan([fleet.image("app/api", "1.0", [])], [ticket], spec=spec)
    assert got.action is Action.UPDATE and got.transition is None
    (again,) = plan([fleet.image("app/api", "1.0", [])], [replace(ticket, prop=got.prop)], spec=spec)
    assert again.action is Action.UNCHANGED


def test_route_change_creates_under_the_new_route_and_closes_the_old() -> None:
    old = existing([HIGH])  # filed under the default route
    actions = plan([fleet.image("app/api", "1.0", [HIGH])], [old], spec=spec_with(**ROUTED))
    by = {a.action: a for a in actions}
    assert set(by) == {Action.CREATE, Action.CLOSE}
    create, close = by[Action.CREATE], by[Action.CLOSE]
    assert create.route == "web-team" and create.project == "OPS" and create.link_to == "SEC-1"
    assert close.ticket == "SEC-1" and close.depends_on == create.label and "routing changed" in close.reason
    assert actions.index(create) < actions.index(close)


def test_route_change_with_the_new_ticket_already_there() -> None:
    old = existing([HIGH])
    spec = spec_with(**ROUTED)
    (create,) = [
        a
        for a in plan([fleet.image("app/api", "1.0", [HIGH])], [old], spec=spec)
        if a.action is Action.CREATE
    ]
    new = ticket_from(create, key="OPS-1", id="20001")
    actions = plan([fleet.image("app/api", "1.0", [HIGH])], [old, new], spec=spec)
    assert {(a.action, a.ticket) for a in actions} == {(Action.UNCHANGED, "OPS-1"), (Action.CLOSE, "SEC-1")}
    (close,) = [a for a in actions if a.action is Action.CLOSE]
    assert close.depends_on is None and "OPS-1" in (close.comment or "")


@pytest.mark.parametrize(
    ("complete", "close_when_fixed", "action"),
    [
        (True, True, Action.CLOSE),
        (False, True, Action.UNCHANGED),
        (True, False, Action.UPDATE),
    ],
)
def test_image_no_longer_deployed(complete: bool, close_when_fixed: bool, action: Action) -> None:
    old = existing([HIGH])
    actions = plan(
        [fleet.image("app/other", "1.0", [])],
        [old],
        inventory_complete=complete,
        spec=spec_with(closeWhenFixed=close_when_fixed),
    )
    (got,) = actions
    assert got.ticket == "SEC-1" and got.action is action


def test_failed_route_search_defers_its_groups() -> None:
    (got,) = plan([fleet.image("app/api", "1.0", [HIGH])], [], failed_routes=["default"])
    assert got.action is Action.DEFERRED and not got.writes


def test_custom_workflow_names() -> None:
    wf = JiraWorkflow(fixed_resolutions=frozenset({"resolved"}), wont_do_statuses=frozenset({"parked"}))
    done = existing([HIGH], **{**DONE, "resolution": "Fixed"})
    (got,) = plan([fleet.image("app/api", "1.0", [HIGH])], [done], workflow=wf)
    assert got.action is Action.SKIP_WONTDO


def test_worst_first_creates_before_closes() -> None:
    images = [
        fleet.image("app/a", "1", [HIGH]),
        fleet.image("app/b", "1", [CRIT]),
        fleet.image("app/c", "1", []),
    ]
    closing = replace(
        existing([HIGH]),
        labels=(dedup_label(dedup_key(fleet.POLICY, "default", f"{fleet.REGISTRY}/app/c")),),
        prop=None,
    )
    actions = plan(images, [closing])
    assert [a.action for a in actions][:2] == [Action.CREATE, Action.CREATE]
    assert actions[0].group.endswith("app/b")


def test_a_ticket_that_lost_its_dedup_label_is_kept_and_relabelled() -> None:
    ticket = existing([HIGH])
    stripped = replace(ticket, labels=tuple(lb for lb in ticket.labels if "-route-" in lb))
    (got,) = plan([fleet.image("app/api", "1.0", [HIGH])], [stripped])
    assert got.action is Action.UPDATE and got.ticket == "SEC-1" and got.reason == "restoring its labels"
    assert got.label in got.fields.labels


def test_a_mixed_failed_group_is_left_alone() -> None:
    images = [fleet.image("app/api", "1.0", [HIGH]), fleet.image("app/api", "0.9", [CRIT])]
    (create,) = plan(images, [])
    later = [fleet.image("app/api", "1.0", []), fleet.image("app/api", "0.9", status=ImageStatus.FAILED)]
    (got,) = plan(later, [ticket_from(create)])
    assert got.action is Action.UNCHANGED and not got.writes


_SCENARIOS: dict[
    str, tuple[list[tuple[str, str, str]] | None, dict[str, Any], list[tuple[str, str, str]], dict[str, Any]]
] = {
    "create": (None, {}, [HIGH], {}),
    "update": ([HIGH], {}, [HIGH, CRIT], {}),
    "reopen-same": ([HIGH], DONE, [HIGH], {}),
    "reopen-other": ([HIGH], DONE, [CRIT], {}),
    "new-linked": ([HIGH], {**DONE, "resolved": NOW - timedelta(days=40)}, [HIGH], {}),
    "fixed-kept-open": ([HIGH], {}, [], {"spec": spec_with(closeWhenFixed=False)}),
    "route-moved": ([HIGH], {}, [HIGH], {"spec": spec_with(**ROUTED)}),
    "unmonitored": ([HIGH], {}, [], {"status": ImageStatus.NOT_SCANNED}),
}


@pytest.mark.parametrize("name", sorted(_SCENARIOS))
def test_deferred_descriptions_are_the_eager_ones(name: str) -> None:
    before, ticket, now_findings, options = _SCENARIOS[name]
    kw = dict(options)
    status = kw.pop("status", ImageStatus.SCANNED)
    images = [fleet.image("app/api", "1.0", now_findings, status=status)]
    tickets = [existing(before, **ticket)] if before is not None else []
    eager = plan(images, tickets, **kw)
    lazy = plan(images, tickets, defer_text=True, **kw)
    assert lazy and all(a.fields.description is None for a in lazy)  # nothing rendered yet
    assert [a.fields.empty for a in lazy] == [a.fields.empty for a in eager]
    rendered = [
        replace(a, fields=replace(a.fields, description=a.fields.text(), describe=None)) for a in lazy
    ]
    assert rendered == eager
    assert [a.fields.text() for a in eager] == [a.fields.description for a in eager]
