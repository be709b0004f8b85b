"""Golden shapes of the error envelope (api-spec §6.4, §12; api-version §19.8).

Each body is rendered the way the server sends it: `envelope(request_id, http=True)`
for an HTTP response, `error_frame` for an SSE `error` event, the bare `envelope()`
that the edge's 413 sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from parley.core.sse import error_frame
from parley.core.threads import thread_not_found, thread_unsupported_request
from parley.errors import (
    TOO_LARGE,
    APIError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
    RequestTooLargeError,
)
from tests.protocol.golden import ASPECTS, Aspect, check_golden, parse_frame

REQUEST_ID = "req_011CSHoEeqs5C35K2UUqR7Fy"


def http_body(error: APIError) -> Any:
    # As server/errors.py renders it (JSONResponse of the envelope).
    return json.loads(json.dumps(error.envelope(REQUEST_ID, http=True)))


def sse_error_event() -> Any:
    name, data = parse_frame(error_frame(OverloadedError("Overloaded")))
    assert name == "error"
    return data


def edge_413() -> Any:
    # server/middleware.py sends `RequestTooLargeError(TOO_LARGE).envelope()`; the
    # exception handler would pass a request id, which the edge body must not show.
    bare = RequestTooLargeError(TOO_LARGE).envelope()
    assert RequestTooLargeError(TOO_LARGE).envelope(REQUEST_ID, http=True) == bare
    return json.loads(json.dumps(bare))


CASES: dict[str, Callable[[], Any]] = {
    "error_http": lambda: http_body(InvalidRequestError("max_tokens: Field required")),
    "error_sse_event": sse_error_event,
    "error_413": edge_413,
    # api-spec §15 / api-version §19.8: a spend cap's 429 names its cause.
    "error_details_spend_limit": lambda: http_body(
        RateLimitError(
            "You have reached your specified API usage limits. You will regain access on "
            "2026-11-01 at 00:00 UTC.",
            details={"error_code": "enforced_spend_limit_reached"},
        )
    ),
    # api-version §19.8: some codes add fields next to error_code.
    "error_details_image_dimensions": lambda: http_body(
        InvalidRequestError(
            "messages.0.content.1.image.source.base64.data: image dimensions exceed max "
            "allowed size: 8000 pixels",
            details={
                "error_code": "image_dimensions_too_large",
                "max_side_length_pixels": 8000,
                "paths": ["messages.0.content.1"],
            },
        )
    ),
    # message-threads doc §1.4: the SDKs read `details.error_code` (and `unsupported`).
    "error_thread_not_found": lambda: http_body(thread_not_found("msg_01XFDUDYJgAACzvnptvVoYEL")),
    "error_thread_unsupported_request": lambda: http_body(
        thread_unsupported_request(["tool_addition"])
    ),
}


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, aspect: Aspect) -> None:
    check_golden(name, CASES[name](), aspect)


def test_sse_error_event_is_named_error() -> None:
    # §6.4: after a 200, a failure is `event: error` with the envelope (no request_id).
    frame = error_frame(OverloadedError("Overloaded"))
    assert frame.startswith(b"event: error\ndata: ")
