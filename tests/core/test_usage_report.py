"""Buckets, page tokens and sums of the messages usage report (pure logic)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest

from parley.core.usage_report import (
    bucket_rows,
    bucket_start,
    decode_page,
    encode_page,
    group_rows,
    plan_window,
)

T0 = datetime(2025, 5, 14, 13, 47, 12, 345000, tzinfo=UTC)


@dataclass
class Row:
    key_id: str
    model: str
    minute: datetime
    counts: dict[str, int] = field(default_factory=dict)


def test_bucket_start_snaps_in_utc() -> None:
    assert bucket_start(T0, "1m") == datetime(2025, 5, 14, 13, 47, tzinfo=UTC)
    assert bucket_start(T0, "1h") == datetime(2025, 5, 14, 13, tzinfo=UTC)
    assert bucket_start(T0, "1d") == datetime(2025, 5, 14, tzinfo=UTC)
    # 01:30 at +02:00 is the previous day in UTC.
    early = datetime(2025, 5, 15, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert bucket_start(early, "1d") == datetime(2025, 5, 14, tzinfo=UTC)


def test_page_tokens_look_like_anthropics_and_round_trip() -> None:
    day = datetime(2025, 5, 14, tzinfo=UTC)
    assert encode_page(day) == "page_MjAyNS0wNS0xNFQwMDowMDowMFo="  # the documented example
    assert decode_page(encode_page(day)) == day
    naive = "page_" + base64.b64encode(b"2025-05-14T00:00:00").decode()
    for bad in ("", "page_", "page_!!", "MjAyNS0wNS0xNFQwMDowMDowMFo=", naive):
        with pytest.raises(ValueError, match="not a page token"):
            decode_page(bad)


def test_plan_window_limits_and_points_at_the_next_page() -> None:
    end = datetime(2025, 5, 14, 18, tzinfo=UTC)
    window = plan_window(T0, end, "1h", 3)
    assert window.starts == [datetime(2025, 5, 14, h, tzinfo=UTC) for h in (13, 14, 15)]
    assert window.next_start == datetime(2025, 5, 14, 16, tzinfo=UTC)
    last = plan_window(window.next_start, end, "1h", 3)
    assert [s.hour for s in last.starts] == [16, 17]
    assert last.next_start is None
    empty = plan_window(end, end, "1h", 3)
    assert (empty.starts, empty.start, empty.end, empty.next_start) == ([], None, None, None)


def test_rows_are_summed_per_bucket_and_group() -> None:
    rows = [
        Row("a", "m1", T0, {"requests": 1, "input_tokens": 5}),
        Row("a", "m2", T0 + timedelta(minutes=1), {"requests": 2, "output_tokens": 7}),
        Row("b", "m1", T0 + timedelta(hours=2), {"requests": 1, "input_tokens": 3}),
    ]
    ungrouped = group_rows(rows, "1d", by_key=False, by_model=False)
    [(day, [total])] = ungrouped.items()
    assert day == datetime(2025, 5, 14, tzinfo=UTC)
    assert (total.api_key_id, total.model) == (None, None)
    assert total.totals.as_dict() == {
        "requests": 4,
        "input_tokens": 8,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert total.totals.total_tokens == 15

    by_model = group_rows(rows, "1d", by_key=False, by_model=True)[day]
    assert [(g.model, g.totals.requests) for g in by_model] == [("m1", 2), ("m2", 2)]

    window = plan_window(T0, T0 + timedelta(hours=3), "1h", 10)  # 13:00 to 17:00
    buckets = bucket_rows(rows, window, by_key=True, by_model=False)
    assert [[(g.api_key_id, g.totals.requests) for g in b.groups] for b in buckets] == [
        [("a", 3)],
        [],
        [("b", 1)],
        [],
    ]
