"""Parse a JSON request body into a protocol model, with the API's error wording."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from parley.core.betas import check_beta_fields
from parley.core.validation_errors import invalid_request_from
from parley.core.versions import APIVersion
from parley.errors import InvalidRequestError
from parley.protocol.requests import SAMPLING_FIELDS

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
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None
