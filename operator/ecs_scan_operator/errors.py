"""The one error hierarchy of the project.

Adapters map foreign errors (botocore, requests, kubernetes) onto these classes at the boundary
(`raise TransientError(...) from exc`), so the pipeline and the operator decide what to do by
class alone: a transient error is retried later, a permanent one is recorded and not retried,
an invalid policy is reported on the resource and no outside system is called for it.

    ScanError
    ├── TransientError       throttling, 5xx, timeouts, dropped connections
    ├── PermanentError       access denied, not found, bad request, exhausted budgets
    │   ├── AuthError        credentials missing, expired or refused
    │   ├── NotFoundError    the thing asked for does not exist
    │   └── ConflictError    a conditional write lost: the object changed (or appeared) meanwhile
    ├── LeaseHeld            another run of the policy holds its run lease: nothing was written
    ├── InvalidPolicy        the policy itself is wrong (field path and reason)
    ├── RunAborted           the run stopped itself: its deadline passed or it lost its lease
    └── Cancelled            the run was cancelled (policy deleted, operator stopping)

An error raised at the AWS boundary carries its `cause` (service, operation, error code), so a
run can say "ecr:DescribeImages AccessDeniedException x2" instead of "2 images failed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ErrorCause:
    """Which outside call failed and how: `ecr:DescribeImages AccessDeniedException`."""

    service: str
    operation: str
    code: str
    account: str = ""  # multi-account runs: the account whose call failed

    def __str__(self) -> str:
        text = f"{self.service}:{self.operation} {self.code}".strip()
        return f"{text} (account {self.account})" if self.account else text


class ScanError(Exception):
    """Base of every error this project raises on purpose."""

    #: Set by the adapter boundary when the error came from one outside call.
    cause: ErrorCause | None = None


class TransientError(ScanError):
    """Worth retrying later: throttling, server errors, timeouts, dropped connections."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ScanError):
    """Retrying the same call will fail the same way."""


class AuthError(PermanentError):
    """Credentials are missing, expired or refused."""


class NotFoundError(PermanentError):
    """The repository, image, task definition or bucket does not exist."""


class ConflictError(PermanentError):
    """A conditional write or delete lost a race: the object changed or appeared since it was read."""


class LeaseHeld(ScanError):
    """Another run of the same policy holds the run lease; this run wrote nothing."""


class Cancelled(ScanError):
    """The run was asked to stop (its policy was deleted or the operator is shutting down)."""


class RunAborted(ScanError):
    """The run stopped itself (deadline passed, lease lost); `stage` names where it was."""

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class FieldError:
    """One problem in a policy: where (`spec.aws.roleArn`) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class InvalidPolicy(ScanError):
    """The policy is invalid; `errors` names every field and the reason."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors) or "invalid policy")
