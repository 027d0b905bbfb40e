"""core/model.py: severities as the scanners spell them, and the one severity order."""

from __future__ import annotations

import pytest

from ecs_scan_operator.core.model import SEVERITY_ORDER, Severity

S = Severity


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("UNDEFINED", S.UNTRIAGED), ("high", S.HIGH), (None, S.UNTRIAGED), ("weird", S.UNTRIAGED)],
)
def test_severity_parse(raw: str | None, expected: Severity) -> None:
    assert Severity.parse(raw) is expected


def test_rank_follows_the_one_severity_order() -> None:
    ranked = [s for s in SEVERITY_ORDER if s is not S.UNTRIAGED]
    assert sorted(ranked, key=lambda s: s.rank, reverse=True) == ranked
    assert len({s.rank for s in ranked}) == len(ranked)
    assert set(SEVERITY_ORDER) == set(Severity)
    assert S.UNTRIAGED.rank < S.INFORMATIONAL.rank  # below every threshold; policy lets it in or not
    assert sorted(Severity, key=lambda s: s.position) == list(SEVERITY_ORDER)
