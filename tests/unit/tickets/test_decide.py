"""The ticket decision tables (core/tickets/decide.py), tested as a table, and their documentation."""

from __future__ import annotations

import itertools
import string
from pathlib import Path

import pytest

from ecs_scan_operator.core.tickets import Action
from ecs_scan_operator.core.tickets.decide import (
    GROUP_RULES,
    ORPHAN_RULES,
    Coverage,
    Facts,
    Findings,
    NoRule,
    Record,
    Redeploy,
    Routing,
    Rule,
    Ticket,
    Verdict,
    decide,
    render_table,
)

ARCHITECTURE = Path(__file__).resolve().parents[3] / "docs" / "architecture.md"

T, F, C, R, V = Ticket, Findings, Coverage, Record, Verdict


def _facts(
    ticket: Ticket,
    findings: Findings = F.FOUND,
    coverage: Coverage = C.ALL,
    record: Record = R.CHANGED,
    routing: Routing = Routing.STAYED,
    *,
    cwf: bool = True,
    labels: bool = True,
    redeploy: Redeploy = Redeploy.NO,
) -> Facts:
    return Facts(
        ticket,
        findings,
        coverage,
        record,
        routing,
        close_when_fixed=cwf,
        labels_complete=labels,
        redeploy=redeploy,
    )


# (facts, verdict): written from the behaviour, not read from the table.
GROUP_CASES = [
    # No ticket yet.
    (_facts(T.NONE, F.NONE, record=R.NONE), V.NOTHING),
    (_facts(T.NONE, F.NONE, C.NONE, R.NONE, Routing.MOVED_IN), V.NOTHING),
    (_facts(T.NONE, record=R.NONE), V.CREATE),
    (_facts(T.NONE, F.FOUND, C.FAILED, R.NONE), V.CREATE),  # a failed image does not hide the others
    (_facts(T.NONE, F.FOUND, C.NONE, R.NONE, Routing.MOVED_IN), V.CREATE_MOVED),  # carried along
    # Closed by a person as won't do: never reopened.
    (_facts(T.DONE_WONT_DO), V.SKIP_WONT_DO),
    (_facts(T.DONE_WONT_DO, F.NONE), V.KEEP),
    (_facts(T.OPEN_WONT_DO, F.NONE, cwf=True), V.SKIP_WONT_DO),  # not closed either
    (_facts(T.OPEN_WONT_DO, F.FOUND, record=R.CHANGED), V.SKIP_WONT_DO),
    # Done as fixed.
    (_facts(T.DONE_RECENT, F.NONE), V.KEEP),
    (_facts(T.DONE_LONG_AGO, F.NONE, C.NONE), V.KEEP),
    (_facts(T.DONE_RECENT), V.REOPEN),
    (_facts(T.DONE_RECENT, F.FOUND, C.PARTIAL, R.CURRENT), V.REOPEN),
    (_facts(T.DONE_LONG_AGO), V.NEW_LINKED),
    # Open: a failed scan or unmonitored images are never a fix.
    (_facts(T.OPEN, F.NONE, C.FAILED), V.KEEP),
    (_facts(T.OPEN, F.FOUND, C.FAILED, R.CHANGED), V.KEEP),
    (_facts(T.OPEN, F.FOUND, C.NONE, R.CURRENT), V.NOTE_UNMONITORED),
    (_facts(T.OPEN, F.NONE, C.NONE, R.NONE), V.NOTE_UNMONITORED),
    (_facts(T.OPEN, F.FOUND, C.NONE, R.UNMONITORED_SAME), V.KEEP),  # noted once
    (_facts(T.OPEN, F.NONE, C.NONE, R.UNMONITORED_CHANGED), V.KEEP),
    (_facts(T.OPEN, F.NONE, C.PARTIAL, R.CURRENT), V.KEEP),
    (_facts(T.OPEN, F.NONE, C.PARTIAL, R.CURRENT, cwf=True), V.KEEP),
    # Open, every image scanned, nothing left.
    (_facts(T.OPEN, F.NONE, C.ALL, R.CHANGED, cwf=True), V.CLOSE_FIXED),
    (_facts(T.OPEN, F.NONE, C.ALL, R.NONE, cwf=True), V.CLOSE_FIXED),
    (_facts(T.OPEN, F.NONE, C.ALL, R.CHANGED, cwf=False), V.UPDATE_FIXED),
    (_facts(T.OPEN, F.NONE, C.ALL, R.NONE, cwf=False), V.UPDATE_FIXED),
    (_facts(T.OPEN, F.NONE, C.ALL, R.CURRENT, cwf=False), V.KEEP),  # told once
    (_facts(T.OPEN, F.NONE, C.ALL, R.UNMONITORED_SAME, cwf=False), V.KEEP),
    (_facts(T.OPEN, F.NONE, C.ALL, R.UNMONITORED_CHANGED, cwf=False), V.UPDATE_FIXED),
    # Open with findings.
    (_facts(T.OPEN, F.FOUND, C.ALL, R.CURRENT), V.KEEP),
    (_facts(T.OPEN, F.FOUND, C.PARTIAL, R.CURRENT, labels=False), V.RESTORE_LABELS),
    (_facts(T.OPEN, F.FOUND, C.ALL, R.NONE), V.REWRITE),
    (_facts(T.OPEN, F.FOUND, C.ALL, R.STALE), V.REWRITE),
    (_facts(T.OPEN, F.FOUND, C.PARTIAL, R.UNMONITORED_SAME), V.REWRITE),
    (_facts(T.OPEN, F.FOUND, C.ALL, R.CHANGED, labels=False), V.REWRITE),  # the rewrite adds them
    (_facts(T.OPEN, F.FOUND, C.ALL, R.UNMONITORED_CHANGED), V.REWRITE),
    # The running view: an affected digest still runs while the tag moved on (issue #12).
    (_facts(T.OPEN, F.NONE, C.ALL, R.CHANGED, redeploy=Redeploy.NEW), V.KEEP),  # never closed
    (_facts(T.OPEN, F.NONE, C.ALL, R.CURRENT, redeploy=Redeploy.STILL), V.KEEP),
    (_facts(T.OPEN, F.NONE, C.ALL, R.CHANGED, cwf=False, redeploy=Redeploy.STILL), V.KEEP),
    (_facts(T.OPEN, F.FOUND, C.ALL, R.STALE, redeploy=Redeploy.NEW), V.REWRITE),  # said once
    (_facts(T.OPEN, F.FOUND, C.ALL, R.CURRENT, redeploy=Redeploy.NEW), V.REWRITE),
    (_facts(T.OPEN, F.FOUND, C.ALL, R.CURRENT, redeploy=Redeploy.STILL), V.KEEP),  # no churn
    (_facts(T.OPEN, F.FOUND, C.FAILED, R.STALE, redeploy=Redeploy.NEW), V.KEEP),  # a failed scan says nothing
    (_facts(T.OPEN_WONT_DO, F.FOUND, C.ALL, R.STALE, redeploy=Redeploy.NEW), V.SKIP_WONT_DO),
    (_facts(T.NONE, F.FOUND, C.ALL, R.NONE, redeploy=Redeploy.NEW), V.CREATE),
    (_facts(T.OPEN, F.NONE, C.ALL, R.CHANGED, redeploy=Redeploy.NO), V.CLOSE_FIXED),  # redeployed
]

