"""Times as the API writes them, and the calendar periods usage is counted in."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime


def utc(at: datetime) -> datetime:
    """`at` in UTC; a naive value (as SQLite hands back) is taken to be UTC."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC)


def minute_of(at: datetime) -> datetime:
    return utc(at).replace(second=0, microsecond=0)


def month_start(at: datetime) -> datetime:
    return minute_of(at).replace(day=1, hour=0, minute=0)


def next_month_start(at: datetime) -> datetime:
    start = month_start(at)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def rfc3339(at: datetime) -> str:
    """`2025-01-31T12:00:00Z`: UTC, with a `Z`, as the API writes times."""
    return utc(at).isoformat().replace("+00:00", "Z")


def rfc3339_ceil(epoch: float) -> str:
    """A moment in epoch seconds, rounded up to a whole second (reset times: a
    client that waits until then is sure to find the bucket refilled)."""
    return _rfc3339_second(math.ceil(epoch))


# Every answer carries three reset times, nearly always within the same few seconds.
@functools.lru_cache(maxsize=256)
def _rfc3339_second(epoch: int) -> str:
    return rfc3339(datetime.fromtimestamp(epoch, UTC))
