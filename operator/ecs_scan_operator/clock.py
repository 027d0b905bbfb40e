"""The wall clock: the one `ports.Clock` that reads real time (tests pass a fixed clock)."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """The wall clock, UTC."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        return datetime.now(UTC)
