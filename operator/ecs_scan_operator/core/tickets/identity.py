"""Who a ticket is: its dedup key and the labels JQL finds it by. Pure.

A ticket's identity is the key `namespace/policy/route/group`. It is stored twice on the ticket:
as the label `ecsscan-<first 16 hex of sha256(key)>` (JQL can look labels up exactly, across all
statuses) and inside the issue property `ecsscan` (see property.py). Two more labels scope
searches: one per policy and one per route, so that one search per route finds every open ticket
of that route, including those whose group vanished. This module is the only place that knows
the label format.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ecs_scan_operator.core.policy import PolicyRef

LABEL_PREFIX = "ecsscan-"
_HEX_LEN = 16
_DEDUP_LABEL = re.compile(rf"{re.escape(LABEL_PREFIX)}[0-9a-f]{{{_HEX_LEN}}}")


def short_hash(text: str, n: int = _HEX_LEN) -> str:
    """The first `n` hex digits of sha256(text): short, stable names."""
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def dedup_key(policy: PolicyRef, route: str, group: str) -> str:
    """The full identity of one ticket: `namespace/policy/route/group`."""
    return f"{policy.namespace}/{policy.name}/{route}/{group}"


def dedup_label(key: str) -> str:
    """`ecsscan-<first 16 hex of sha256(key)>`: the label JQL looks a ticket up by."""
    return f"{LABEL_PREFIX}{short_hash(key)}"


def policy_label(policy: PolicyRef) -> str:
    """A label on every ticket of one policy (finds tickets of routes that were removed)."""
    return f"{LABEL_PREFIX}policy-{short_hash(policy.key)}"


def route_label(policy: PolicyRef, route: str) -> str:
    """A label on every ticket of one route of one policy (finds its open tickets in one search)."""
    return f"{LABEL_PREFIX}route-{short_hash(f'{policy.key}/{route}')}"


def is_dedup_label(label: str) -> bool:
    """True for a label of the dedup form (not a policy or route label, not a person's label)."""
    return _DEDUP_LABEL.fullmatch(label) is not None


def find_dedup_label(labels: Iterable[str]) -> str:
    """The first dedup label among `labels`, or "" when a person removed it."""
    return next((lb for lb in labels if is_dedup_label(lb)), "")


def image_slot(raw_ref: str) -> str:
    """A short, stable name for one image reference inside the property."""
    return short_hash(raw_ref, 12)


@dataclass(frozen=True)
class TicketIdentity:
    """The key and the three machine labels of one (policy, route, group): computed once."""

    key: str
    label: str  # the dedup label
    route_label: str
    policy_label: str

    @classmethod
    def of(cls, policy: PolicyRef, route: str, group: str) -> TicketIdentity:
        """The identity of the ticket of `group` in `route` of `policy`."""
        key = dedup_key(policy, route, group)
        return cls(key, dedup_label(key), route_label(policy, route), policy_label(policy))

    @property
    def labels(self) -> tuple[str, str, str]:
        """The labels the tool keeps on the ticket: dedup, route, policy."""
        return (self.label, self.route_label, self.policy_label)
