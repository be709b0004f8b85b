"""`parley usage`: requests and tokens per period, key and model, from the store."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from parley.cli.shared import (
    config_option,
    data_dir_option,
    json_option,
    read_settings,
    with_database,
)

if TYPE_CHECKING:
    from parley.cli.usage_summary import Period

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


def _when(text: str | None, now: datetime, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command()
@click.option("--key", "key_ids", multiple=True, help="Only this key id (repeatable).")
@click.option("--since", help="Start: a time (2025-01-31T12:00:00Z) or a time ago (1h, 2d).")
@click.option("--until", help="End (exclusive), in the same forms as --since.")
@click.option(
    "--by",
    "period",
    type=click.Choice(["minute", "hour", "day"]),
    default="day",
    show_default=True,
    help="Period of each row.",
)
@json_option
@data_dir_option
@config_option
def usage(
    key_ids: tuple[str, ...],
    since: str | None,
    until: str | None,
    period: Period,
    as_json: bool,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Requests and tokens per period, key and model (all recorded usage by default)."""
    from parley.cli import render
    from parley.cli.usage_summary import usage_summary
    from parley.store.keys import KeyStore
    from parley.store.usage import UsageStore

    settings = read_settings(config, data_dir=data_dir)
    now = datetime.now(UTC)
    start = _when(since, now, "--since")
    end = _when(until, now, "--until")

    summary = with_database(
        settings,
        lambda db: usage_summary(
            UsageStore(db),
            KeyStore(db),
            since=start,
            until=end,
            key_ids=list(key_ids),
            period=period,
        ),
    )
    render.show_usage(summary, as_json=as_json)
