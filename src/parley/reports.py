"""What `parley keys list` and `parley usage` show: tables for people, JSON for scripts.

Secrets never appear here: keys are shown by id, name and the stored hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from rich import box
from rich.console import Console
from rich.table import Table

from parley.core.calendar import rfc3339
from parley.core.records import ApiKey
from parley.core.usage_report import WIDTHS, Totals, group_rows
from parley.protocol.admin import BucketWidth
from parley.store.keys import KeyStore
from parley.store.usage import UsageStore

Period = Literal["minute", "hour", "day"]
PERIOD_WIDTHS: dict[Period, BucketWidth] = {"minute": "1m", "hour": "1h", "day": "1d"}

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime) -> datetime:
    """An RFC 3339 / ISO 8601 time (UTC if it has no offset), or a time ago: `90m`,
    `1h`, `2d`, `1w`."""
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time (2025-01-31T12:00:00Z) nor a time ago (1h, 2d)"
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def console() -> Console:
    out = Console()
    # Piped output has no width to fit; never wrap or cut ids and numbers there.
    return out if out.is_terminal else Console(width=1000)


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at else "never"


# -- keys -------------------------------------------------------------------------


def key_record(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "tier": key.tier,
        "status": key.status,
        "is_admin": key.is_admin,
        "browser_access": key.browser_access,
        "created_at": rfc3339(key.created_at),
        "last_used_at": rfc3339(key.last_used_at) if key.last_used_at else None,
        "hint": key.hint,
    }


def render_keys(keys: list[ApiKey], out: Console) -> None:
    if not keys:
        out.print("No API keys yet: create one with `parley keys create --name NAME`.")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for title in ("ID", "Name", "Tier", "Status", "Browser", "Created", "Last used", "Hint"):
        table.add_column(title, no_wrap=True)
    for key in keys:
        tier = f"{key.tier} (admin)" if key.is_admin else key.tier
        status = key.status if key.status == "active" else f"[dim]{key.status}[/dim]"
        table.add_row(
            key.id,
            key.name,
            tier,
            status,
            "yes" if key.browser_access else "no",
            _when(key.created_at),
            _when(key.last_used_at),
            key.hint,
        )
    out.print(table)


# -- usage ------------------------------------------------------------------------


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


def _counts(totals: Totals) -> dict[str, int]:
    return {**totals.as_dict(), "total_tokens": totals.total_tokens}


def usage_json(summary: UsageSummary) -> dict[str, Any]:
    return {
        "since": rfc3339(summary.since) if summary.since else None,
        "until": rfc3339(summary.until) if summary.until else None,
        "by": summary.period,
        "rows": [
            {
                "starting_at": rfc3339(line.starting_at),
                "ending_at": rfc3339(line.ending_at),
                "api_key_id": line.api_key_id,
                "key_name": line.key_name,
                "model": line.model,
                **_counts(line.totals),
            }
            for line in summary.lines
        ],
        "totals": _counts(summary.totals),
    }


_PERIOD_FORMATS: dict[Period, str] = {
    "minute": "%Y-%m-%d %H:%M",
    "hour": "%Y-%m-%d %H:00",
    "day": "%Y-%m-%d",
}


def render_usage(summary: UsageSummary, out: Console) -> None:
    span = f"since {_when(summary.since)}" if summary.since else "all recorded"
    if summary.until:
        span += f", until {_when(summary.until)}"
    if not summary.lines:
        out.print(f"No usage ({span}).")
        return
    table = Table(
        title=f"Usage by {summary.period} (UTC), {span}", box=box.SIMPLE_HEAD, show_edge=False
    )
    for title in ("Period", "Key", "Name", "Model"):
        table.add_column(title, no_wrap=True)
    for title in ("Requests", "Input", "Output", "Cache write", "Cache read", "Total tokens"):
        table.add_column(title, justify="right", no_wrap=True)
    for line in summary.lines:
        table.add_row(
            line.starting_at.strftime(_PERIOD_FORMATS[summary.period]),
            line.api_key_id,
            line.key_name or "",
            line.model,
            *_numbers(line.totals),
        )
    table.add_section()
    table.add_row("Total", "", "", "", *_numbers(summary.totals), style="bold")
    out.print(table)


def _numbers(totals: Totals) -> list[str]:
    values = (
        totals.requests,
        totals.input_tokens,
        totals.output_tokens,
        totals.cache_creation_input_tokens,
        totals.cache_read_input_tokens,
        totals.total_tokens,
    )
    return [f"{value:,}" for value in values]