ORPHAN_CASES = [
    (_facts(T.OPEN, record=R.NONE, routing=Routing.GONE), V.KEEP),  # not ours to close
    (_facts(T.OPEN_WONT_DO, record=R.NONE, routing=Routing.MOVED_TRACKED), V.KEEP),
    (_facts(T.OPEN_WONT_DO, record=R.RECORDED, routing=Routing.GONE), V.SKIP_WONT_DO),
    (_facts(T.OPEN, record=R.RECORDED, routing=Routing.MOVED_TRACKED), V.CLOSE_MOVED),
    (_facts(T.OPEN, record=R.RETIRED, routing=Routing.MOVED_FILING, cwf=False), V.CLOSE_MOVING),
    (_facts(T.OPEN, record=R.RECORDED, routing=Routing.MOVED_DEFERRED), V.KEEP),
    (_facts(T.OPEN, F.NONE, C.ALL, R.RECORDED, Routing.MOVED_QUIET), V.CLOSE_FIXED),
    (_facts(T.OPEN, F.NONE, C.ALL, R.RECORDED, Routing.MOVED_QUIET, cwf=False), V.KEEP),
    (_facts(T.OPEN, F.NONE, C.PARTIAL, R.RECORDED, Routing.MOVED_QUIET), V.KEEP),
    (_facts(T.OPEN, F.FOUND, C.ALL, R.RECORDED, Routing.MOVED_QUIET), V.KEEP),
    (_facts(T.OPEN, record=R.RECORDED, routing=Routing.GONE_UNSURE), V.KEEP),  # may still be deployed
    (_facts(T.OPEN, record=R.RECORDED, routing=Routing.GONE), V.CLOSE_GONE),
    (_facts(T.OPEN, record=R.RETIRED, routing=Routing.GONE), V.CLOSE_GONE),
    (_facts(T.OPEN, record=R.RECORDED, routing=Routing.GONE, cwf=False), V.RETIRE),
    (_facts(T.OPEN, record=R.RETIRED, routing=Routing.GONE, cwf=False), V.KEEP),  # said once
]


