"""Message Batches: the create body's requests, MessageBatch, results (api-spec §11)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from parley.protocol.content import Strict
from parley.protocol.responses import Message

MAX_REQUESTS = 100_000
CUSTOM_ID_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
# A header of Parley's own on the retrieve of an unfinished batch: how many of its
# requests have a result so far (request_counts stay all `processing` until the end).
PROGRESS_HEADER = "parley-batch-requests-finished"

ProcessingStatus = Literal["in_progress", "canceling", "ended"]


class BatchRequestParams(TypedDict, total=False):
    """What create itself checks of `params`. Everything else is validated like a
    `/v1/messages` body when the request runs, and a failure there becomes an `errored`
    result, not a failed create (api-spec §11)."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    # The SDKs type batch params as non-streaming create params (`stream: false` allowed).
    stream: Literal[False] | None


class BatchRequest(Strict):
    # The real API checks these at create time, pydantic-style:
    # `requests.0.custom_id: String should have at most 64 characters` [OBS].
    custom_id: Annotated[str, Field(min_length=1, max_length=64, pattern=CUSTOM_ID_PATTERN)]
    params: BatchRequestParams


class RequestCounts(BaseModel):
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


class MessageBatch(BaseModel):
    id: str
    type: Literal["message_batch"] = "message_batch"
    processing_status: ProcessingStatus
    request_counts: RequestCounts
    ended_at: str | None
    created_at: str
    expires_at: str
    archived_at: str | None
    cancel_initiated_at: str | None
    results_url: str | None


class DeletedMessageBatch(BaseModel):
    id: str
    type: Literal["message_batch_deleted"] = "message_batch_deleted"


class ErrorResponse(BaseModel):
    """The full error envelope, as an `errored` result carries it (api-spec §11)."""

    type: Literal["error"] = "error"
    error: dict[str, Any]


class SucceededResult(BaseModel):
    type: Literal["succeeded"] = "succeeded"
    message: Message


class ErroredResult(BaseModel):
    type: Literal["errored"] = "errored"
    error: ErrorResponse


class CanceledResult(BaseModel):
    type: Literal["canceled"] = "canceled"


class ExpiredResult(BaseModel):
    type: Literal["expired"] = "expired"
