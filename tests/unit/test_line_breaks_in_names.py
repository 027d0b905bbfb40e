"""Names checked with an anchored regex must match whole: `$` in Python also matches before a
final newline, so every check uses fullmatch. The class: every line-break tail on every kind of
name a manifest carries that is not stripped first."""

from __future__ import annotations

from typing import Any

import pytest

from ecs_scan_operator.core.grants import parse_grant
from ecs_scan_operator.core.policy import parse_document
from ecs_scan_operator.errors import InvalidPolicy

TAILS = ["\n", "\r\n", "\n\n"]
SPEC = {"schedule": "@daily", "aws": {"region": "us-east-1"}, "report": {"s3": {"bucket": "reports"}}}


def policy(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": SPEC,
    }


def test_the_clean_names_pass() -> None:
    ref, _ = parse_document(policy("nightly", "team-a"))
    assert (ref.namespace, ref.name) == ("team-a", "nightly")


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("field", ["metadata.name", "metadata.namespace"])
def test_a_policy_name_with_a_line_break_is_refused(field: str, tail: str) -> None:
    name, namespace = (
        ("nightly" + tail, "team-a") if field == "metadata.name" else ("nightly", "team-a" + tail)
    )
    with pytest.raises(InvalidPolicy) as err:
        parse_document(policy(name, namespace))
    assert [e.path for e in err.value.errors] == [field]


@pytest.mark.parametrize("tail", TAILS)
def test_a_grant_name_with_a_line_break_is_refused(tail: str) -> None:
    doc = {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanAccessGrant",
        "metadata": {"name": "team-a" + tail},
        "spec": {"namespaces": {"names": ["team-a"]}},
    }
    with pytest.raises(InvalidPolicy) as err:
        parse_grant(doc)
    assert [e.path for e in err.value.errors] == ["metadata.name"]
