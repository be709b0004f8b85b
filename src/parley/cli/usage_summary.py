"""The data behind `parley usage`: recorded usage per period, key and model, with
the keys' names and the totals. Secrets never appear here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from parley.core.usage_report import WIDTHS, Totals, group_rows
from parley.protocol.admin import BucketWidth
from parley.store.keys import KeyStore
from parley.store.usage import UsageStore

Period = Literal["minute", "hour", "day"]
PERIOD_WIDTHS: dict[Period, BucketWidth] = {"minute": "1m", "hour": "1h", "day": "1d"}


@dataclass
class UsageLine:
    starting_at: datetime
    ending_at: datetime
    api_key_id: str
    key_name: str | None
    model: str
    totals: Totals


@dataclass
class UsageSummary:
    since: datetime | None
    until: datetime | None
    period: Period
    lines: list[UsageLine] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)


async def usage_summary(
    usage: UsageStore,
    keys: KeyStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    key_ids: list[str] | None = None,
    period: Period = "day",
) -> UsageSummary:
    """Usage per period, key and model (periods without usage left out), with totals."""
    width = PERIOD_WIDTHS[period]
    rows = await usage.rows(since=since, until=until, key_ids=key_ids or None)
    names = {key.id: key.name for key in await keys.list()}
    summary = UsageSummary(since, until, period)
    for start, groups in group_rows(rows, width, by_key=True, by_model=True).items():
        for group in groups:
            key_id, model = group.api_key_id or "", group.model or ""
            summary.lines.append(
                UsageLine(
                    start, start + WIDTHS[width], key_id, names.get(key_id), model, group.totals
                )
            )
            summary.totals.merge(group.totals)
    return summary
