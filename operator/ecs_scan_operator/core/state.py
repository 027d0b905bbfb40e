"""What one run leaves for the next: revision cache, listing sizes, previous findings. Pure.

Task-definition revisions are immutable, so their containers are cached by revision ARN; the
state object lives beside the reports (`<prefix>/state/<ns>/<policy>.json`) so a restarted
operator keeps it. It is bounded by the fleet (entries not seen in a run are dropped).

Trust. The revision cache decides which images are scanned (a cached revision is not described
again), and whoever can write the report bucket can edit the state object. So the state carries an
HMAC-SHA256 over its exact bytes and the policy it belongs to, with a key the bucket does not hold
(`ECS_SCAN_STATE_KEY`: a Secret the chart creates, an environment variable for the CLI). The MAC
leads the object, `{"_mac":"hmac-sha256:<hex>",<the payload's members>}`, so it is checked over the
stored bytes without serialising anything again (a large fleet's state is megabytes):
- key set, MAC valid: the state is used;
- key set, MAC missing, wrong or of another policy: the whole state is ignored (a cold listing, every
  finding "new"), `trust` says why, and the run goes on;
- no key: the revision cache is neither read nor written (every run describes its revisions), the
  listing sizes and last findings, which decide no scan, are used; `trust` says the state is
  unauthenticated.
Signals (issue #13): `kev` caches SearchVulnerabilities answers per CVE with the time asked (core/kev.py
bounds it), and `firstSeen` remembers when each finding (image, vulnerability, package) was first
seen, for its SLA; both are pruned to what the run still found and absent while empty.
A MAC does not stop a writer of the bucket from putting back an older state of the same policy;
revisions are immutable, so an old cache entry is still true, and old findings only change which
findings are marked new.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ecs_scan_operator.core.kev import KevEntry
from ecs_scan_operator.core.model import TaskDefinitionImages, declared_containers

STATE_VERSION = 1
MAC_PREFIX = "hmac-sha256:"
# `_mac` sorts before every payload member, so a MACed state is still canonical, sorted JSON.
_MAC_HEAD = b'{"_mac":"' + MAC_PREFIX.encode()
_MAC_HEX = 64
T = TypeVar("T")
UNAUTHENTICATED = "no state key configured: the revision cache is not used"
# Task-definition tags are mutable (the revision is not): a cached answer is used for this long,
# then DescribeTaskDefinition is asked again. So a tag changed on a revision reaches ticket routing
# at most TD_TAGS_TTL (plus the time to the next run) later.
TD_TAGS_TTL = timedelta(hours=24)


@dataclass
class RevisionCache:
    """Task-definition revisions by ARN, plus listing sizes seen per region (to pick the cheaper listing)."""

    by_arn: dict[str, TaskDefinitionImages] = field(default_factory=dict)
    listing: dict[str, dict[str, int]] = field(default_factory=dict)  # region -> {families, activeRevisions}
    used: set[str] = field(default_factory=set)  # ARNs used in this run (kept on save)
    # source running / the running view: tags of a revision and when they were read (TD_TAGS_TTL)
    tags: dict[str, tuple[datetime, tuple[tuple[str, str], ...]]] = field(default_factory=dict)
    tags_used: set[str] = field(default_factory=set)

    def fresh_tags(self, arn: str, now: datetime) -> tuple[tuple[str, str], ...] | None:
        """The cached tags of a revision read less than TD_TAGS_TTL before `now`, else None."""
        entry = self.tags.get(arn)
        if entry is None or not (now - TD_TAGS_TTL < entry[0] <= now):
            return None
        self.tags_used.add(arn)
        return entry[1]

    def put_tags(self, arn: str, tags: tuple[tuple[str, str], ...], now: datetime) -> None:
        """Remember a revision's tags as read at `now`."""
        self.tags[arn] = (now, tags)
        self.tags_used.add(arn)

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
    # Why the stored state was not (fully) trusted, for the run log; empty when it was, or absent.
    trust: str = ""
    # notification destination -> {image + finding: "o" open / "f" fixed}: what it was last told
    notified: dict[str, dict[str, str]] = field(default_factory=dict)
    # `registry/repository@digest` -> (first, last) seen running (core/runtime.track_running)
    running: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    # CVE -> what SearchVulnerabilities said and when (core/kev.py): read again only past the TTL
    kev: dict[str, KevEntry] = field(default_factory=dict)
    # finding_key(image, vulnerability, package) -> when a run first saw it (the SLA's start)
    first_seen: dict[str, datetime] = field(default_factory=dict)