@pytest.mark.parametrize(("facts", "verdict"), GROUP_CASES)
def test_group_decisions(facts: Facts, verdict: Verdict) -> None:
    assert decide(facts).verdict is verdict


@pytest.mark.parametrize(("facts", "verdict"), ORPHAN_CASES)
def test_orphan_decisions(facts: Facts, verdict: Verdict) -> None:
    assert decide(facts, ORPHAN_RULES).verdict is verdict


GROUP_SPACE = [
    Facts(*combo[:5], close_when_fixed=combo[5], labels_complete=combo[6], redeploy=combo[7])
    for combo in itertools.product(
        list(Ticket),
        list(Findings),
        list(Coverage),
        [r for r in Record if r not in (R.RECORDED, R.RETIRED)],
        [Routing.STAYED, Routing.MOVED_IN],
        [True, False],
        [True, False],
        list(Redeploy),
    )
]
ORPHAN_SPACE = [
    Facts(*combo[:5], close_when_fixed=combo[5])
    for combo in itertools.product(
        [T.OPEN, T.OPEN_WONT_DO],
        list(Findings),
        list(Coverage),
        [R.NONE, R.RECORDED, R.RETIRED],
        [r for r in Routing if r not in (Routing.STAYED, Routing.MOVED_IN)],
        [True, False],
    )
]


@pytest.mark.parametrize(
    ("rules", "space"), [(GROUP_RULES, GROUP_SPACE), (ORPHAN_RULES, ORPHAN_SPACE)], ids=["group", "orphan"]
)
def test_every_case_is_decided_and_every_row_is_used(rules: tuple[Rule, ...], space: list[Facts]) -> None:
    used = {id(decide(facts, rules)) for facts in space}  # raises NoRule on a gap
    assert [i for i, rule in enumerate(rules, 1) if id(rule) not in used] == []  # no dead rows


def test_a_gap_in_a_table_is_an_error_not_a_default() -> None:
    with pytest.raises(NoRule):
        decide(_facts(T.OPEN, routing=Routing.STAYED), ORPHAN_RULES)


@pytest.mark.parametrize(
    ("verdict", "action"),
    [
        (V.NOTHING, None),
        (V.KEEP, Action.UNCHANGED),
        (V.CREATE_MOVED, Action.CREATE),
        (V.NOTE_UNMONITORED, Action.UPDATE),
        (V.RETIRE, Action.UPDATE),
        (V.CLOSE_MOVING, Action.CLOSE),
    ],
)
def test_verdicts_map_to_jira_actions(verdict: Verdict, action: Action | None) -> None:
    assert verdict.action is action
    assert all(v.action is None or isinstance(v.action, Action) for v in Verdict)


@pytest.mark.parametrize(("title", "rules"), [("Group tickets", GROUP_RULES), ("Orphans", ORPHAN_RULES)])
def test_docs_show_the_tables_the_code_uses(title: str, rules: tuple[Rule, ...]) -> None:
    doc = ARCHITECTURE.read_text(encoding="utf-8")
    assert "## Ticket decisions" in doc
    assert render_table(rules) in doc, f"docs/architecture.md: regenerate the {title} table"


@pytest.mark.parametrize(
    ("rules", "names"),
    [
        (GROUP_RULES, {"why", "status", "key", "days", "old_key", "old_route"}),
        (ORPHAN_RULES, {"status", "key", "where"}),
    ],
    ids=["group", "orphan"],
)
def test_reasons_name_only_what_the_plan_fills_in(rules: tuple[Rule, ...], names: set[str]) -> None:
    used = {field for rule in rules for _, field, _, _ in string.Formatter().parse(rule.reason) if field}
    assert used <= names
