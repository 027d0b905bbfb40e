"""The running view in the ticket lifecycle (issue #12): "redeploy needed", never closed while an
affected digest runs, the runtime context in the description, and no churn from what moves."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import ImageResult, ImageUse, RuntimeContext
from ecs_scan_operator.core.tickets import Action, ExistingTicket, PlannedAction
from tests.jira_server import fleet
from tests.unit.tickets.support import HIGH, NOW, plan, spec_with, ticket_from

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def running(
    digest: str,
    findings: list[tuple[str, str, str]],
    *,
    tag_digest: str | None = None,
    redeploy: bool = False,
    tasks: int = 3,
    seen: int = 0,
    at_risk: bool = False,
    services: tuple[str, ...] = ("api",),
    clusters: tuple[str, ...] = ("prod",),
) -> ImageResult:
    """`app/api:1.0@digest` as the running source reports it, with its running view."""
    img = fleet.image("app/api", "1.0", findings, digest=digest)
    use = img.uses[0]
    rt = RuntimeContext(
        clusters=clusters,
        services=services,
        running_tasks=tasks,
        running_digests=(digest,),
        tag_digest=tag_digest or digest,
        first_seen_running=NOW - timedelta(days=40),
        last_seen_running=NOW + timedelta(hours=seen),
        in_use_count=tasks,
        last_in_use_at=NOW + timedelta(hours=seen),
        coverage_at_risk=at_risk,
    )
    return replace(
        img,
        ref=parse_image(f"{fleet.REGISTRY}/app/api:1.0@{digest}"),
        uses=[
            ImageUse(
                use.family, use.revision, use.container, use.task_definition_arn, use.region, tasks=tasks
            )
        ],
        runtime=rt,
        redeploy_needed=redeploy,
    )


def _after(action: PlannedAction, ticket: ExistingTicket) -> ExistingTicket:
    """The ticket once `action` was carried out (description rewritten, property stored)."""
    if action.prop is None:
        return ticket
    return replace(ticket_from(action), key=ticket.key, labels=ticket.labels)


def _run(images: list[ImageResult], tickets: list[ExistingTicket], hours: int, **kw: Any) -> PlannedAction:
    (action,) = plan(images, tickets, now=NOW + timedelta(hours=hours), **kw)
    return action


@pytest.mark.parametrize("group_by", ["repository", "image"])
def test_tag_moved_to_a_clean_digest_keeps_the_ticket_open_until_the_tasks_are_replaced(
    group_by: str,
) -> None:
    spec = spec_with(groupBy=group_by)
    create = _run([running(V1, [HIGH])], [], 0, spec=spec)
    assert create.action is Action.CREATE
    ticket = ticket_from(create)

    # The tag moved to a clean v2; the tasks still run v1.
    moved = _run([running(V1, [HIGH], tag_digest=V2, redeploy=True)], [ticket], 24, spec=spec)
    assert moved.action is Action.UPDATE
    assert moved.reason.startswith("redeploy needed")
    assert moved.fields.description is not None
    assert moved.fields.description.startswith("*Redeploy needed:*")
    assert V2 in moved.fields.description and V1 in moved.fields.description
    assert moved.comment is not None and "redeploy needed" in moved.comment
    assert moved.prop is not None and moved.prop.redeploy
    ticket = _after(moved, ticket)

    # Nothing redeployed yet: said once, no churn - though the task count and "last seen" moved.
    again = _run(
        [running(V1, [HIGH], tag_digest=V2, redeploy=True, tasks=5, seen=48)], [ticket], 48, spec=spec
    )
    assert again.action is Action.UNCHANGED

    # The tasks were replaced: v2 runs, nothing affected runs -> closed as fixed.
    fixed = _run([running(V2, [])], [ticket], 72, spec=spec)
    assert (fixed.action, fixed.reason, fixed.ticket) == (Action.CLOSE, "all findings fixed", ticket.key)
    assert fixed.comment is not None and "redeployed" in fixed.comment


def test_no_findings_read_while_an_affected_digest_runs_is_never_a_fix() -> None:
    ticket = ticket_from(_run([running(V1, [HIGH])], [], 0))
    assert ticket.prop is not None
    # However the results came to show no finding (e.g. only the tag's digest was read), the
    # running view says the affected digest runs: the ticket is not closed.
    for redeploy_ticket in (ticket, replace(ticket, prop=replace(ticket.prop, redeploy=True))):
        action = _run([running(V1, [], tag_digest=V2, redeploy=True)], [redeploy_ticket], 24)
        assert action.action is Action.UNCHANGED
        assert "still use an affected digest" in action.reason


def test_rollout_half_done_keeps_the_ticket_open() -> None:
    ticket = ticket_from(_run([running(V1, [HIGH])], [], 0))
    both = [running(V1, [HIGH], tag_digest=V2, redeploy=True), running(V2, [], tasks=1)]
    action = _run(both, [ticket], 24)
    assert action.action is Action.UPDATE and action.fields.description is not None
    assert action.fields.description.startswith("*Redeploy needed:*")


def test_the_description_shows_where_it_runs_and_escapes_names() -> None:
    hostile = ("svc|[evil]{x}", "*bold*")
    img = running(V1, [HIGH], services=hostile, clusters=("prod_[1]",), at_risk=True)
    (create,) = plan([img], [])
    text = create.fields.description
    assert text is not None
    assert "h3. Where it runs" in text
    assert "svc\\|\\[evil\\]\\{x\\}" in text and "\\*bold\\*" in text and "prod\\_\\[1\\]" in text
    assert "2025-01-29 06:00 UTC" in text  # first seen running (40 days before NOW)
    assert "Coverage at risk" in text
    assert "|3|" in text  # running tasks
    assert not text.startswith("*Redeploy needed:*")  # the tag still points at what runs


def test_without_a_running_view_the_text_and_fingerprint_are_as_before() -> None:
    plain = fleet.image("app/api", "1.0", [HIGH])
    (create,) = plan([plain], [])
    assert create.fields.description is not None
    assert "Where it runs" not in create.fields.description
    assert create.prop is not None and "redeploy" not in create.prop.to_json()
    ticket = ticket_from(create)
    (same,) = plan([plain], [ticket])
    assert same.action is Action.UNCHANGED


def test_the_redeploy_banner_escapes_what_it_names_and_stays_within_the_budget() -> None:
    hostile = tuple(f"svc{i}|[x]{{y}}*z*" for i in range(30))
    images = [
        running(f"sha256:{i:064x}", [HIGH], tag_digest=V2, redeploy=True, services=hostile)
        for i in range(1, 400)
    ]
    (create,) = plan(images, [])
    text = create.fields.description
    assert text is not None and text.startswith("*Redeploy needed:*")
    assert "svc0\\|\\[x\\]\\{y\\}\\*z\\*" in text and "svc0|[x]" not in text
    assert "and 25 more" in text  # services named: the first five
    assert len(text) <= 32_000