SEP = "\x1f"
MAX_FIRST_SEEN = 200_000


def finding_key(image: str, vulnerability_id: str, package: str) -> str:
    """The state's key of one finding of one image (the unit an SLA is counted for)."""
    return f"{image}{SEP}{vulnerability_id}{SEP}{package}"


def image_of_key(key: str) -> str:
    """The image display part of a finding_key."""
    return key.split(SEP, 1)[0]


def _kev_to_json(e: KevEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"at": e.checked_at.isoformat(), "kev": e.kev}
    if e.date_added:
        out["added"] = e.date_added.isoformat()
    if e.date_due:
        out["due"] = e.date_due.isoformat()
    if e.action:
        out["action"] = e.action
    if e.exploit_observed_at:
        out["observed"] = e.exploit_observed_at.isoformat()
    if e.epss is not None:
        out["epss"] = e.epss
    return out


def _td_to_json(td: TaskDefinitionImages) -> dict[str, Any]:
    return {
        "family": td.family,
        "revision": td.revision,
        "region": td.region,
        "containers": [[c.name, c.image] for c in td.containers],
        "tags": [list(t) for t in td.tags],
    }


def _mac_of(key: SecretStr, scope: str) -> hmac.HMAC:
    """The MAC of a state payload, to be fed; bound to the policy it belongs to (`namespace/name`)."""
    return hmac.new(key.get_secret_value().encode(), scope.encode() + b"\n", hashlib.sha256)


def _mac(key: SecretStr, scope: str, *parts: bytes | memoryview) -> bytes:
    """The MAC (hex) of a state payload given in parts (`_mac_of`).

    Fed part by part: a large fleet's state is megabytes, and joining it first would copy it.
    """
    mac = _mac_of(key, scope)
    for part in parts:
        mac.update(part)
    return mac.hexdigest().encode()


def dump_state(
    state: RunState,
    run_id: str,
    findings: Mapping[str, Iterable[str]],
    *,
    key: SecretStr | None = None,
    scope: str = "",
) -> bytes:
    """Serialize the state to keep (revisions used in this run, this run's findings), MACed with `key`.

    Without a key the revision cache is left out: it would not be read back (see the module doc).
    The bytes are those of one `json.dumps(..., separators=(",", ":"), sort_keys=True)` of the
    whole, made a member at a time: on a large fleet the state is megabytes, and the whole as
    objects, then as text, then as bytes, then with its MAC, would all be held at once.
    """
    members = _state_members(state, run_id, findings, keyed=key is not None)
    out = io.BytesIO()
    mac = _mac_of(key, scope) if key is not None else None
    if mac is not None:  # its head is written over once the MAC is known: same length
        out.write(bytes(len(_MAC_HEAD) + _MAC_HEX + 2))
        mac.update(b"{")
    else:
        out.write(b"{")

    def write(text: str) -> None:
        part = text.encode()
        out.write(part)
        if mac is not None:
            mac.update(part)

    for i, name in enumerate(sorted(members)):
        member = members[name]
        write(("," if i else "") + json.dumps(name) + ":")
        if isinstance(member, _Entries):
            # A map of thousands of entries, a slice at a time: keys sorted as sort_keys would.
            write("{")
            for j, chunk in enumerate(_slices(member.entries(), _SLICE)):
                write(("," if j else "") + _compact(dict(chunk))[1:-1])
            write("}")
        else:
            write(_compact(member()))
    write("}")
    if mac is not None:
        out.seek(0)
        out.write(b"".join((_MAC_HEAD, mac.hexdigest().encode(), b'",')))
    return out.getvalue()  # the buffer itself (trimmed), not a copy


