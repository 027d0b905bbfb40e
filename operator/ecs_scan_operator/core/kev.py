"""CISA Known Exploited Vulnerabilities, as Amazon Inspector's SearchVulnerabilities tells them. Pure.

SearchVulnerabilities takes one CVE per call (the model's `vulnerabilityIds` has min 1, max 1 and
the pattern CVE-[12][0-9]{3}-[0-9]{1,10}), so a run asks only for the distinct CVEs of its
ENHANCED findings, and only for those its cache does not hold yet or holds past the TTL
(`ECS_SCAN_AWS_KEV_TTL_HOURS`, default 48). The cache lives in the policy's state object (it
survives restarts), is bounded (`MAX_ENTRIES`, the oldest lookups dropped first) and keeps only
CVEs still found.
An answer without the CVE means "Inspector does not know it": kept as unknown (None), not "no".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from ecs_scan_operator.core.model import Finding

CVE_RE = re.compile(r"^CVE-[12][0-9]{3}-[0-9]{1,10}$")
MAX_ENTRIES = 50_000


@dataclass(frozen=True, slots=True)  # thousands cached per policy
class KevEntry:
    """What SearchVulnerabilities said about one CVE, and when it was asked."""

    checked_at: datetime
    kev: bool | None  # cisaData present; None: the CVE is unknown to Inspector
    date_added: date | None = None
    date_due: date | None = None
    action: str = ""
    exploit_observed_at: datetime | None = None  # exploitObserved.lastSeen
    epss: float | None = None  # epss.score (ECR's enhancedFindings carry none)


@dataclass
class KevLookup:
    """One run's SearchVulnerabilities answers, and what failed (the rest of the run goes on)."""

    entries: dict[str, KevEntry] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # at most a few messages
    causes: list[str] = field(default_factory=list)  # "inspector2:SearchVulnerabilities Code" per failure
    calls: int = 0


def lookup_ids(vulnerability_ids: Iterable[str]) -> list[str]:
    """The distinct ids SearchVulnerabilities accepts (CVEs), sorted."""
    return sorted({v for v in vulnerability_ids if CVE_RE.match(v)})


def stale(cache: Mapping[str, KevEntry], ids: Iterable[str], now: datetime, ttl: timedelta) -> list[str]:
    """The ids to ask for: not cached, or cached longer ago than `ttl` (or in the future)."""
    out = []
    for vid in ids:
        entry = cache.get(vid)
        if entry is None or not (now - ttl < entry.checked_at <= now):
            out.append(vid)
    return out


def bounded(cache: Mapping[str, KevEntry], keep: Iterable[str]) -> dict[str, KevEntry]:
    """The cache to store: only the CVEs in `keep` (found this run), newest MAX_ENTRIES lookups."""
    wanted = set(keep)
    items = sorted(
        ((k, v) for k, v in cache.items() if k in wanted), key=lambda kv: (kv[1].checked_at, kv[0])
    )
    return dict(items[-MAX_ENTRIES:])


def with_kev(f: Finding, entry: KevEntry | None) -> Finding:
    """`f` with the KEV signals of `entry` (EPSS and an observed exploit fill gaps, never override)."""
    if entry is None:
        return f
    s = f.signals
    exploit = s.exploit_available
    if entry.exploit_observed_at is not None or entry.kev:
        exploit = True  # observed in the wild, or on CISA's list: an exploit exists
    signals = replace(
        s,
        kev=entry.kev,
        kev_date_added=entry.date_added,
        kev_date_due=entry.date_due,
        kev_action=entry.action,
        epss=s.epss if s.epss is not None else entry.epss,
        exploit_available=exploit,
        last_known_exploit_at=s.last_known_exploit_at or entry.exploit_observed_at,
    )
    return replace(f, signals=signals)
