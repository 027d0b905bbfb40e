"""Jira's answers read into our types (adapters.jira_wire), by their public names; no server."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from ecs_scan_operator.adapters.jira_wire import (
    Deployment,
    SearchPage,
    UnexpectedAnswer,
    error_reason,
    parse_created_key,
    parse_search_page,
    parse_server_info,
    parse_ticket,
    parse_time,
    parse_transitions,
    pick_resolution,
    pick_transition,
    retry_after,
)
from ecs_scan_operator.core.tickets import JiraWorkflow

NOW = datetime(2025, 1, 1, tzinfo=UTC)


TRANSITIONS = [
    {"id": "11", "to": {"name": "To Do", "statusCategory": {"key": "new"}}},
    {"id": "21", "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}},
    {"id": "41", "to": {"name": "Won't Fix", "statusCategory": {"key": "done"}}},
    {
        "id": "31",
        "to": {"name": "Done", "statusCategory": {"key": "done"}},
        "fields": {
            "resolution": {"allowedValues": [{"name": "Done"}, {"name": "Won't Do"}, {"name": "Fixed"}]}
        },
    },
]


@pytest.mark.parametrize(
    ("options", "which", "want"),
    [
        (TRANSITIONS, "close", "31"),
        (TRANSITIONS[2:3], "close", None),  # only a won't-fix target: never used to close as fixed
        (TRANSITIONS, "reopen", "11"),
        (TRANSITIONS[1:], "reopen", "21"),
        (TRANSITIONS[2:], "reopen", None),
    ],
)
def testpick_transition(options: list[dict[str, Any]], which: str, want: str | None) -> None:
    got = pick_transition(options, which, JiraWorkflow())
    assert (got["id"] if got else None) == want


@pytest.mark.parametrize(
    ("allowed", "preferred", "want"),
    [
        (["Done", "Won't Do", "Fixed"], "Fixed", "Fixed"),
        (["Done", "Won't Do"], "Fixed", "Done"),
        (["done", "fixed"], "Fixed", "fixed"),
        (["Won't Do"], "Fixed", None),
        (None, "Fixed", None),  # no resolution on the screen: none sent
    ],
)
def testpick_resolution(allowed: list[str] | None, preferred: str, want: str | None) -> None:
    transition: dict[str, Any] = {"id": "31"}
    if allowed is not None:
        transition["fields"] = {"resolution": {"allowedValues": [{"name": n} for n in allowed]}}
    assert pick_resolution(transition, preferred, JiraWorkflow()) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("2025-01-02T03:04:05.000+0000", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05.000+00:00", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05+0100", datetime(2025, 1, 2, 2, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("garbage", None),
        (None, None),
    ],
)
def testparse_time(value: Any, want: datetime | None) -> None:
    assert parse_time(value) == want


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # an HTTP date in the past
        ("Wed, 01 Jan 2025 00:00:30 GMT", 30.0),  # an HTTP date 30 s after NOW
    ],
)
def test_retry_after(header: str | None, want: float | None) -> None:
    assert retry_after(header, NOW) == want


def test_ticket_from_a_search_hit() -> None:
    hit = {
        "id": "10001",
        "key": "SEC-1",
        "fields": {
            "labels": ["ecsscan-0123456789abcdef"],
            "status": {"name": "Done", "statusCategory": {"key": "done"}},
            "resolution": {"name": "Won't Do"},
            "resolutiondate": "2025-01-02T03:04:05.000+0000",
            "created": "2025-01-01T03:04:05.000+0000",
            "duedate": "2025-02-01",
            "project": {"key": "SEC"},
        },
        "properties": {"ecsscan": {"v": 99}},
    }
    t = parse_ticket(hit)
    assert (t.key, t.status, t.status_category, t.resolution, t.project) == (
        "SEC-1",
        "Done",
        "done",
        "Won't Do",
        "SEC",
    )
    assert t.done and t.duedate == date(2025, 2, 1) and t.resolved is not None
    assert t.prop is None  # a property of another version is not ours to trust
    bare = parse_ticket({"id": "1", "key": "SEC-2", "fields": {}})
    assert bare.status_category == "" and bare.prop is None and bare.resolution is None


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        ({"deploymentType": "Cloud"}, Deployment.CLOUD),
        ({"deploymentType": "Server"}, Deployment.DATA_CENTER),
        ({"deploymentType": "DataCenter"}, Deployment.DATA_CENTER),
        ({}, Deployment.DATA_CENTER),
    ],
)
def test_parse_server_info(doc: dict[str, Any], want: Deployment) -> None:
    assert parse_server_info(doc) is want


HIT = {"id": "1", "key": "SEC-1", "fields": {}}


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        ({"issues": [HIT], "nextPageToken": "t2", "isLast": False}, ("t2", None, False, True)),
        ({"issues": [HIT], "nextPageToken": "t2", "isLast": True}, ("t2", None, True, False)),
        ({"issues": [HIT]}, (None, None, False, False)),
        ({"issues": [HIT], "startAt": 0, "total": 7}, (None, 7, False, False)),
        ({"issues": []}, (None, None, False, False)),
    ],
)
def test_parse_search_page(doc: dict[str, Any], want: tuple[Any, ...]) -> None:
    page = parse_search_page(doc)
    assert isinstance(page, SearchPage)
    assert (page.next_page_token, page.total, page.is_last, page.more) == want
    assert [t.key for t in page.tickets] == [h["key"] for h in doc["issues"]]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (["not", "a", "page"], "a search page is not a JSON object"),
        ("<html>proxy login</html>", "a search page is not a JSON object"),
        ({"issues": {"a": 1}}, "issues are not a list"),
        ({"issues": [{"fields": {}}]}, "not an issue with a key"),
        ({"issues": ["SEC-1"]}, "not an issue with a key"),
    ],
)
def test_a_search_page_of_the_wrong_shape_is_named(doc: Any, message: str) -> None:
    with pytest.raises(UnexpectedAnswer, match=message):
        parse_search_page(doc)


def test_odd_shapes_inside_a_hit_are_tolerated() -> None:
    t = parse_ticket({"key": "SEC-3", "fields": {"status": "Done", "project": None, "labels": None}})
    assert (t.status, t.project, t.labels) == ("", "", ())


@pytest.mark.parametrize(
    ("doc", "want"),
    [({"id": "1", "key": "SEC-9"}, "SEC-9"), ({"id": "1"}, None), (None, None), ([], None)],
)
def test_parse_created_key(doc: Any, want: str | None) -> None:
    assert parse_created_key(doc) == want


def test_parse_transitions() -> None:
    assert parse_transitions({"transitions": [TRANSITIONS[0], "junk"]}) == [TRANSITIONS[0]]
    with pytest.raises(UnexpectedAnswer):
        parse_transitions(["junk"])


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (
            b'{"errorMessages": ["No project"], "errors": {"priority": "invalid"}}',
            "No project; priority: invalid",
        ),
        (b'{"errorMessages": [], "errors": {}}', ""),
        (b"<html>Bad gateway</html>", ""),
        (b"", ""),
        (b"[1, 2]", ""),
    ],
)
def test_error_reason(body: bytes, want: str) -> None:
    assert error_reason(body) == want
