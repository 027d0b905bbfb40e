"""The `ecsscan` issue property and the findings fingerprint (core/tickets/property.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecs_scan_operator.core.model import Severity
from ecs_scan_operator.core.tickets.property import (
    PROPERTY_LIMIT,
    FindingRow,
    TicketProperty,
    TicketState,
    fingerprint,
)

ROWS = [
    FindingRow("CVE-2024-1", "openssl", Severity.HIGH),
    FindingRow("CVE-2024-2", "zlib", Severity.CRITICAL),
]


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (ROWS, list(reversed(ROWS)), True),  # order does not matter
        (ROWS, [*ROWS, ROWS[0]], True),  # neither do repeats
        (ROWS, ROWS[:1], False),
        (ROWS, [FindingRow("CVE-2024-1", "openssl", Severity.MEDIUM), ROWS[1]], False),  # severity counts
        ([], [], True),
    ],
)
def test_fingerprint(left: list[FindingRow], right: list[FindingRow], equal: bool) -> None:
    assert (fingerprint(left) == fingerprint(right)) is equal


def _prop(**kw: Any) -> TicketProperty:
    base: dict[str, Any] = {
        "key": "payments/prod-scan/default/g",
        "route": "default",
        "group": "g",
        "fp": fingerprint(ROWS),
        "content": "c",
        "findings": tuple(ROWS),
        "images": {"abc": (0, 1)},
        "priority": "High",
        "run_id": "run-1",
    }
    return TicketProperty(**{**base, **kw})


def test_property_round_trip() -> None:
    prop = _prop()
    doc = prop.to_json()
    assert doc["key"] == prop.key and doc["fp"] == prop.fp
    assert doc["findings"] == [["CVE-2024-1", "openssl", "HIGH"], ["CVE-2024-2", "zlib", "CRITICAL"]]
    again = TicketProperty.from_json(json.loads(json.dumps(doc)))
    assert again == prop
    assert again is not None and again.rows_of("abc") == tuple(ROWS)
    assert again.rows_of("missing") == ()


@pytest.mark.parametrize(
    "value",
    [
        None,
        "text",
        3,
        [],
        {},
        {"v": 2, "key": "k"},
        {"v": 1},
        {"v": 1, "key": "k", "route": "r", "group": "g"},
    ],
)
def test_foreign_property_values_are_ignored(value: Any) -> None:
    assert TicketProperty.from_json(value) is None


def test_property_stays_under_jiras_limit() -> None:
    rows = tuple(FindingRow(f"CVE-2024-{i:05d}", f"package-{i}" * 3, Severity.HIGH) for i in range(3000))
    prop = _prop(findings=rows, images={f"img{i}": tuple(range(3000)) for i in range(3)})
    doc = prop.to_json()
    assert len(json.dumps(doc)) <= PROPERTY_LIMIT
    assert doc["truncated"] is True
    assert doc["fp"] == prop.fp  # the fingerprint still covers everything
    assert doc["images"] == {}


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"CVE-20[0-9]{2}-[0-9]{4,6}", fullmatch=True),
            st.text(min_size=0, max_size=20),
            st.sampled_from(list(Severity)),
        ),
        max_size=30,
    )
)
def test_property_survives_any_findings(rows: list[tuple[str, str, Severity]]) -> None:
    prop = _prop(findings=tuple(FindingRow(*r) for r in rows), images={})
    again = TicketProperty.from_json(json.loads(json.dumps(prop.to_json())))
    assert again is not None
    assert again.findings == prop.findings


def _stored(**kw: Any) -> dict[str, Any]:
    doc = _prop().to_json()
    doc.update(kw)
    return {k: v for k, v in doc.items() if v is not ...}


@pytest.mark.parametrize(
    ("stored", "check"),
    [
        # Left out or null by an older writer or a hand edit: the defaults.
        (_stored(content=None, runId=None, findings=None, images=None), "defaults"),
        (_stored(content=..., runId=..., findings=..., images=..., truncated=..., monitored=...), "defaults"),
        (_stored(state=None), "open"),
        (_stored(state="reopening"), "open"),  # a state this version does not know
        (_stored(state=["retired"]), "open"),
        (_stored(state="retired"), "retired"),
    ],
)
def test_property_fills_in_what_is_missing(stored: dict[str, Any], check: str) -> None:
    got = TicketProperty.from_json(stored)
    assert got is not None
    if check == "defaults":
        assert (got.content, got.run_id, got.findings, dict(got.images)) == ("", "", (), {})
        assert got.monitored and not got.truncated
    else:
        assert got.state is TicketState(check)


def test_property_indexes_past_the_findings_are_dropped() -> None:
    got = TicketProperty.from_json(_stored(images={"abc": [0, 1, 2, -1, 99], "def": ["1"]}))
    assert got is not None
    assert dict(got.images) == {"abc": (0, 1), "def": (1,)}


def test_property_numbers_read_as_text() -> None:
    got = TicketProperty.from_json(_stored(group=42, findings=[["CVE-1", 7, "HIGH"]]))
    assert got is not None and got.group == "42" and got.findings[0].package == "7"


@pytest.mark.parametrize(
    "broken",
    [
        {"key": None},
        {"key": ["a"]},
        {"fp": {"x": 1}},
        {"findings": [["CVE-1", "pkg"]]},  # not a triple
        {"findings": "CVE-1"},
        {"images": ["abc"]},
        {"images": {"abc": ["x"]}},
        {"monitored": "perhaps"},
        {"v": "1"},
    ],
)
def test_property_of_the_wrong_shape_is_not_ours(broken: dict[str, Any]) -> None:
    assert TicketProperty.from_json(_stored(**broken)) is None


def test_an_unknown_severity_reads_as_untriaged() -> None:
    got = TicketProperty.from_json(_stored(findings=[["CVE-1", "pkg", "SEVERE"]]))
    assert got is not None and got.findings[0].severity is Severity.UNTRIAGED
