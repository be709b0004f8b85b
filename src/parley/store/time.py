"""Datetimes as stored: SQLite hands back naive values for timezone-aware columns."""

from __future__ import annotations

from datetime import UTC, datetime


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def utc(at: datetime) -> datetime:
    return aware(at).astimezone(UTC)


def minute_of(at: datetime) -> datetime:
    return utc(at).replace(second=0, microsecond=0)


def month_start(at: datetime) -> datetime:
    return minute_of(at).replace(day=1, hour=0, minute=0)