_SLICE = 512  # map entries serialized together


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _slices(items: Iterable[T], n: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class _Entries:
    """A member that is a map: its (key, value) pairs in key order, made as they are written."""

    entries: Callable[[], Iterable[tuple[str, Any]]]


def _state_members(
    state: RunState, run_id: str, findings: Mapping[str, Iterable[str]], *, keyed: bool
) -> dict[str, Callable[[], Any] | _Entries]:
    """The state object's members, each built only as it is serialized (the maps an entry at a time)."""
    used, tags_used = state.cache.used, state.cache.tags_used
    members: dict[str, Callable[[], Any] | _Entries] = {
        "version": lambda: STATE_VERSION,
        "lastRunId": lambda: run_id,
        "listing": lambda: state.cache.listing,
        "revisions": _Entries(
            lambda: (
                (arn, _td_to_json(td))
                for arn, td in sorted(state.cache.by_arn.items())
                if arn in used and keyed
            )
        ),
        "findings": _Entries(lambda: ((k, sorted(set(v))) for k, v in sorted(findings.items()))),
    }
    if state.running:  # absent when unused, as `notified`
        members["running"] = _Entries(
            lambda: ((k, [f.isoformat(), la.isoformat()]) for k, (f, la) in sorted(state.running.items()))
        )
    if keyed and any(a in tags_used for a in state.cache.tags):
        # like the revisions: only under a key (they steer ticket routing)
        members["tdTags"] = _Entries(
            lambda: (
                (a, {"at": at.isoformat(), "tags": [list(kv) for kv in t]})
                for a, (at, t) in sorted(state.cache.tags.items())
                if a in tags_used
            )
        )
    if state.notified:  # absent when unused: older readers and states stay byte-identical
        members["notified"] = _Entries(
            lambda: ((d, dict(sorted(m.items()))) for d, m in sorted(state.notified.items()))
        )
    if state.kev:
        members["kev"] = _Entries(lambda: ((cve, _kev_to_json(e)) for cve, e in sorted(state.kev.items())))
    if state.first_seen:
        members["firstSeen"] = _Entries(lambda: _first_seen_entries(state.first_seen))
    return members


def _first_seen_entries(first_seen: Mapping[str, datetime]) -> Iterator[tuple[str, str]]:
    newest: Iterable[tuple[str, datetime]] = first_seen.items()
    if len(first_seen) > MAX_FIRST_SEEN:  # else every entry is kept: no sorted copy by time
        newest = sorted(newest, key=lambda kv: (kv[1], kv[0]))[-MAX_FIRST_SEEN:]
    return ((k, t.isoformat()) for k, t in sorted(newest))


def verify_state(raw: bytes, *, key: SecretStr, scope: str) -> str:
    """Why a stored state may not be trusted under `key` for policy `scope`; "" when it may."""
    end = len(_MAC_HEAD) + _MAC_HEX
    if not raw.startswith(_MAC_HEAD) or raw[end : end + 2] != b'",':
        return "the state carries no MAC"
    if not hmac.compare_digest(raw[len(_MAC_HEAD) : end], _mac(key, scope, b"{", memoryview(raw)[end + 2 :])):
        return "the state's MAC does not match (edited, another policy's, or another key)"
    return ""


def load_state(raw: bytes | None, *, key: SecretStr | None = None, scope: str = "") -> RunState:
    """Parse a stored state; an absent, unreadable, other-version or untrusted state starts empty.

    Never fatal: `trust` on the result says why a state was ignored or used only in part.
    """
    if not raw:
        return RunState(trust="" if key is not None else UNAUTHENTICATED)
    if key is not None:
        why = verify_state(raw, key=key, scope=scope)
        if why:
            return RunState(trust=why)
    state = _parse(raw)
    if key is None:
        state.cache.by_arn.clear()
        state.cache.tags.clear()
        state.trust = UNAUTHENTICATED
    return state


class _RevisionDoc(BaseModel):
    """One cached revision as stored (see `_td_to_json`)."""

    model_config = ConfigDict(frozen=True)

    family: str
    revision: int
    region: str = ""
    containers: tuple[tuple[str, str], ...]
    tags: tuple[tuple[str, str], ...] = ()


class _TagsDoc(BaseModel):
    """A revision's tags and when they were read."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    tags: tuple[tuple[str, str], ...] = ()


class _KevDoc(BaseModel):
    """One cached SearchVulnerabilities answer as stored (see `_kev_to_json`)."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    kev: bool | None = None
    added: date | None = None
    due: date | None = None
    action: str = ""
    observed: datetime | None = None
    epss: float | None = None


class _StateDoc(BaseModel):
    """The stored state object, version STATE_VERSION."""

    model_config = ConfigDict(frozen=True)

    version: int
    revisions: dict[str, _RevisionDoc] = {}
    listing: dict[str, dict[str, int]] = {}
    findings: dict[str, list[str]] = {}
    last_run_id: str = Field("", alias="lastRunId")
    notified: dict[str, dict[str, str]] = {}  # notification destination -> what it was last told
    running: dict[str, tuple[datetime, datetime]] = {}
    td_tags: dict[str, _TagsDoc] = Field({}, alias="tdTags")
    kev: dict[str, _KevDoc] = {}
    first_seen: dict[str, datetime] = Field({}, alias="firstSeen")


def _one(shared: dict[Any, Any], value: Any) -> Any:
    """One object per distinct value (equal datetimes and tag tuples are held once)."""
    return shared.setdefault(value, value)


def _parse(raw: bytes) -> RunState:
    try:
        data = json.loads(raw)
        # Another version (or not an object at all) is no state, not an error: the next save rewrites it.
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return RunState()
        doc = _StateDoc.model_validate(data)
    except ValueError:  # json's and pydantic's errors alike: unreadable state is no state
        return RunState()
    shared: dict[Any, Any] = {}
    cache = RevisionCache(
        by_arn={
            arn: TaskDefinitionImages(
                arn=arn,
                family=sys.intern(v.family),
                revision=v.revision,
                region=v.region,
                # Interned: thousands of revisions repeat the same container names and images.
                containers=declared_containers(tuple((n, i) for n, i in v.containers)),
                tags=v.tags,
            )
            for arn, v in doc.revisions.items()
        },
        listing=doc.listing,
        # Shared: thousands of revisions carry the same few tag sets, read at the same few times.
        tags={sys.intern(arn): (_one(shared, v.at), _one(shared, v.tags)) for arn, v in doc.td_tags.items()},
    )
    kev = {
        cve: KevEntry(
            checked_at=k.at,
            kev=k.kev,
            date_added=k.added,
            date_due=k.due,
            action=k.action,
            exploit_observed_at=k.observed,
            epss=k.epss,
        )
        for cve, k in doc.kev.items()
        # a time without a zone cannot be compared with the run's clock: asked again
        if k.at.tzinfo is not None
    }
    # Interned keys: the run's own keys for the same findings (pipeline) then share these strings.
    first_seen = {sys.intern(k): _one(shared, t) for k, t in doc.first_seen.items() if t.tzinfo is not None}
    return RunState(
        cache=cache,
        findings=doc.findings,
        last_run_id=doc.last_run_id,
        notified=doc.notified,
        running={k: (_one(shared, f), _one(shared, la)) for k, (f, la) in doc.running.items()},
        kev=kev,
        first_seen=first_seen,
    )
