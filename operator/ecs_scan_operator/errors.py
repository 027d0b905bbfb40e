"""The one error hierarchy of the project.

Adapters map foreign errors (botocore, requests, kubernetes) onto these classes at the boundary
(`raise TransientError(...) from exc`), so the pipeline and the operator decide what to do by
class alone: a transient error is retried later, a permanent one is recorded and not retried,
an invalid policy is reported on the resource and no outside system is called for it.

    ScanError
    ├── TransientError       throttling, 5xx, timeouts, dropped connections
    ├── PermanentError       access denied, not found, bad request, exhausted budgets
    │   ├── AuthError        credentials missing, expired or refused
    │   └── NotFoundError    the thing asked for does not exist
    ├── InvalidPolicy        the policy itself is wrong (field path and reason)
    └── Cancelled            the run was cancelled (policy deleted, operator stopping)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ScanError(Exception):
    """Base of every error this project raises on purpose."""


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


class Cancelled(ScanError):
    """The run was asked to stop (its policy was deleted or the operator is shutting down)."""


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
