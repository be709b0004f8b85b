"""Golden shapes of Message Batches: MessageBatch, the deleted marker and the results
JSONL lines (api-spec §11; api-version §19.13).

Objects come from `parley.core.batches` as the batch service builds them; the
succeeded result carries the same Message as the `/v1/messages` golden, through
`succeeded_result`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from parley.core.batches import (
    EXPIRES_AFTER,
    errored_result,
    message_batch,
    result_line,
    succeeded_result,
)
from parley.errors import InvalidRequestError
from parley.protocol.batches import DeletedMessageBatch
from tests.protocol.golden import ASPECTS, Aspect, check_golden
from tests.protocol.scripted_run import run_stream

BATCH_ID = "msgbatch_01VTw9gMkYA9XhLwhbu2dEDw"
BASE_URL = "http://localhost:8000"
CREATED = datetime(2026, 6, 2, 15, 3, 37, 719714, tzinfo=UTC)


def in_progress() -> Any:
    batch = message_batch(
        batch_id=BATCH_ID,
        status="in_progress",
        request_count=7,
        counts={},
        created_at=CREATED,
        expires_at=CREATED + EXPIRES_AFTER,
        ended_at=None,
        cancel_initiated_at=None,
        archived_at=None,
        base_url=BASE_URL,
    )
    return json.loads(json.dumps(batch.model_dump(mode="json")))


def ended() -> Any:
    batch = message_batch(
        batch_id=BATCH_ID,
        status="ended",
        request_count=7,
        counts={"succeeded": 4, "errored": 1, "canceled": 1, "expired": 1},
        created_at=CREATED,
        expires_at=CREATED + EXPIRES_AFTER,
        ended_at=CREATED + timedelta(minutes=20, seconds=5),
        cancel_initiated_at=CREATED + timedelta(minutes=20),
        archived_at=None,
        base_url=BASE_URL,
    )
    return json.loads(json.dumps(batch.model_dump(mode="json")))


def line(custom_id: str, state: str, result: str | None) -> Any:
    text = result_line(custom_id, state, result)
    assert "\n" not in text  # one JSONL line; a blank line crashes both SDKs (§11)
    return json.loads(text)


CASES: dict[str, Callable[[], Any]] = {
    "batch_in_progress": in_progress,
    "batch_ended": ended,
    "batch_deleted": lambda: DeletedMessageBatch(id=BATCH_ID).model_dump(mode="json"),
    "batch_result_succeeded": lambda: line("req-1", "succeeded", succeeded_result(run_stream()[1])),
    "batch_result_errored": lambda: line(
        "req-2", "errored", errored_result(InvalidRequestError("max_tokens: Field required"))
    ),
    "batch_result_canceled": lambda: line("req-3", "canceled", None),
    "batch_result_expired": lambda: line("req-4", "expired", None),
}


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, aspect: Aspect) -> None:
    check_golden(name, CASES[name](), aspect)
