"""Leader election over one coordination.k8s.io Lease: with several replicas, exactly one runs policies.

The rules are client-go's: a Lease held by someone else counts as alive until this replica has
seen it unchanged for a whole `leaseDurationSeconds` (measured on this replica's monotonic
clock, so clock skew between nodes does not matter); the leader renews every retry period and
gives up when it could not renew within the renew deadline, which is shorter than the lease, so
a replica that steps down has stopped before any other can take over. Stepping down means the
process exits (as controller-runtime does): runs die with it, and the next leader records them
as interrupted from their `status.activeRun`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, NotRequired, Protocol, TypedDict

from ecs_scan_operator.controller.kube import Conflict, KubeApi
from ecs_scan_operator.errors import ScanError

log = logging.getLogger(__name__)


class LeaseMetadata(TypedDict):
    """The metadata this elector writes on its Lease."""

    name: str
    namespace: str
    resourceVersion: NotRequired[str]  # set on a replace: the write fails if someone wrote since


class LeaseSpec(TypedDict):
    """coordination.k8s.io/v1 LeaseSpec, as this elector writes it (times are MicroTime)."""

    holderIdentity: str
    leaseDurationSeconds: int
    acquireTime: str
    renewTime: str
    leaseTransitions: int


class LeaseBody(TypedDict):
    """The Lease object written on create and replace."""

    apiVersion: Literal["coordination.k8s.io/v1"]
    kind: Literal["Lease"]
    metadata: LeaseMetadata
    spec: LeaseSpec


class Leadership(Protocol):
    """Whether this replica may act."""

    def is_leader(self) -> bool:
        """True while this replica holds the lease (or needs none)."""
        ...

    async def wait(self) -> None:
        """Return once this replica is the leader."""
        ...


class AlwaysLeader:
    """No leader election (one replica): always the leader."""

    def is_leader(self) -> bool:
        """Always."""
        return True

    async def wait(self) -> None:
        """Return at once."""


class Attempt(Enum):
    """The outcome of one acquire-or-renew round."""

    HELD = "held"  # this replica holds the lease (acquired or renewed)
    TAKEN = "taken"  # another live replica holds it
    FAILED = "failed"  # the API call failed; nothing is known


def micro_time(when: datetime) -> str:
    """A Lease MicroTime (RFC 3339 with microseconds, UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires and renews the Lease in a background thread; `is_leader` is safe from any thread."""

    def __init__(
        self,
        kube: KubeApi,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: int,
        renew_deadline: float,
        retry_period: float,
        on_lost: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if renew_deadline >= lease_duration:
            raise ValueError("the renew deadline must be shorter than the lease duration")
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_lost = on_lost
        self._monotonic = monotonic
        self._wall = wall
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._became_leader: asyncio.Event | None = None

    # ---- one round (tests drive this directly)

    def attempt(self) -> Attempt:
        """Acquire the lease, or renew it when held; never raises."""
        try:
            return self._attempt()
        except Conflict:
            return Attempt.TAKEN  # someone else wrote the lease between our read and our write
        except ScanError as exc:
            log.warning("leader election: %s", exc)
            return Attempt.FAILED

    def _attempt(self) -> Attempt:
        now = self._wall()
        lease = self.kube.get_lease(self.namespace, self.name)
        if lease is None:
            self.kube.create_lease(self.namespace, self._body(now, now, 0, None))
            self._observe(("created", self.identity), self._monotonic())
            return Attempt.HELD
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        duration = int(spec.get("leaseDurationSeconds") or self.lease_duration)
        version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        # Every renewal writes the Lease, so its resourceVersion moves even if the clocks do not.
        self._observe((holder, spec.get("renewTime"), version), self._monotonic())
        if holder and holder != self.identity and self._observed_at + duration > self._monotonic():
            return Attempt.TAKEN
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquired = spec.get("acquireTime") or micro_time(now)
        else:
            transitions += 1
            acquired = micro_time(now)
        self.kube.replace_lease(self.namespace, self.name, self._body(now, acquired, transitions, version))
        return Attempt.HELD

    def _observe(self, record: tuple[Any, ...], at: float) -> None:
        # A record seen for the first time, or changed, restarts the holder's lifetime.
        if record != self._observed:
            self._observed = record
            self._observed_at = at

    def _body(
        self, now: datetime, acquired: datetime | str, transitions: int, version: str | None
    ) -> LeaseBody:
        metadata: LeaseMetadata = {"name": self.name, "namespace": self.namespace}
        if version:
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_duration,
                "acquireTime": acquired if isinstance(acquired, str) else micro_time(acquired),
                "renewTime": micro_time(now),
                "leaseTransitions": transitions,
            },
        }

    # ---- the loop

    def step(self) -> None:
        """One round of the loop: attempt, then update leadership (and step down if needed)."""
        outcome = self.attempt()
        now = self._monotonic()
        if outcome is Attempt.HELD:
            self._last_renew = now
            if not self._leader.is_set():
                log.info(
                    "leader election: %s now leads (lease %s/%s)", self.identity, self.namespace, self.name
                )
                self._leader.set()
                self._notify()
            return
        if not self._leader.is_set():
            return
        if outcome is Attempt.TAKEN or now - self._last_renew > self.renew_deadline:
            log.error(
                "leader election: %s lost the lease %s/%s (%s); stepping down",
                self.identity,
                self.namespace,
                self.name,
                "taken by another replica" if outcome is Attempt.TAKEN else "could not renew in time",
            )
            self._leader.clear()
            self.on_lost()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the election in a daemon thread; `wait()` works on `loop`."""
        self._loop = loop
        self._became_leader = asyncio.Event()
        if self._leader.is_set():
            self._became_leader.set()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.retry_period)

    def _notify(self) -> None:
        if self._loop is not None and self._became_leader is not None:
            self._loop.call_soon_threadsafe(self._became_leader.set)

    def is_leader(self) -> bool:
        """True while this replica holds the lease."""
        return self._leader.is_set()

    async def wait(self) -> None:
        """Return once this replica is the leader."""
        if self._became_leader is None:
            raise RuntimeError("the elector is not started")
        await self._became_leader.wait()

    def stop(self, *, release: bool = True) -> None:
        """Stop the loop; hand the lease over at once (holder cleared) when this replica holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry_period + 5)
        if release and self._leader.is_set():
            self._leader.clear()
            try:
                lease = self.kube.get_lease(self.namespace, self.name)
                spec = (lease or {}).get("spec") or {}
                if lease is not None and spec.get("holderIdentity") == self.identity:
                    now = self._wall()
                    body = self._body(
                        now,
                        spec.get("acquireTime") or now,
                        int(spec.get("leaseTransitions") or 0),
                        str(lease["metadata"]["resourceVersion"]),
                    )
                    body["spec"]["holderIdentity"] = ""
                    body["spec"]["leaseDurationSeconds"] = 1
                    self.kube.replace_lease(self.namespace, self.name, body)
                    log.info("leader election: %s released the lease", self.identity)
            except ScanError as exc:
                log.warning("leader election: could not release the lease: %s", exc)
