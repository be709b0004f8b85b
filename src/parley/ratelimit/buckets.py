"""Token-bucket maths, shared by every backend.

A bucket of capacity C refills at C/60 per second up to C, so a limit of
C per minute allows a burst of C and then a steady C per minute, never a
fixed-window double burst. A request takes from all its buckets at once or
from none of them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

# Value records built several times for every message: tuples, which are built in a
# fraction of a frozen dataclass's time.


class Demand(NamedTuple):
    """`amount` to take from the bucket `key` of size `capacity` per minute."""

    key: str
    capacity: int
    amount: int

    @property
    def rate(self) -> float:
        return self.capacity / 60.0


class Reading(NamedTuple):
    capacity: int
    level: float  # tokens left after this decision
    now: float

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.level))

    @property
    def reset_at(self) -> float:
        """When the bucket will be full again."""
        return self.now + max(0.0, self.capacity - self.level) * 60.0 / self.capacity


class Decision(NamedTuple):
    allowed: bool
    readings: tuple[Reading, ...]
    # Index of the demand that blocked, and seconds until it could be met (None: never,
    # because the demand is larger than the bucket itself).
    blocking: int | None = None
    wait: float | None = None


def refill(level: float, updated: float, capacity: int, now: float) -> float:
    return min(float(capacity), level + max(0.0, now - updated) * capacity / 60.0)


def decide(levels: list[float], demands: list[Demand], now: float) -> Decision:
    """Given each bucket's level (already refilled to `now`), decide all-or-nothing."""
    blocking: int | None = None
    wait: float | None = 0.0
    for i, (level, demand) in enumerate(zip(levels, demands, strict=True)):
        if demand.amount <= level:
            continue
        needed = None if demand.amount > demand.capacity else (demand.amount - level) / demand.rate
        if blocking is None or needed is None or (wait is not None and needed > wait):
            blocking, wait = i, needed
            if needed is None:
                break
    allowed = blocking is None
    after = [lv - d.amount if allowed else lv for lv, d in zip(levels, demands, strict=True)]
    readings = tuple(Reading(d.capacity, lv, now) for lv, d in zip(after, demands, strict=True))
    return Decision(allowed, readings, blocking, wait if not allowed else None)
