"""The per-policy run lease: its document and the decision to take, refuse or steal it. Pure.

One run of a policy at a time, across processes, clusters and the CLI: the lease is an object
beside the state (`<prefix>/state/<namespace>/<policy>.lease`) written with S3 conditional
writes. The rules:

- absent: take it (create only if absent, `If-None-Match: *`);
- held and not expired: refuse; the run writes nothing and says who holds it since when;
- expired, or unreadable (not a lease document we know): steal it (replace only if unchanged,
  `If-Match` on the ETag read), so a crashed holder blocks nobody for long;
- the holder renews it every `RENEW_EVERY_SECONDS` (`If-Match` on its own last ETag) and
  releases it at the end (delete, `If-Match`). A renewal that finds another ETag means the
  lease was broken or stolen: the holder stops at its next checkpoint and writes no state.

A lease lasts `LEASE_TTL_SECONDS` past its last renewal, but never past the run's deadline plus
`DEADLINE_GRACE_SECONDS`: a process hung past its deadline loses it even while it renews.
Expiry is read against the reader's clock, so clocks of the machines sharing a bucket should
agree to well under the TTL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ecs_scan_operator.core.schedule import format_time

LEASE_VERSION = 1
#: How long a lease outlives its last renewal (how long a crashed holder blocks others at most).
LEASE_TTL_SECONDS = 300
#: How often the holder renews: several renewals may fail before the lease lapses.
RENEW_EVERY_SECONDS = 60
#: Past the run's deadline the lease lasts only this much longer (the final writes).
DEADLINE_GRACE_SECONDS = 120


@dataclass(frozen=True)
class LeaseRecord:
    """The lease document: which run holds the policy, from where, since when, until when."""

    policy: str
    run_id: str
    holder: str  # host:pid, for a person reading it
    started: datetime
    renewed: datetime
    expires: datetime

    def to_json(self) -> bytes:
        """The stored form (camelCase JSON)."""
        doc = {
            "version": LEASE_VERSION,
            "policy": self.policy,
            "runId": self.run_id,
            "holder": self.holder,
            "started": format_time(self.started),
            "renewed": format_time(self.renewed),
            "expires": format_time(self.expires),
        }
        return json.dumps(doc, sort_keys=True).encode()

    def describe(self) -> str:
        """`since <time> (run <id>)`, the tail of the refusal message."""
        return f"since {format_time(self.started)} (run {self.run_id})"


def load_lease(raw: bytes) -> LeaseRecord | None:
    """Parse a stored lease; None when it is not a lease document of this version."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != LEASE_VERSION:
            return None
        return LeaseRecord(
            policy=str(doc["policy"]),
            run_id=str(doc["runId"]),
            holder=str(doc.get("holder", "")),
            started=_time(doc["started"]),
            renewed=_time(doc["renewed"]),
            expires=_time(doc["expires"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _time(value: object) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("naive time")
    return parsed


def expiry(now: datetime, deadline: datetime) -> datetime:
    """When a lease taken or renewed at `now` lapses, for a run that must end by `deadline`."""
    ttl = now + timedelta(seconds=LEASE_TTL_SECONDS)
    return min(ttl, deadline + timedelta(seconds=DEADLINE_GRACE_SECONDS))


def new_lease(policy: str, run_id: str, holder: str, now: datetime, deadline: datetime) -> LeaseRecord:
    """The document a run writes to take the lease."""
    return LeaseRecord(policy, run_id, holder, now, now, expiry(now, deadline))


def renewed(lease: LeaseRecord, now: datetime, deadline: datetime) -> LeaseRecord:
    """The document a holder writes to renew."""
    return LeaseRecord(lease.policy, lease.run_id, lease.holder, lease.started, now, expiry(now, deadline))


class Action(StrEnum):
    """What to do about the lease found."""

    TAKE = "take"  # absent: create it only if still absent
    REFUSE = "refuse"  # held by a live run
    STEAL = "steal"  # expired or unreadable: replace it only if unchanged


@dataclass(frozen=True)
class Decision:
    """The action and the lease it is about (None when absent or unreadable)."""

    action: Action
    current: LeaseRecord | None = None
    reason: str = ""


def decide(present: bool, current: LeaseRecord | None, *, now: datetime) -> Decision:
    """Take, refuse or steal, from what the lease object holds (`present`, parsed as `current`)."""
    if not present:
        return Decision(Action.TAKE, None, "no lease")
    if current is None:
        return Decision(Action.STEAL, None, "the lease object is not a lease this version reads")
    if now >= current.expires:
        return Decision(
            Action.STEAL,
            current,
            f"the lease of run {current.run_id} ({current.holder}) expired at {format_time(current.expires)}",
        )
    return Decision(Action.REFUSE, current, f"held {current.describe()}")


def refusal_message(policy: str, current: LeaseRecord) -> str:
    """The one line a refused run says (CLI stderr, status, Event)."""
    return f"another run of {policy} holds the lease {current.describe()}"
