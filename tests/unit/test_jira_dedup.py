"""Dedup keys, labels, fingerprints and the `ecsscan` issue property (core/dedup.py)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecs_scan_operator.core.model import Severity
from ecs_scan_operator.core.policy import PolicyRef
from ecs_scan_operator.core.tickets.identity import dedup_key, dedup_label, policy_label, route_label
from ecs_scan_operator.core.tickets.property import PROPERTY_LIMIT, FindingRow, TicketProperty, fingerprint

POLICY = PolicyRef(namespace="payments", name="prod-scan")


def test_key_and_label_follow_the_design() -> None:
    key = dedup_key(POLICY, "default", "123.dkr.ecr.eu-west-1.amazonaws.com/app/api")
    assert key == "payments/prod-scan/default/123.dkr.ecr.eu-west-1.amazonaws.com/app/api"
    assert dedup_label(key) == "ecsscan-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((POLICY, "default", "g"), (POLICY, "team-a", "g")),  # route is part of the identity
        ((POLICY, "default", "g"), (PolicyRef(namespace="other", name="prod-scan"), "default", "g")),
        ((POLICY, "default", "g1"), (POLICY, "default", "g2")),
    ],
)
def test_labels_differ_per_identity(a: tuple[PolicyRef, str, str], b: tuple[PolicyRef, str, str]) -> None:
    assert dedup_label(dedup_key(*a)) != dedup_label(dedup_key(*b))


def test_scope_labels_are_valid_jira_labels() -> None:
    for label in (policy_label(POLICY), route_label(POLICY, "team-a"), dedup_label("x")):
        assert re.fullmatch(r"ecsscan-[a-z-]*[0-9a-f]{16}", label)
        assert " " not in label and len(label) <= 255
    assert route_label(POLICY, "a") != route_label(POLICY, "b")


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
