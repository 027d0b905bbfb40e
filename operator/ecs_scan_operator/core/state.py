"""What one run leaves for the next: revision cache, listing sizes, previous findings. Pure.

Task-definition revisions are immutable, so their containers are cached by revision ARN; the
state object lives beside the reports (`<prefix>/state/<ns>/<policy>.json`) so a restarted
operator keeps it. It is bounded by the fleet (entries not seen in a run are dropped).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ecs_scan_operator.core.model import ContainerImage, TaskDefinitionImages

STATE_VERSION = 1


@dataclass
class RevisionCache:
    """Task-definition revisions by ARN, plus listing sizes seen per region (to pick the cheaper listing)."""

    by_arn: dict[str, TaskDefinitionImages] = field(default_factory=dict)
    listing: dict[str, dict[str, int]] = field(default_factory=dict)  # region -> {families, activeRevisions}
    used: set[str] = field(default_factory=set)  # ARNs used in this run (kept on save)

    def get(self, arn: str) -> TaskDefinitionImages | None:
        """A cached revision, marked as used."""
        td = self.by_arn.get(arn)
        if td is not None:
            self.used.add(arn)
        return td

    def put(self, td: TaskDefinitionImages) -> None:
        """Remember a described revision."""
        self.by_arn[td.arn] = td
        self.used.add(td.arn)


@dataclass
class RunState:
    """Everything persisted between runs of one policy."""

    cache: RevisionCache = field(default_factory=RevisionCache)
    findings: dict[str, list[str]] = field(default_factory=dict)  # image display -> finding ids last run
    last_run_id: str = ""
    # notification destination -> {image + finding: "o" open / "f" fixed}: what it was last told
    notified: dict[str, dict[str, str]] = field(default_factory=dict)


def _td_to_json(td: TaskDefinitionImages) -> dict[str, Any]:
    return {
        "family": td.family,
        "revision": td.revision,
        "region": td.region,
        "containers": [[c.name, c.image] for c in td.containers],
        "tags": [list(t) for t in td.tags],
    }


def dump_state(state: RunState, run_id: str, findings: Mapping[str, Iterable[str]]) -> bytes:
    """Serialize the state to keep: revisions used in this run, this run's findings."""
    data = {
        "version": STATE_VERSION,
        "lastRunId": run_id,
        "listing": state.cache.listing,
        "revisions": {
            arn: _td_to_json(td) for arn, td in sorted(state.cache.by_arn.items()) if arn in state.cache.used
        },
        "findings": {k: sorted(set(v)) for k, v in sorted(findings.items())},
    }
    if state.notified:  # absent when unused: older readers and states stay byte-identical
        data["notified"] = {d: dict(sorted(m.items())) for d, m in sorted(state.notified.items())}
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def load_state(raw: bytes | None) -> RunState:
    """Parse a stored state; an absent, unreadable or other-version state starts empty (never fatal)."""
    if not raw:
        return RunState()
    try:
        data = json.loads(raw)
        if data.get("version") != STATE_VERSION:
            return RunState()
        cache = RevisionCache(
            by_arn={
                arn: TaskDefinitionImages(
                    arn=arn,
                    family=sys.intern(str(v["family"])),
                    revision=int(v["revision"]),
                    region=str(v.get("region", "")),
                    # Interned: thousands of revisions repeat the same container names and images.
                    containers=tuple(
                        ContainerImage(sys.intern(str(n)), sys.intern(str(i))) for n, i in v["containers"]
                    ),
                    tags=tuple((str(k), str(val)) for k, val in v.get("tags", [])),
                )
                for arn, v in data.get("revisions", {}).items()
            },
            listing={
                str(r): {str(k): int(n) for k, n in d.items()} for r, d in data.get("listing", {}).items()
            },
        )
        findings = {str(k): [str(x) for x in v] for k, v in data.get("findings", {}).items()}
        notified = {
            str(d): {str(k): str(v) for k, v in m.items()} for d, m in data.get("notified", {}).items()
        }
        return RunState(
            cache=cache, findings=findings, last_run_id=str(data.get("lastRunId", "")), notified=notified
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return RunState()
