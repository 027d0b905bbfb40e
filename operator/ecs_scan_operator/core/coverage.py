"""CoverageAtRisk: when Amazon Inspector has stopped re-scanning a digest that still runs. Pure.

Inspector re-scans an ECR image continuously (new CVEs against its packages) only for a window
set per account and region, read with inspector2 `GetConfiguration`:
`ecrConfiguration.rescanDurationState`:

- `rescanDuration` (since the image was pushed): `LIFETIME` or `DAYS_n`;
- `pullDateRescanDuration` (since it was last pulled, or last in use): `DAYS_n`;
- `pullDateRescanMode`: `LAST_PULL_DATE` or `LAST_IN_USE_AT`.

Past both windows the image becomes inactive and its findings are closed: a digest that runs
for months may then show "no findings" that are only stale. The rules (`at_risk`):

- only a digest the running view saw running, with a known "first seen running";
- the push window is exceeded when the digest has run for at least `rescanDuration` (it was
  pushed before it ran); `LIFETIME` never is;
- the pull window: with `LAST_IN_USE_AT`, exceeded when Inspector's `lastInUseAt` (else the first
  time seen running) is older than `pullDateRescanDuration`; with `LAST_PULL_DATE` (or no mode),
  when the digest has run for at least that long, since tasks that keep running pull nothing;
  no pull window set: only the push window counts;
- at risk when both windows are exceeded; an unknown setting says nothing (not at risk).

"First seen running" is when this policy's runs first saw the digest run (the state object), a
lower bound of how long it has run: a digest that ran before the policy existed is flagged late,
never early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ecs_scan_operator.core.model import RuntimeContext

LAST_IN_USE_AT = "LAST_IN_USE_AT"
_DAYS = re.compile(r"DAYS_([0-9]{1,5})")
SETTING = "inspector2 ecrConfiguration.rescanDurationState"


def duration(value: str | None) -> timedelta | None:
    """`DAYS_30` -> 30 days; LIFETIME, None or a value this version does not know -> None (no limit)."""
    m = _DAYS.fullmatch(value or "")
    return timedelta(days=int(m.group(1))) if m else None


@dataclass(frozen=True)
class RescanWindow:
    """Inspector's ECR re-scan settings of one account and region."""

    account: str
    region: str
    rescan_duration: str = ""  # LIFETIME | DAYS_n ("" when Inspector returned none)
    pull_date_rescan_duration: str = ""  # DAYS_n
    pull_date_rescan_mode: str = ""  # LAST_PULL_DATE | LAST_IN_USE_AT

    def describe(self) -> str:
        """`rescanDuration=DAYS_30, pullDateRescanDuration=DAYS_14 (LAST_PULL_DATE) in 1234/eu-west-1`."""
        parts = [f"rescanDuration={self.rescan_duration or '?'}"]
        if self.pull_date_rescan_duration:
            mode = f" ({self.pull_date_rescan_mode})" if self.pull_date_rescan_mode else ""
            parts.append(f"pullDateRescanDuration={self.pull_date_rescan_duration}{mode}")
        return f"{', '.join(parts)} in {self.account or '?'}/{self.region or '?'}"


def at_risk(window: RescanWindow | None, runtime: RuntimeContext | None, now: datetime) -> bool:
    """True when the running digest has outlived Inspector's re-scan window (rules above)."""
    if window is None or runtime is None or runtime.first_seen_running is None:
        return False
    push = duration(window.rescan_duration)
    if push is None:
        return False
    running_for = now - runtime.first_seen_running
    if running_for < push:
        return False
    pull = duration(window.pull_date_rescan_duration)
    if pull is None:
        return True
    if window.pull_date_rescan_mode == LAST_IN_USE_AT:
        last = runtime.last_in_use_at or runtime.first_seen_running
        return now - last >= pull
    return running_for >= pull
