"""The state object's MAC: any change by a writer of the bucket is noticed, the untouched state is used."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from ecs_scan_operator.core.kev import KevEntry
from ecs_scan_operator.core.model import ContainerImage, TaskDefinitionImages
from ecs_scan_operator.core.state import (
    MAC_PREFIX,
    SEP,
    UNAUTHENTICATED,
    RevisionCache,
    RunState,
    dump_state,
    load_state,
    verify_state,
)

KEY = SecretStr("0123456789abcdef0123456789abcdef")
SCOPE = "team-a/nightly"
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ARN_A = "arn:aws:ecs:us-east-1:123456789012:task-definition/svc-a:3"
ARN_B = "arn:aws:ecs:us-east-1:123456789012:task-definition/svc-b:7"


def _state() -> RunState:
    cache = RevisionCache(listing={"us-east-1": {"families": 2, "activeRevisions": 9}})
    cache.put(
        TaskDefinitionImages(
            arn=ARN_A,
            family="svc-a",
            revision=3,
            region="us-east-1",
            containers=(ContainerImage("app", f"{ECR}/app:1"), ContainerImage("log", f"{ECR}/sidecar:2")),
            tags=(("team", "a"),),
        )
    )
    cache.put(
        TaskDefinitionImages(
            arn=ARN_B,
            family="svc-b",
            revision=7,
            region="us-east-1",
            containers=(ContainerImage("app", f"{ECR}/other:5"),),
        )
    )
    return RunState(cache=cache)


def _stored(key: SecretStr | None = KEY, scope: str = SCOPE) -> bytes:
    return dump_state(_state(), "r1", {"app:1": ["CVE-1", "CVE-2"]}, key=key, scope=scope)


def _edit(fn: Callable[[dict[str, Any]], None]) -> bytes:
    """The stored state edited by `fn`, written back in the same canonical form (the MAC first)."""
    data = json.loads(_stored())
    fn(data)
    has_mac, mac = "_mac" in data, data.pop("_mac", None)
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True)
    if not has_mac:
        return payload.encode()
    return ('{"_mac":' + json.dumps(mac) + "," + payload[1:]).encode()


def test_the_edit_helper_reproduces_the_stored_bytes() -> None:
    # So every tampering below changes content, not formatting.
    assert _edit(lambda data: None) == _stored()


def test_untouched_state_is_trusted_and_complete() -> None:
    state = load_state(_stored(), key=KEY, scope=SCOPE)
    assert state.trust == ""
    assert set(state.cache.by_arn) == {ARN_A, ARN_B}
    assert state.cache.by_arn[ARN_A].containers[0].image == f"{ECR}/app:1"
    assert state.cache.listing == {"us-east-1": {"families": 2, "activeRevisions": 9}}
    assert state.findings == {"app:1": ["CVE-1", "CVE-2"]}
    assert state.last_run_id == "r1"


def test_the_mac_covers_the_exact_bytes() -> None:
    # Checked without serialising again: even a pretty-printed copy of the same content is an edit.
    pretty = json.dumps(json.loads(_stored()), indent=4).encode()
    assert load_state(pretty, key=KEY, scope=SCOPE).trust
    assert _stored().startswith(b'{"_mac":"hmac-sha256:')


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def fn(data: dict[str, Any]) -> None:
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return fn


def _swap(data: dict[str, Any]) -> None:
    revs = data["revisions"]
    revs[ARN_A], revs[ARN_B] = revs[ARN_B], revs[ARN_A]


def _drop(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def fn(data: dict[str, Any]) -> None:
        node = data
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return fn


def _add_revision(data: dict[str, Any]) -> None:
    data["revisions"]["arn:aws:ecs:us-east-1:123456789012:task-definition/svc-c:1"] = data["revisions"][ARN_A]


TAMPERING = {
    "container image": _set(["revisions", ARN_A, "containers", 0, 1], f"{ECR}/clean:1"),
    "container name": _set(["revisions", ARN_A, "containers", 0, 0], "other"),
    "a container removed": _set(["revisions", ARN_A, "containers"], [[("app"), f"{ECR}/app:1"]]),
    "no containers": _set(["revisions", ARN_A, "containers"], []),
    "family": _set(["revisions", ARN_A, "family"], "svc-z"),
    "revision": _set(["revisions", ARN_A, "revision"], 4),
    "region": _set(["revisions", ARN_A, "region"], "eu-west-1"),
    "tags": _set(["revisions", ARN_A, "tags"], [["team", "b"]]),
    "tags removed": _drop(["revisions", ARN_A, "tags"]),
    "entries swapped between ARNs": _swap,
    "an entry removed": _drop(["revisions", ARN_B]),
    "an entry added": _add_revision,
    "listing": _set(["listing", "us-east-1", "activeRevisions"], 1),
    "findings": _set(["findings", "app:1"], ["CVE-1", "CVE-2", "CVE-3"]),
    "last run id": _set(["lastRunId"], "r0"),
    "version": _set(["version"], 2),
    "an unknown field added": _set(["extra"], True),
    "mac removed": _drop(["_mac"]),
    "mac empty": _set(["_mac"], ""),
    "mac of another algorithm": _set(["_mac"], "sha256:" + "0" * 64),
    "mac truncated": lambda d: d.__setitem__("_mac", d["_mac"][:-2]),
    "mac extended": lambda d: d.__setitem__("_mac", d["_mac"] + "00"),
    "mac flipped": lambda d: d.__setitem__("_mac", d["_mac"][:-1] + ("0" if d["_mac"][-1] != "0" else "1")),
    "mac upper-cased": lambda d: d.__setitem__("_mac", d["_mac"].upper()),
    "mac not a string": _set(["_mac"], 1),
}


@pytest.mark.parametrize("tamper", list(TAMPERING.values()), ids=list(TAMPERING))
def test_any_edit_makes_the_whole_state_untrusted(tamper: Callable[[dict[str, Any]], None]) -> None:
    state = load_state(_edit(tamper), key=KEY, scope=SCOPE)
    assert state.trust  # the reason, for the run log
    assert state.cache.by_arn == {} and state.cache.listing == {} and state.findings == {}
    assert state.last_run_id == ""


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b"null",
        b'"text"',
        b"\xff\xfe",
        b"{}",
    ],
)
def test_garbage_is_untrusted_not_fatal(raw: bytes) -> None:
    state = load_state(raw, key=KEY, scope=SCOPE)
    assert state.trust and state.cache.by_arn == {}


def test_truncated_state_is_untrusted() -> None:
    raw = _stored()
    for cut in (1, len(raw) // 2, len(raw) - 1):
        assert load_state(raw[:cut], key=KEY, scope=SCOPE).trust


def test_wrong_key_is_untrusted() -> None:
    other = SecretStr("fedcba9876543210fedcba9876543210")
    state = load_state(_stored(), key=other, scope=SCOPE)
    assert "does not match" in state.trust and state.cache.by_arn == {}


def test_another_policys_state_is_untrusted() -> None:
    # Copied over from team-b/nightly, which may select other families: its MAC names its own policy.
    state = load_state(_stored(scope="team-b/nightly"), key=KEY, scope=SCOPE)
    assert "does not match" in state.trust and state.cache.by_arn == {}


def test_state_written_without_a_key_is_untrusted_once_a_key_is_set() -> None:
    state = load_state(_stored(key=None), key=KEY, scope=SCOPE)
    assert "no MAC" in state.trust and state.findings == {}


def test_without_a_key_the_revision_cache_is_neither_written_nor_read() -> None:
    raw = _stored(key=None)
    data = json.loads(raw)
    assert data["revisions"] == {} and "_mac" not in data
    # Even a state holding revisions (written with a key, or by hand) gives no cache without a key.
    state = load_state(_stored(), key=None, scope=SCOPE)
    assert state.trust == UNAUTHENTICATED
    assert state.cache.by_arn == {}
    # What decides no scan is still used: listing sizes, findings of the last run.
    assert state.findings == {"app:1": ["CVE-1", "CVE-2"]} and state.cache.listing


def test_absent_state() -> None:
    assert load_state(None, key=KEY, scope=SCOPE) == RunState()
    assert load_state(None, key=None, scope=SCOPE).trust == UNAUTHENTICATED


def test_the_key_is_not_in_the_state() -> None:
    raw = _stored()
    assert KEY.get_secret_value().encode() not in raw
    assert load_state(_stored(), key=KEY, scope=SCOPE).trust == ""


def _signed(data: dict[str, Any]) -> bytes:
    """`data` stored as a writer holding the key would store it (whatever its shape)."""
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(KEY.get_secret_value().encode(), SCOPE.encode() + b"\n" + payload, hashlib.sha256)
    return b'{"_mac":"' + MAC_PREFIX.encode() + mac.hexdigest().encode() + b'",' + payload[1:]


def test_the_signing_helper_reproduces_the_stored_bytes() -> None:
    stored = json.loads(_stored())
    del stored["_mac"]
    assert _signed(stored) == _stored()


REVISION = {"family": "svc-a", "revision": 3, "region": "r", "containers": [["app", "img"]], "tags": []}
MALFORMED: dict[str, Callable[[dict[str, Any]], None]] = {
    "revisions not an object": lambda d: d.__setitem__("revisions", []),
    "revision without family": lambda d: d["revisions"][ARN_A].pop("family"),
    "revision number not a number": lambda d: d["revisions"][ARN_A].__setitem__("revision", "three"),
    "container not a pair": lambda d: d["revisions"][ARN_A].__setitem__("containers", [["app"]]),
    "container image not a string": lambda d: d["revisions"][ARN_A].__setitem__(
        "containers", [["app", None]]
    ),
    "tags not pairs": lambda d: d["revisions"][ARN_A].__setitem__("tags", {"team": "a"}),
    "listing count not a number": lambda d: d.__setitem__("listing", {"us-east-1": {"families": "many"}}),
    "findings not lists": lambda d: d.__setitem__("findings", {"app:1": "CVE-1"}),
    "lastRunId not a string": lambda d: d.__setitem__("lastRunId", ["r1"]),
    "another version": lambda d: d.__setitem__("version", 2),
    "no version": lambda d: d.pop("version"),
}


@pytest.mark.parametrize("malform", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_trusted_state_of_the_wrong_shape_is_no_state(malform: Callable[[dict[str, Any]], None]) -> None:
    data: dict[str, Any] = {"version": 1, "lastRunId": "r1", "listing": {}, "findings": {}}
    data["revisions"] = {ARN_A: dict(REVISION)}
    assert load_state(_signed(data), key=KEY, scope=SCOPE).cache.by_arn  # well-formed: read
    malform(data)
    state = load_state(_signed(data), key=KEY, scope=SCOPE)
    assert state.cache.by_arn == {} and state.cache.listing == {} and state.findings == {}
    assert state.last_run_id == ""


def test_names_and_images_read_back_are_interned() -> None:
    # Thousands of cached revisions share a few families, container names and images: one copy each.
    data: dict[str, Any] = {"version": 1, "lastRunId": "r1", "listing": {}, "findings": {}}
    data["revisions"] = {ARN_A: dict(REVISION), ARN_B: dict(REVISION, revision=7)}
    by_arn = load_state(_signed(data), key=KEY, scope=SCOPE).cache.by_arn
    a, b = by_arn[ARN_A], by_arn[ARN_B]
    assert a.family is b.family
    assert a.containers[0].name is b.containers[0].name and a.containers[0].image is b.containers[0].image


def _full_state() -> RunState:
    """A state with every member dump_state may write, non-ASCII text included."""
    state = _state()
    at = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    state.cache.put_tags(ARN_A, (("team", "paiements é"), ("owner", "漢字")), at)
    state.cache.tags[ARN_B] = (at, (("unused", "x"),))  # cached, not used this run: left out
    state.running = {f"{ECR}/app@sha256:{'a' * 64}": (at, at + timedelta(hours=1))}
    state.notified = {"slack-b": {"x": "o"}, "slack-a": {"z": "f", "y": "o"}}
    state.kev = {
        "CVE-2": KevEntry(at, True, date(2024, 1, 2), date(2024, 2, 2), "apply \u2028 fix", at, 0.5),
        "CVE-1": KevEntry(at, None),
    }
    state.first_seen = {f"img{SEP}CVE-{i}{SEP}pkg": at - timedelta(days=i) for i in range(5, 0, -1)}
    return state


def _large_state() -> RunState:
    """Maps of more entries than dump_state serializes together, keys not in insertion order."""
    state = _full_state()
    at = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    state.first_seen = {f"img{(i * 7919) % 1500}{SEP}CVE-{i}{SEP}pkg": at for i in range(1500)}
    state.running = {f"{ECR}/r{(i * 31) % 1100}@sha256:{i:064x}": (at, at) for i in range(1100)}
    return state


@pytest.mark.parametrize("key", [KEY, None], ids=["keyed", "unkeyed"])
@pytest.mark.parametrize(
    "build", [RunState, _state, _full_state, _large_state], ids=["empty", "cache", "full", "large"]
)
def test_the_stored_bytes_are_one_canonical_dump_of_the_whole(
    build: Callable[[], RunState], key: SecretStr | None
) -> None:
    findings = {"b:1": ["CVE-2", "CVE-1", "CVE-2"], "a:1": []}
    raw = dump_state(build(), "r1", findings, key=key, scope=SCOPE)
    data = json.loads(raw)
    mac = data.pop("_mac", None)
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True)
    if key is None:
        assert mac is None
        assert raw == payload.encode()
    else:
        assert raw == ('{"_mac":' + json.dumps(mac) + "," + payload[1:]).encode()
        assert verify_state(raw, key=key, scope=SCOPE) == ""
        assert ("tdTags" in data) == (build in (_full_state, _large_state))
    assert load_state(raw, key=key, scope=SCOPE).findings == {"a:1": [], "b:1": ["CVE-1", "CVE-2"]}
    assert len(data.get("firstSeen", {})) == len(build().first_seen)
