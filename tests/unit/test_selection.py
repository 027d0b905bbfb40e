"""core/selection.py: which task-definition families a policy selects, and the prefix to list them by."""

from __future__ import annotations

import pytest

from ecs_scan_operator.core.selection import exact_family, literal_prefix, select_families


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ([], [], ["a-x", "b-y", "b-y-sandbox", "c"]),
        (["b-*"], [], ["b-y", "b-y-sandbox"]),
        (["b-*"], ["*-sandbox"], ["b-y"]),
        (["a-?", "c"], [], ["a-x", "c"]),
        (["[ab]-*"], ["b-*"], ["a-x"]),
        (["z*"], [], []),
    ],
)
def test_select_families(include: list[str], exclude: list[str], expected: list[str]) -> None:
    assert select_families(["c", "b-y", "a-x", "b-y-sandbox", "a-x"], include, exclude) == expected


@pytest.mark.parametrize(
    ("include", "prefix", "exact"),
    [
        ([], "", None),
        (["payments-*"], "payments-", None),
        (["pay-a*", "pay-b*"], "pay-", None),
        (["web"], "web", "web"),
        (["a*", "b*"], "", None),
        (["x?y"], "x", None),
    ],
)
def test_prefixes(include: list[str], prefix: str, exact: str | None) -> None:
    assert literal_prefix(include) == prefix
    assert exact_family(include) == exact
