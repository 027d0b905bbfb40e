"""The run lease over a ReportSink: take (or steal an expired one), renew in the background, release.

The decisions are core/lease.py's; this module does the conditional reads and writes. A lease
that cannot be renewed (broken by a person, stolen after it lapsed) is reported through
`lost`, and the run stops at its next checkpoint.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime

from ecs_scan_operator.core.lease import (
    RENEW_EVERY_SECONDS,
    Action,
    LeaseRecord,
    decide,
    load_lease,
    new_lease,
    refusal_message,
    renewed,
)
from ecs_scan_operator.errors import ConflictError, LeaseHeld, ScanError
from ecs_scan_operator.ports import Clock, ReportSink

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/json"


def default_holder() -> str:
    """host:pid of this process (the pod name in a cluster)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RunLease:
    """A lease this run holds."""

    def __init__(
        self,
        reports: ReportSink,
        key: str,
        record: LeaseRecord,
        etag: str,
        clock: Clock,
        deadline: datetime,
        how: str,
    ) -> None:
        self.key = key
        self.record = record
        self.how = how  # "taken" or "stolen: <why>", for the run log
        self._reports = reports
        self._etag = etag
        self._clock = clock
        self._deadline = deadline
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    @classmethod
    def acquire(
        cls,
        reports: ReportSink,
        key: str,
        *,
        policy: str,
        run_id: str,
        holder: str,
        clock: Clock,
        deadline: datetime,
    ) -> RunLease:
        """Take the lease (or steal an expired one); LeaseHeld when a live run holds it."""
        found = reports.read(key)
        current = load_lease(found.body) if found is not None else None
        now = clock.now()
        decision = decide(found is not None, current, now=now)
        if decision.action is Action.REFUSE and current is not None:
            raise LeaseHeld(refusal_message(policy, current))
        record = new_lease(policy, run_id, holder, now, deadline)
        expected = None if found is None else found.etag
        try:
            etag = reports.put_if(key, record.to_json(), CONTENT_TYPE, etag=expected)
        except ConflictError:
            # Another run won the race, or our own write landed and only its answer was lost.
            again = reports.read(key)
            winner = load_lease(again.body) if again is not None else None
            if again is None or winner is None or winner.run_id != run_id:
                if winner is not None:
                    raise LeaseHeld(refusal_message(policy, winner)) from None
                raise LeaseHeld(f"another run of {policy} took the lease at the same moment") from None
            etag = again.etag
        how = "taken" if decision.action is Action.TAKE else f"stolen: {decision.reason}"
        if decision.action is Action.STEAL:
            log.warning("run %s of %s took over the lease: %s", run_id, policy, decision.reason)
        return cls(reports, key, record, etag, clock, deadline, how)

    def renew(self) -> bool:
        """Extend the lease (If-Match on our ETag); False once it is lost."""
        with self._lock:
            if self.lost is not None:
                return False
            record = renewed(self.record, self._clock.now(), self._deadline)
            try:
                self._etag = self._reports.put_if(self.key, record.to_json(), CONTENT_TYPE, etag=self._etag)
            except ConflictError:
                if self._still_ours():
                    return True
                self.lost = "the lease was broken or taken over by another run"
            except ScanError as exc:
                if self._clock.now() >= self.record.expires:
                    self.lost = f"the lease could not be renewed before it expired: {exc}"
                else:
                    log.warning("renewing the run lease failed (will retry): %s", exc)
                    return True
            else:
                self.record = record
                return True
        log.warning("run %s: %s", self.record.run_id, self.lost)
        return False

    def _still_ours(self) -> bool:
        # A write of ours that landed but whose answer was lost (then retried: 412) changed the
        # ETag without telling us; only this run writes its own run ID, so adopt that ETag.
        try:
            found = self._reports.read(self.key)
        except ScanError:
            return False
        current = load_lease(found.body) if found is not None else None
        if found is None or current is None or current.run_id != self.record.run_id:
            return False
        self._etag, self.record = found.etag, current
        return True

    def start(self, every: float = RENEW_EVERY_SECONDS) -> None:
        """Renew in a background thread until released (the thread dies with the process)."""

        def beat() -> None:
            while not self._stop.wait(every):
                if not self.renew():
                    return

        self._thread = threading.Thread(target=beat, name=f"lease-{self.record.run_id}", daemon=True)
        self._thread.start()

    def release(self) -> str | None:
        """Stop renewing and delete the lease if it is still ours; the problem, if any, as text."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            if self.lost is not None:
                return None  # not ours any more: nothing to delete
            try:
                try:
                    self._reports.delete_if(self.key, etag=self._etag)
                except ConflictError:
                    if not self._still_ours():
                        return None  # taken over meanwhile: not ours to delete
                    self._reports.delete_if(self.key, etag=self._etag)
            except ScanError as exc:
                # It lapses on its own within the TTL; the run's outcome does not change.
                log.warning("releasing the run lease failed: %s", exc)
                return str(exc)
            self.lost = "released"
        return None


def show(reports: ReportSink, key: str) -> tuple[LeaseRecord | None, str | None, bytes | None]:
    """The lease as stored: (parsed or None, ETag, raw body); all None when absent."""
    found = reports.read(key)
    if found is None:
        return None, None, None
    return load_lease(found.body), found.etag, found.body


def break_lease(reports: ReportSink, key: str, etag: str) -> None:
    """Delete the lease a person looked at (If-Match: it is not deleted if it changed meanwhile)."""
    reports.delete_if(key, etag=etag)
