"""A clock that moves only when a test says so (the limiter's injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime

# 2027-01-15T08:00:00Z: a whole minute, mid-month, so month arithmetic is plain.
T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
