"""Which task-definition families a policy selects. Pure."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

_GLOB_META = "*?["


def family_selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Empty include means every family; exclude wins over include."""
    if include and not any(fnmatchcase(name, g) for g in include):
        return False
    return not any(fnmatchcase(name, g) for g in exclude)


def select_families(names: Iterable[str], include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """The selected family names, sorted and unique."""
    return sorted({n for n in names if family_selected(n, include, exclude)})


def literal_prefix(include: Sequence[str]) -> str:
    """The longest literal prefix every include glob shares ('' when none): usable as familyPrefix."""
    if not include:
        return ""
    prefixes = []
    for g in include:
        cut = min((g.find(c) for c in _GLOB_META if c in g), default=len(g))
        prefixes.append(g[:cut])
    return os.path.commonprefix(prefixes)  # noqa: RUF071 -- a character prefix is what familyPrefix takes


def exact_family(include: Sequence[str]) -> str | None:
    """The family name when the policy selects exactly one literal family, else None."""
    if len(include) == 1 and not any(c in include[0] for c in _GLOB_META):
        return include[0]
    return None
