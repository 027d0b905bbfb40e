"""A ticket's identity: the dedup key and the labels JQL finds it by (core/tickets/identity.py)."""

from __future__ import annotations

import hashlib
import re

import pytest

from ecs_scan_operator.core.policy import PolicyRef
from ecs_scan_operator.core.tickets.identity import (
    TicketIdentity,
    dedup_key,
    dedup_label,
    find_dedup_label,
    is_dedup_label,
    policy_label,
    route_label,
)

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


def test_identity_is_the_key_and_the_three_labels() -> None:
    ident = TicketIdentity.of(POLICY, "team-a", "g")
    assert ident.key == dedup_key(POLICY, "team-a", "g")
    assert ident.labels == (dedup_label(ident.key), route_label(POLICY, "team-a"), policy_label(POLICY))
    assert ident.label == ident.labels[0]


@pytest.mark.parametrize(
    ("labels", "found"),
    [
        ((dedup_label("k"),), dedup_label("k")),
        (("security", route_label(POLICY, "r"), dedup_label("k")), dedup_label("k")),
        # Scope labels, a person's label with the prefix, and near misses are not dedup labels.
        ((policy_label(POLICY), route_label(POLICY, "r")), ""),
        (("ecsscan-0123456789ABCDEF", "ecsscan-0123456789abcde", "ecsscan-0123456789abcdef0"), ""),
        (("xecsscan-0123456789abcdef",), ""),
        ((), ""),
    ],
)
def test_find_dedup_label(labels: tuple[str, ...], found: str) -> None:
    assert find_dedup_label(labels) == found
    assert all(is_dedup_label(lb) == (lb == found) for lb in labels)
