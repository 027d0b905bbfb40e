"""Runs off the event loop: a thread pool sized by the global limit, cancel events, Jira credentials.

A run is `run_policy()` in a worker thread, so the operator keeps answering events and probes
while AWS is being read. The pool has as many threads as runs may execute at once; the
asyncio side takes a slot before it submits, so a policy waiting for a slot never holds a thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pydantic import SecretStr

from ecs_scan_operator.clock import SystemClock
from ecs_scan_operator.controller.kube import KubeApi
from ecs_scan_operator.core.grants import AccountScope
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec
from ecs_scan_operator.core.result import RunResult
from ecs_scan_operator.core.status import failed_result
from ecs_scan_operator.errors import AuthError, Cancelled, LeaseHeld, PermanentError, ScanError
from ecs_scan_operator.ports import Clock

if TYPE_CHECKING:
    from ecs_scan_operator.adapters.jira_credentials import JiraCredentials

log = logging.getLogger(__name__)


class RunFn(Protocol):
    """What a worker thread runs: execute_run, or a test's stand-in."""

    def __call__(
        self,
        policy: PolicyRef,
        spec: PolicySpec,
        run_id: str,
        cancel: threading.Event,
        jira_credentials: JiraCredentials | None,
        /,
        *,
        notify_destinations: tuple[str, ...] | None = None,
        account_scope: AccountScope | None = None,
    ) -> RunResult: ...


def read_jira_credentials(kube: KubeApi, namespace: str, secret: str) -> JiraCredentials:
    """The Jira credentials from the policy's Secret: email + apiToken, or token. Values stay secret."""
    from ecs_scan_operator.adapters.jira_credentials import JiraCredentials

    data = kube.read_secret(namespace, secret)
    try:
        return JiraCredentials.from_secret_data(data)
    except AuthError as exc:  # names the keys, never a value
        raise AuthError(f"Secret {namespace}/{secret}: {exc}") from None


def read_secret_values(kube: KubeApi, namespace: str, secret: str) -> dict[str, SecretStr]:
    """Every key of a Secret, decoded (a notification destination's url and signingKey)."""
    out = {}
    for key, value in kube.read_secret(namespace, secret).items():
        try:
            out[key] = SecretStr(base64.b64decode(value, validate=True).decode().strip())
        except (binascii.Error, UnicodeDecodeError):
            raise PermanentError(f"Secret {namespace}/{secret}: key {key} is not base64 UTF-8") from None
    return out


def execute_run(
    policy: PolicyRef,
    spec: PolicySpec,
    run_id: str,
    cancel: threading.Event,
    jira_credentials: JiraCredentials | None,
    clock: Clock | None = None,
    *,
    session_identity: bool = True,
    kube: KubeApi | None = None,
    notify_allow_private: bool = False,
    notify_destinations: tuple[str, ...] | None = None,
    account_scope: AccountScope | None = None,
) -> RunResult:
    """The body of a worker thread: wire the adapters and run the pipeline; raise only Cancelled.

    `notify_destinations`: the allowing grant's notification destinations (None in open mode);
    `account_scope`: the accounts the grant gives a multi-account policy (None: open mode, one account).
    """
    from ecs_scan_operator.bootstrap import build_ports
    from ecs_scan_operator.pipeline import run_policy
    from ecs_scan_operator.settings import get_settings

    clock = clock or SystemClock()
    started = clock.now()
    try:
        notify_secrets = None
        if spec.notify and kube is not None:
            api = kube

            def notify_secrets(name: str) -> Mapping[str, SecretStr]:
                # read in this worker thread when the run reaches its notify stage
                return read_secret_values(api, policy.namespace, name)

        ports = build_ports(
            policy,
            spec,
            jira_credentials=jira_credentials,
            state_key=get_settings().state_key,
            session_identity=session_identity,
            notify_secrets=notify_secrets,
            notify_allow_private=notify_allow_private,
            notify_destinations=notify_destinations,
            account_scope=account_scope,
        )
        return run_policy(policy, spec, ports, clock, run_id=run_id, cancel=cancel)
    except Cancelled:
        raise
    except LeaseHeld as exc:
        # Another process or cluster runs this policy now: not a failure of this run, a non-start.
        result = failed_result(run_id, policy.key, started, clock.now(), str(exc))
        result.refused = str(exc)
        return result
    except ScanError as exc:  # e.g. the role could not be assumed while wiring the adapters
        return failed_result(run_id, policy.key, started, clock.now(), str(exc))
    except Exception as exc:
        # The pipeline records AWS/Jira faults itself; anything else is a bug, and a bug in one
        # run must end that run, not the operator.
        log.exception("run %s of %s failed unexpectedly", run_id, policy.key)
        message = f"internal error: {type(exc).__name__}: {exc}"
        return failed_result(run_id, policy.key, started, clock.now(), message)


@dataclass
class RunHandle:
    """A run submitted to the pool."""

    uid: str
    run_id: str
    future: Future[RunResult]
    cancel: threading.Event = field(default_factory=threading.Event)


class RunPool:
    """Worker threads for runs and the global limit on how many execute at once."""

    def __init__(self, max_runs: int, run_fn: RunFn = execute_run) -> None:
        self.max_runs = max_runs
        self.slots = asyncio.Semaphore(max_runs)
        self._executor = ThreadPoolExecutor(max_workers=max_runs, thread_name_prefix="scan-run")
        self._run_fn = run_fn
        self._lock = threading.Lock()
        self._active: dict[str, RunHandle] = {}

    def submit(
        self,
        uid: str,
        run_id: str,
        policy: PolicyRef,
        spec: PolicySpec,
        credentials: JiraCredentials | None,
        notify_destinations: tuple[str, ...] | None = None,
        accounts: AccountScope | None = None,
    ) -> RunHandle:
        """Start a run in a worker thread; it stays `active` until the thread is done.

        `accounts` (a multi-account policy in grants mode) reaches the run function as a keyword.
        """
        cancel = threading.Event()
        future = self._executor.submit(
            self._run_fn,
            policy,
            spec,
            run_id,
            cancel,
            credentials,
            notify_destinations=notify_destinations,
            account_scope=accounts,
        )
        handle = RunHandle(uid=uid, run_id=run_id, future=future, cancel=cancel)
        with self._lock:
            self._active[uid] = handle
        future.add_done_callback(lambda _: self._done(handle))
        return handle

    def _done(self, handle: RunHandle) -> None:
        with self._lock:
            if self._active.get(handle.uid) is handle:
                del self._active[handle.uid]

    def active(self, uid: str) -> RunHandle | None:
        """The run of this policy still executing in this process, if any."""
        with self._lock:
            return self._active.get(uid)

    def running(self) -> int:
        """How many runs execute now."""
        with self._lock:
            return len(self._active)

    def cancel_all(self) -> None:
        """Ask every run to stop at its next checkpoint."""
        with self._lock:
            handles = list(self._active.values())
        for handle in handles:
            handle.cancel.set()

    def shutdown(self) -> None:
        """Cancel the runs and stop accepting new ones (threads finish on their own)."""
        self.cancel_all()
        self._executor.shutdown(wait=False, cancel_futures=True)
