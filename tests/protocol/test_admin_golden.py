"""Golden shapes of the Admin API subset Parley serves: an API key and a page of the
messages usage report (`/v1/organizations/...`).

api-spec.md does not describe these; the goldens follow Anthropic's Admin API
objects as `parley.protocol.admin` documents its choices (null for what Parley has
no notion of, Parley's own fields after the API's). api-version §19.11 gives the
report page's top-level keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from parley.core.records import ApiKey
from parley.core.usage_report import bucket_rows, report_page, report_window
from parley.server.routes.admin import api_key_info
from tests.protocol.golden import ASPECTS, Aspect, check_golden

KEY_A = "apikey_01Rj2N8SVvo6BePZj99NhmiT"
KEY_B = "apikey_01Xq4ZkV3GJtQx7Ubx3hKpSe"


@dataclass
class Row:
    """One stored usage row (core.usage_report.UsageRowLike)."""

    key_id: str
    model: str
    minute: datetime
    counts: dict[str, int] = field(default_factory=dict)


NOW = datetime(2025, 5, 20, 12, tzinfo=UTC)


def rendered(model: BaseModel) -> Any:
    # As routes/admin.py renders it: JSONResponse(model.model_dump(mode="json")).
    return json.loads(json.dumps(model.model_dump(mode="json")))


def api_key() -> Any:
    key = ApiKey(
        id=KEY_A,
        name="Developer Key",
        hint="sk-ant-api03-R2D...igAA",
        tier="default",
        status="active",
        is_admin=False,
        created_at=datetime(2024, 10, 30, 23, 58, 27, 427722, tzinfo=UTC),
        last_used_at=datetime(2024, 11, 2, 9, 15, tzinfo=UTC),
    )
    return rendered(api_key_info(key))


def usage_report() -> Any:
    # Two daily buckets of a longer range: the page has more after it.
    window = report_window(
        starting_at=datetime(2025, 5, 14, tzinfo=UTC),
        ending_at=None,
        width="1d",
        limit=2,
        resume_at=None,
        now=NOW,
    )
    rows = [
        Row(
            KEY_A,
            "claude-sonnet-4-5-20250929",
            datetime(2025, 5, 14, 13, 47, tzinfo=UTC),
            {
                "requests": 3,
                "input_tokens": 1200,
                "output_tokens": 340,
                "cache_creation_input_tokens": 500,
                "cache_read_input_tokens": 2000,
            },
        ),
        Row(
            KEY_A,
            "claude-sonnet-4-5-20250929",
            datetime(2025, 5, 14, 18, 2, tzinfo=UTC),
            {"requests": 1, "input_tokens": 100, "output_tokens": 60},
        ),
        Row(
            KEY_B,
            "scripted-1",
            datetime(2025, 5, 14, 9, 0, tzinfo=UTC),
            {"requests": 2, "input_tokens": 40, "output_tokens": 16},
        ),
    ]
    group_by = {"api_key_id", "model"}
    buckets = bucket_rows(rows, window, by_key=True, by_model=True)
    return rendered(report_page(buckets, window, group_by, refreshed_at=NOW))


CASES: dict[str, Callable[[], Any]] = {
    "admin_api_key": api_key,
    "admin_usage_report": usage_report,
}


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, aspect: Aspect) -> None:
    check_golden(name, CASES[name](), aspect)


def test_usage_report_page_has_the_admin_report_keys() -> None:
    # api-version §19.11: "admin reports use {data, next_page, has_more,
    # data_refreshed_at}". Parley reads the store at the request, so the figures are
    # as fresh as the request itself.
    page = usage_report()
    assert set(page) == {"data", "next_page", "has_more", "data_refreshed_at"}
    assert page["data_refreshed_at"] == "2025-05-20T12:00:00Z"
