"""Message Batches rules (api-spec §11): limits, time rules, the MessageBatch object,
result lines. Pure logic; storage and the worker live in `parley.batches`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from parley.core.validation_errors import invalid_request_from
from parley.errors import APIError, InvalidRequestError
from parley.protocol.batches import (
    MAX_REQUESTS,
    BatchRequest,
    CanceledResult,
    ErroredResult,
    ErrorResponse,
    ExpiredResult,
    MessageBatch,
    ProcessingStatus,
    RequestCounts,
    SucceededResult,
)
from parley.protocol.responses import Message

EXPIRES_AFTER = timedelta(hours=24)
# "results kept 29 days after creation" (api-spec §11).
RESULTS_KEPT = timedelta(days=29)


def validate_request(raw: Any, index: int) -> BatchRequest:
    try:
        return BatchRequest.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request_from(exc, ("requests", index)) from None


def too_few_requests() -> InvalidRequestError:
    # The wording pydantic gives a `list` field with min_length=1 / max_length.
    return InvalidRequestError("requests: List should have at least 1 item after validation, not 0")


def too_many_requests(count: int, limit: int = MAX_REQUESTS) -> InvalidRequestError:
    return InvalidRequestError(
        f"requests: List should have at most {limit} items after validation, not {count}"
    )


def duplicate_custom_id(index: int, custom_id: str) -> InvalidRequestError:
    # Unconfirmed wording (api-spec §11): a create-time 400 that names the request.
    return InvalidRequestError(
        f"requests.{index}.custom_id: Duplicate custom_id {custom_id!r}; each request in a "
        "Message Batch needs a unique custom_id"
    )


def timestamp(at: datetime) -> str:
    # RFC 3339 with microseconds and +00:00, as in the captured real response (§11).
    return at.isoformat()


def results_url(base_url: str, batch_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1/messages/batches/{batch_id}/results"


def message_batch(
    *,
    batch_id: str,
    status: ProcessingStatus,
    request_count: int,
    counts: dict[str, int],
    created_at: datetime,
    expires_at: datetime,
    ended_at: datetime | None,
    cancel_initiated_at: datetime | None,
    archived_at: datetime | None,
    base_url: str,
) -> MessageBatch:
    ended = status == "ended"
    # Until the whole batch ends every request counts as processing (api-spec §11).
    request_counts = RequestCounts(**counts) if ended else RequestCounts(processing=request_count)
    return MessageBatch(
        id=batch_id,
        processing_status=status,
        request_counts=request_counts,
        ended_at=timestamp(ended_at) if ended_at else None,
        created_at=timestamp(created_at),
        expires_at=timestamp(expires_at),
        archived_at=timestamp(archived_at) if archived_at else None,
        cancel_initiated_at=timestamp(cancel_initiated_at) if cancel_initiated_at else None,
        results_url=results_url(base_url, batch_id) if ended else None,
    )


def succeeded_result(message: Message) -> str:
    message.usage.service_tier = "batch"
    return SucceededResult(message=message).model_dump_json()


def errored_result(error: APIError) -> str:
    # The full envelope, without request_id: the request had none of its own.
    return ErroredResult(error=ErrorResponse.model_validate(error.envelope())).model_dump_json()


_FIXED_RESULTS = {
    "canceled": CanceledResult().model_dump_json(),
    "expired": ExpiredResult().model_dump_json(),
}


def result_line(custom_id: str, state: str, result: str | None) -> str:
    """One JSONL line (without its `\\n`). Stored results are spliced in as they are."""
    body = result if result is not None else _FIXED_RESULTS[state]
    return f'{{"custom_id":{json.dumps(custom_id)},"result":{body}}}'
