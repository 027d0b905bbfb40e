"""Severity threshold and suppressions. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from fnmatch import fnmatchcase

from ecs_scan_operator.core.model import Finding, ImageRef, Severity
from ecs_scan_operator.core.policy import Suppression


def meets_threshold(severity: Severity, threshold: Severity, *, include_untriaged: bool) -> bool:
    """True when a finding of `severity` needs action under `threshold`."""
    if severity is Severity.UNTRIAGED:
        return include_untriaged
    return severity.rank >= threshold.rank


def severities_at_or_above(threshold: Severity, *, include_untriaged: bool) -> list[Severity]:
    """The severities a findings query must ask for, most severe first."""
    out: list[Severity] = [s for s in Severity if s is not Severity.UNTRIAGED and s.rank >= threshold.rank]
    out.sort(key=lambda s: -s.rank)
    if include_untriaged:
        out.append(Severity.UNTRIAGED)
    return out


def image_matches(ref: ImageRef, globs: Sequence[str]) -> bool:
    """An empty glob list matches every image; a glob may name the repository, repo:tag or the raw ref."""
    if not globs:
        return True
    names = {ref.raw, ref.repository, ref.display}
    if ref.tag:
        names.add(f"{ref.repository}:{ref.tag}")
    return any(fnmatchcase(n, g) for g in globs for n in names)


@dataclass(frozen=True)
class RuleOutcome:
    """Findings split by what the rules decided."""

    actionable: list[Finding]
    suppressed: list[tuple[Finding, str]]
    expired_used: frozenset[str]  # vulnerability ids whose only matching suppression has expired


def apply_rules(
    findings: Iterable[Finding],
    ref: ImageRef,
    suppressions: Sequence[Suppression],
    threshold: Severity,
    *,
    include_untriaged: bool,
    today: date,
    act: Callable[[Finding], bool] | None = None,
) -> RuleOutcome:
    """Threshold (or `act`, spec.actOn's test) first, then suppressions (a suppression expires at
    the end of its `expires` day)."""
    actionable: list[Finding] = []
    suppressed: list[tuple[Finding, str]] = []
    expired_used: set[str] = set()
    relevant = [s for s in suppressions if image_matches(ref, s.images)]
    for f in findings:
        if act is not None:
            if not act(f):
                continue
        elif not meets_threshold(f.severity, threshold, include_untriaged=include_untriaged):
            continue
        matching = [s for s in relevant if s.vulnerability_id == f.vulnerability_id]
        active = [s for s in matching if s.expires >= today]
        if active:
            suppressed.append((f, active[0].reason))
            continue
        if matching:
            expired_used.add(f.vulnerability_id)
        actionable.append(f)
    actionable.sort(key=lambda f: (f.severity.position, f.vulnerability_id))
    return RuleOutcome(actionable, suppressed, frozenset(expired_used))


def expired_suppressions(suppressions: Sequence[Suppression], today: date) -> list[Suppression]:
    """Suppressions past their date: they no longer apply and the report lists them."""
    return [s for s in suppressions if s.expires < today]
