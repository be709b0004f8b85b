"""The messages usage report: time buckets and per-bucket totals (Admin API).

Pure logic over per-(key, model, minute) usage rows: which buckets a page
covers, the cursor to the next page, and the sums inside each bucket.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from parley.core.calendar import rfc3339
from parley.errors import InvalidRequestError
from parley.protocol.admin import (
    BucketWidth,
    MessagesUsageBucket,
    MessagesUsageReport,
    MessagesUsageResult,
    UsageCacheCreation,
)

WIDTHS: dict[BucketWidth, timedelta] = {
    "1m": timedelta(minutes=1),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}

# Buckets per page, (default, maximum), as Anthropic documents them per bucket width.
LIMITS: dict[BucketWidth, tuple[int, int]] = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}

_PAGE_PREFIX = "page_"


class UsageRowLike(Protocol):
    """One stored usage row: counts for a key and model in one minute."""

    @property
    def key_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def minute(self) -> datetime: ...
    @property
    def counts(self) -> Mapping[str, int]: ...


def bucket_start(at: datetime, width: BucketWidth) -> datetime:
    """The start of the bucket holding `at`, snapped in UTC."""
    at = at.astimezone(UTC).replace(second=0, microsecond=0)
    if width in ("1h", "1d"):
        at = at.replace(minute=0)
    if width == "1d":
        at = at.replace(hour=0)
    return at


def encode_page(at: datetime) -> str:
    # Shaped like Anthropic's tokens (`page_` + base64 of an RFC 3339 time), which
    # are documented as opaque: only what we hand out needs to come back in.
    return _PAGE_PREFIX + base64.b64encode(rfc3339(at).encode()).decode()


def decode_page(token: str) -> datetime:
    """The bucket start a `next_page` token points at; ValueError if it is not one."""
    try:
        if not token.startswith(_PAGE_PREFIX):
            raise ValueError("no prefix")
        # binascii.Error and UnicodeDecodeError are ValueErrors too.
        at = datetime.fromisoformat(
            base64.b64decode(token[len(_PAGE_PREFIX) :], validate=True).decode()
        )
        if at.tzinfo is None:
            raise ValueError("no offset")
        at = at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"not a page token: {token!r}") from None
    return at


@dataclass(frozen=True)
class Window:
    """The buckets of one page, and where the next page starts (None: no more)."""

    starts: list[datetime]
    width: BucketWidth
    next_start: datetime | None

    @property
    def start(self) -> datetime | None:
        return self.starts[0] if self.starts else None

    @property
    def end(self) -> datetime | None:
        return self.starts[-1] + WIDTHS[self.width] if self.starts else None


def plan_window(start: datetime, end: datetime, width: BucketWidth, limit: int) -> Window:
    """Up to `limit` buckets from the one holding `start`, each starting before `end`."""
    step = WIDTHS[width]
    at = bucket_start(start, width)
    starts: list[datetime] = []
    while at < end and len(starts) < limit:
        starts.append(at)
        at += step
    return Window(starts, width, at if at < end else None)


def report_window(
    *,
    starting_at: datetime,
    ending_at: datetime | None,
    width: BucketWidth,
    limit: int | None,
    resume_at: datetime | None,
    now: datetime,
) -> Window:
    """The buckets of one report page. `resume_at` is where a `next_page` token points."""
    default, maximum = LIMITS[width]
    limit = limit or default
    if limit > maximum:
        raise InvalidRequestError(f"limit: Input should be less than or equal to {maximum}")
    if ending_at is not None and ending_at <= starting_at:
        raise InvalidRequestError("ending_at: must be after starting_at")
    # The report ends with the current bucket at the latest: nothing lies beyond it.
    end = bucket_start(now, width) + WIDTHS[width]
    if ending_at is not None:
        end = min(end, ending_at)
    return plan_window(resume_at or starting_at, end, width, limit)


@dataclass
class Totals:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def add(self, counts: Mapping[str, int]) -> None:
        self.requests += counts.get("requests", 0)
        self.input_tokens += counts.get("input_tokens", 0)
        self.output_tokens += counts.get("output_tokens", 0)
        self.cache_creation_input_tokens += counts.get("cache_creation_input_tokens", 0)
        self.cache_read_input_tokens += counts.get("cache_read_input_tokens", 0)

    def merge(self, other: Totals) -> None:
        self.add(other.as_dict())

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


@dataclass
class Group:
    """Totals for one key and model inside a bucket; None where not grouped by it."""

    api_key_id: str | None
    model: str | None
    totals: Totals = field(default_factory=Totals)


@dataclass
class Bucket:
    starting_at: datetime
    ending_at: datetime
    groups: list[Group] = field(default_factory=list)


def group_rows(
    rows: Iterable[UsageRowLike],
    width: BucketWidth,
    *,
    by_key: bool,
    by_model: bool,
) -> dict[datetime, list[Group]]:
    """Sum rows per bucket start (only buckets that have rows), groups sorted by key
    then model."""
    sums: dict[datetime, dict[tuple[str | None, str | None], Totals]] = {}
    for row in rows:
        start = bucket_start(row.minute, width)
        name = (row.key_id if by_key else None, row.model if by_model else None)
        sums.setdefault(start, {}).setdefault(name, Totals()).add(row.counts)
    return {
        start: [
            Group(key, model, totals)
            for (key, model), totals in sorted(
                groups.items(), key=lambda item: (item[0][0] or "", item[0][1] or "")
            )
        ]
        for start, groups in sorted(sums.items())
    }


def bucket_rows(
    rows: Iterable[UsageRowLike], window: Window, *, by_key: bool, by_model: bool
) -> list[Bucket]:
    """Every bucket of the window, in order, empty ones included."""
    step = WIDTHS[window.width]
    grouped = group_rows(rows, window.width, by_key=by_key, by_model=by_model)
    return [Bucket(start, start + step, grouped.get(start, [])) for start in window.starts]


def report_page(
    buckets: list[Bucket], window: Window, group_by: AbstractSet[str], *, refreshed_at: datetime
) -> MessagesUsageReport:
    """The wire page for `buckets`."""
    return MessagesUsageReport(
        data=[
            MessagesUsageBucket(
                starting_at=rfc3339(bucket.starting_at),
                ending_at=rfc3339(bucket.ending_at),
                results=[_result(group, group_by) for group in bucket.groups],
            )
            for bucket in buckets
        ],
        has_more=window.next_start is not None,
        next_page=encode_page(window.next_start) if window.next_start is not None else None,
        data_refreshed_at=rfc3339(refreshed_at.replace(microsecond=0)),
    )


def _result(group: Group, group_by: AbstractSet[str]) -> MessagesUsageResult:
    totals = group.totals
    return MessagesUsageResult(
        # Parley has no prompt cache of its own: input tokens are all uncached, and
        # any cache writes it records are 5-minute ones (the API's default TTL).
        uncached_input_tokens=totals.input_tokens,
        cache_creation=UsageCacheCreation(
            ephemeral_5m_input_tokens=totals.cache_creation_input_tokens
        ),
        cache_read_input_tokens=totals.cache_read_input_tokens,
        output_tokens=totals.output_tokens,
        api_key_id=group.api_key_id,
        model=group.model,
        # Dimensions Parley does not track have one value each; like the real API,
        # they are null unless the report is grouped by them. Parley does not record
        # prompt lengths, so long-context (200k+) usage is not told apart.
        service_tier="standard" if "service_tier" in group_by else None,
        context_window="0-200k" if "context_window" in group_by else None,
    )
