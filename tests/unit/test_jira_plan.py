"""The Jira plan: decisions per ticket, searches, and the ticket text (core/jira_plan.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ecs_scan_operator.core.model import ImageResult, ImageStatus
from ecs_scan_operator.core.policy import PolicySpec
from ecs_scan_operator.core.tickets import (
    Action,
    ExistingTicket,
    JiraWorkflow,
    PlannedAction,
    TicketProperty,
    build_searches,
    dedup_key,
    dedup_label,
    esc,
    evaluate_group,
    group_images,
    link,
    plan_tickets,
    policy_label,
    route_label,
)
from ecs_scan_operator.core.tickets.wiki import TEXT_BUDGET, render_description, render_summary
from tests.jira_server import fleet

NOW = datetime(2025, 3, 10, 6, 0, tzinfo=UTC)
HIGH = ("CVE-2024-1", "openssl", "HIGH")
CRIT = ("CVE-2024-2", "zlib", "CRITICAL")


def _spec(**jira: Any) -> PolicySpec:
    base = {
        "url": "https://jira.example.com",
        "priorityMap": {"CRITICAL": "Highest", "HIGH": "High"},
        "dueDays": {"CRITICAL": 7, "HIGH": 30},
        "reopenWithinDays": 14,
    }
    return fleet.spec({**base, **jira})


def _plan(images: list[ImageResult], tickets: list[ExistingTicket], **kw: Any) -> list[PlannedAction]:
    spec = kw.pop("spec", None) or _spec()
    req = fleet.request(
        spec, images, kw.pop("now", NOW), inventory_complete=kw.pop("inventory_complete", True)
    )
    return plan_tickets(req, tickets, **kw).actions


def _ticket_from(action: PlannedAction, **kw: Any) -> ExistingTicket:
    """The ticket a create would have produced (open, with the property it wrote)."""
    base: dict[str, Any] = {
        "key": "SEC-1",
        "id": "10001",
        "labels": action.fields.labels,
        "status": "To Do",
        "status_category": "new",
        "project": action.project,
        "created": NOW - timedelta(days=5),
        "duedate": action.fields.duedate,
        "prop": TicketProperty.from_json(action.prop.to_json()) if action.prop else None,
    }
    return ExistingTicket(**{**base, **kw})


def _existing(findings: list[tuple[str, str, str]], **kw: Any) -> ExistingTicket:
    (create,) = _plan([fleet.image("app/api", "1.0", findings)], [], now=NOW - timedelta(days=5))
    return _ticket_from(create, **kw)


DONE = {
    "status": "Done",
    "status_category": "done",
    "resolution": "Fixed",
    "resolved": NOW - timedelta(days=3),
}


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
    existing = [_existing(before, **ticket)] if before is not None else []
    actions = _plan([fleet.image("app/api", "1.0", now_findings, status=status)], existing)
    if action is None:
        assert actions == []
        return
    (got,) = actions
    assert got.action is action
    assert reason in got.reason


def test_unchanged_means_no_write_at_all() -> None:
    (got,) = _plan([fleet.image("app/api", "1.0", [HIGH])], [_existing([HIGH])])
    assert not got.writes
    assert got.fields.empty and got.comment is None and got.prop is None and got.transition is None


def test_update_has_one_comment_with_new_and_fixed() -> None:
    (got,) = _plan([fleet.image("app/api", "1.0", [CRIT])], [_existing([HIGH])])
    assert got.action is Action.UPDATE
    assert got.comment is not None
    assert "*New (1):* CVE-2024-2 (CRITICAL, zlib)" in got.comment
    assert "*Fixed (1):* CVE-2024-1 (HIGH, openssl)" in got.comment
    assert got.fields.priority == "Highest"  # the worst severity's priority, changed from High
    assert got.fields.duedate == NOW.date() + timedelta(days=7)  # SLA tightened by the CRITICAL
    assert got.prop is not None and got.prop.fp != _existing([HIGH]).prop.fp  # type: ignore[union-attr]


def test_due_date_only_gets_earlier() -> None:
    ticket = _existing([CRIT], duedate=date(2025, 3, 1))
    (got,) = _plan([fleet.image("app/api", "1.0", [CRIT, HIGH])], [ticket])
    assert got.action is Action.UPDATE and got.fields.duedate is None


def test_priority_a_person_changed_is_kept() -> None:
    # The tool last set High (in the property); a person may have set something else since.
    (got,) = _plan(
        [fleet.image("app/api", "1.0", [HIGH, ("CVE-2024-3", "curl", "HIGH")])], [_existing([HIGH])]
    )
    assert got.action is Action.UPDATE and got.fields.priority is None


def test_not_monitored_is_noted_once_and_never_fixed() -> None:
    first = _existing([HIGH])
    (note,) = _plan([fleet.image("app/api", "1.0", [], status=ImageStatus.NOT_SCANNED)], [first])
    assert note.action is Action.UPDATE and note.transition is None
    assert note.comment and "not a fix" in note.comment
    assert note.prop is not None and not note.prop.monitored
    assert note.prop.findings == first.prop.findings  # type: ignore[union-attr]
    again = replace(first, prop=note.prop)
    (later,) = _plan([fleet.image("app/api", "1.0", [], status=ImageStatus.NOT_SCANNED)], [again])
    assert later.action is Action.UNCHANGED and not later.writes


def test_unmonitored_image_keeps_its_findings_in_a_repository_group() -> None:
    images = [fleet.image("app/api", "1.0", [HIGH]), fleet.image("app/api", "0.9", [CRIT])]
    (create,) = _plan(images, [])
    ticket = _ticket_from(create)
    # 0.9 is no longer covered by Inspector, 1.0 is fixed: CRIT stays, the ticket stays open.
    later = [fleet.image("app/api", "1.0", []), fleet.image("app/api", "0.9", status=ImageStatus.NOT_SCANNED)]
    (got,) = _plan(later, [ticket])
    assert got.action is Action.UPDATE
    assert got.prop is not None
    assert [r.vulnerability_id for r in got.prop.findings] == ["CVE-2024-2"]
    assert got.fields.description and "last known" in got.fields.description
    # And when nothing at all is left in the scanned image while 0.9 stays unknown: not closed.
    ticket2 = _ticket_from(create, prop=got.prop)
    (again,) = _plan(later, [ticket2])
    assert again.action is Action.UNCHANGED


def test_reopen_rewrites_only_when_out_of_date() -> None:
    same = _plan([fleet.image("app/api", "1.0", [HIGH])], [_existing([HIGH], **DONE)])[0]
    assert same.action is Action.REOPEN and same.transition == "reopen"
    assert same.prop is None and same.fields.description is None
    assert same.comment and "findings are back" in same.comment
    other = _plan([fleet.image("app/api", "1.0", [CRIT])], [_existing([HIGH], **DONE)])[0]
    assert other.action is Action.REOPEN and other.prop is not None and other.fields.description


def test_new_linked_points_at_the_old_ticket() -> None:
    old = _existing([HIGH], **{**DONE, "resolved": NOW - timedelta(days=40)})
    (got,) = _plan([fleet.image("app/api", "1.0", [HIGH])], [old])
    assert got.action is Action.NEW_LINKED and got.link_to == "SEC-1"
    assert got.fields.description and "Follows up SEC-1" in got.fields.description
    assert got.label in got.fields.labels


def test_new_ticket_after_new_linked_is_the_one_tracked() -> None:
    old = _existing([HIGH], **{**DONE, "resolved": NOW - timedelta(days=40)})
    new = replace(_existing([HIGH]), key="SEC-2", id="10002", created=NOW - timedelta(days=1))
    (got,) = _plan([fleet.image("app/api", "1.0", [HIGH])], [old, new])
    assert got.action is Action.UNCHANGED and got.ticket == "SEC-2"


def test_duplicates_are_reported_not_touched() -> None:
    a = _existing([HIGH])
    b = replace(a, key="SEC-7", id="10007", created=NOW - timedelta(days=1))
    actions = _plan([fleet.image("app/api", "1.0", [HIGH])], [b, a])
    assert {(x.action, x.ticket) for x in actions} == {
        (Action.UNCHANGED, "SEC-1"),
        (Action.DUPLICATE, "SEC-7"),
    }


def test_close_when_fixed_off_updates_once() -> None:
    spec = _spec(closeWhenFixed=False)
    ticket = _existing([HIGH])
    (got,) = _plan([fleet.image("app/api", "1.0", [])], [ticket], spec=spec)
    assert got.action is Action.UPDATE and got.transition is None
    (again,) = _plan([fleet.image("app/api", "1.0", [])], [replace(ticket, prop=got.prop)], spec=spec)
    assert again.action is Action.UNCHANGED


ROUTED = {"routes": [{"name": "web-team", "match": {"families": ["web"]}, "project": "OPS"}]}


def test_route_change_creates_under_the_new_route_and_closes_the_old() -> None:
    old = _existing([HIGH])  # filed under the default route
    actions = _plan([fleet.image("app/api", "1.0", [HIGH])], [old], spec=_spec(**ROUTED))
    by = {a.action: a for a in actions}
    assert set(by) == {Action.CREATE, Action.CLOSE}
    create, close = by[Action.CREATE], by[Action.CLOSE]
    assert create.route == "web-team" and create.project == "OPS" and create.link_to == "SEC-1"
    assert close.ticket == "SEC-1" and close.depends_on == create.label and "routing changed" in close.reason
    assert actions.index(create) < actions.index(close)


def test_route_change_with_the_new_ticket_already_there() -> None:
    old = _existing([HIGH])
    spec = _spec(**ROUTED)
    (create,) = [
        a
        for a in _plan([fleet.image("app/api", "1.0", [HIGH])], [old], spec=spec)
        if a.action is Action.CREATE
    ]
    new = _ticket_from(create, key="OPS-1", id="20001")
    actions = _plan([fleet.image("app/api", "1.0", [HIGH])], [old, new], spec=spec)
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
    old = _existing([HIGH])
    actions = _plan(
        [fleet.image("app/other", "1.0", [])],
        [old],
        inventory_complete=complete,
        spec=_spec(closeWhenFixed=close_when_fixed),
    )
    (got,) = actions
    assert got.ticket == "SEC-1" and got.action is action


def test_failed_route_search_defers_its_groups() -> None:
    (got,) = _plan([fleet.image("app/api", "1.0", [HIGH])], [], failed_routes=["default"])
    assert got.action is Action.DEFERRED and not got.writes


def test_custom_workflow_names() -> None:
    wf = JiraWorkflow(fixed_resolutions=frozenset({"resolved"}), wont_do_statuses=frozenset({"parked"}))
    done = _existing([HIGH], **{**DONE, "resolution": "Fixed"})
    (got,) = _plan([fleet.image("app/api", "1.0", [HIGH])], [done], workflow=wf)
    assert got.action is Action.SKIP_WONTDO


def test_worst_first_creates_before_closes() -> None:
    images = [
        fleet.image("app/a", "1", [HIGH]),
        fleet.image("app/b", "1", [CRIT]),
        fleet.image("app/c", "1", []),
    ]
    closing = replace(
        _existing([HIGH]),
        labels=(dedup_label(dedup_key(fleet.POLICY, "default", f"{fleet.REGISTRY}/app/c")),),
        prop=None,
    )
    actions = _plan(images, [closing])
    assert [a.action for a in actions][:2] == [Action.CREATE, Action.CREATE]
    assert actions[0].group.endswith("app/b")


# -- searches -------------------------------------------------------------------------------------


def test_searches_one_per_route() -> None:
    spec = _spec(**ROUTED)
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
    spec = _spec()
    assert spec.jira is not None
    groups = group_images([fleet.image(f"app/r{i}", "1", [HIGH]) for i in range(120)], spec.jira)
    searches = build_searches(fleet.POLICY, spec.jira, groups, batch=50)
    assert len(searches) == 3
    assert "statusCategory" in searches[0].jql and "statusCategory" not in searches[1].jql
    assert sum(len(re.findall(r'"ecsscan-[0-9a-f]{16}"', s.jql)) for s in searches) == 120


# -- text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain", "plain"),
        ("a|b", r"a\|b"),
        ("[x]{y}", r"\[x\]\{y\}"),
        ("*bold* _it_", r"\*bold\* \_it\_"),
        ("two\nlines", "two lines"),
    ],
)
def test_wiki_escape(text: str, escaped: str) -> None:
    assert esc(text) == escaped


def test_links() -> None:
    assert link("x", "https://a.example/p?q=1|2") == "[x|https://a.example/p?q=1%7C2]"
    assert link("x", "javascript:alert(1)") == "x"
    assert link("x", "") == "x"


def _group(images: list[ImageResult], spec: PolicySpec) -> Any:
    assert spec.jira is not None
    (group,) = group_images(images, spec.jira)
    return group


def test_description_has_what_a_team_needs() -> None:
    spec = _spec()
    img = fleet.image("app/api", "1.0", [CRIT], families=[("web", "app"), ("worker", "jobs")])
    group = _group([img], spec)
    req = fleet.request(spec, [img], NOW, "run-42")
    text = render_description(req, group, evaluate_group(group, None))
    for needle in (
        "app/api",
        "1.0",
        img.digest or "",
        "|web|app|",
        "|worker|jobs|",
        "CVE-2024-2",
        "https://nvd.nist.gov/vuln/detail/CVE-2024-2",
        "3.0.1 → 3.0.15",
        "run-42",
        "run.log.jsonl",
        "h3. What to do",
        "at or above MEDIUM",
    ):
        assert needle in text, needle
    assert len(text) < TEXT_BUDGET


def test_description_is_summarized_past_the_limit() -> None:
    spec = _spec()
    findings = [(f"CVE-2024-{i:05d}", f"pkg-{i}-" + "x" * 60, "HIGH") for i in range(2000)]
    img = fleet.image("app/api", "1.0", findings, families=[(f"family-{i}", "c") for i in range(300)])
    group = _group([img], spec)
    text = render_description(fleet.request(spec, [img], NOW), group, evaluate_group(group, None))
    assert len(text) <= TEXT_BUDGET
    assert re.search(r"Showing the \d+ most severe of 2000 findings", text)
    assert "index.html" in text


def test_summary_is_bounded() -> None:
    spec = _spec(groupBy="image")
    img = fleet.image("a" * 200 + "/b" * 20, "t" * 100, [HIGH, CRIT])
    group = _group([img], spec)
    summary = render_summary(group, evaluate_group(group, None))
    assert len(summary) <= 255
    assert summary.endswith(": 1 CRITICAL, 1 HIGH")


def test_a_ticket_that_lost_its_dedup_label_is_kept_and_relabelled() -> None:
    ticket = _existing([HIGH])
    stripped = replace(ticket, labels=tuple(lb for lb in ticket.labels if "-route-" in lb))
    (got,) = _plan([fleet.image("app/api", "1.0", [HIGH])], [stripped])
    assert got.action is Action.UPDATE and got.ticket == "SEC-1" and got.reason == "restoring its labels"
    assert got.label in got.fields.labels


def test_a_mixed_failed_group_is_left_alone() -> None:
    images = [fleet.image("app/api", "1.0", [HIGH]), fleet.image("app/api", "0.9", [CRIT])]
    (create,) = _plan(images, [])
    later = [fleet.image("app/api", "1.0", []), fleet.image("app/api", "0.9", status=ImageStatus.FAILED)]
    (got,) = _plan(later, [_ticket_from(create)])
    assert got.action is Action.UNCHANGED and not got.writes
