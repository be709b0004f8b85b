"""Parse a JSON request body into a protocol model, with the API's error wording."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from parley.core.betas import check_beta_fields
from parley.core.threads import thread_unsupported_request, unthreadable_blocks
from parley.core.validation_errors import invalid_request_from
from parley.core.versions import APIVersion
from parley.errors import InvalidRequestError
from parley.protocol.content import DocumentBlockParam, TextBlockParam
from parley.protocol.requests import SAMPLING_FIELDS, MessageParam

M = TypeVar("M", bound=BaseModel)


def decode_json(raw: bytes) -> Any:
    # api-spec §1: the Python SDK sends Content-Type: application/json with an empty
    # body on body-less POSTs; an empty body is an empty object, not malformed JSON.
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"There was an error parsing the body: {exc}") from None


def parse_params(
    raw: bytes, model: type[M], version: APIVersion, betas: frozenset[str] | None = None
) -> M:
    """`betas`: the request's `anthropic-beta` values, which let beta fields in; None
    when there is no header to go by (a batch request's params, checked later)."""
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise InvalidRequestError("Input should be a valid dictionary or object")
    if betas is not None:
        check_beta_fields(data, betas)
    if version.refuses_sampling:
        # api-version §19.4: under 2026-10-21 these fields are gone; any presence is a 400.
        for name in SAMPLING_FIELDS:
            if name in data:
                raise InvalidRequestError(f"{name}: Extra inputs are not permitted")
    # Blocks this server does not read, in a request that asks for a thread: named the
    # way the threads beta names what it cannot thread, so the SDKs' tool runner resends
    # the turn without one (message-threads doc §1.5).
    unsupported = unthreadable_blocks(data) if "thread" in model.model_fields else []
    if unsupported:
        raise thread_unsupported_request(unsupported)
    try:
        params = model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None
    messages = getattr(params, "messages", None)
    if version.refuses_sampling and isinstance(messages, list):
        check_2026_content(messages)
    return params


def check_2026_content(messages: list[MessageParam]) -> None:
    """api-version §19.4: under 2026-10-21 a document may not sit directly in an
    assistant turn, and text in a user turn may not carry citations (both 400s;
    wording unconfirmed)."""
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            continue
        for j, block in enumerate(message.content):
            if message.role == "assistant" and isinstance(block, DocumentBlockParam):
                raise InvalidRequestError(
                    f"messages.{i}.content.{j}: document blocks are not allowed in assistant "
                    "messages; put the document in a user message"
                )
            if message.role == "user" and isinstance(block, TextBlockParam) and block.citations:
                raise InvalidRequestError(
                    f"messages.{i}.content.{j}.text.citations: text blocks in user messages "
                    "cannot carry citations"
                )
