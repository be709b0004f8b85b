"""An upstream's refusal of the request Parley built, as the client's error."""

from __future__ import annotations

import json

import pytest

from parley.engines.upstream_errors import error_message, status_error
from parley.errors import InternalServerError, InvalidRequestError


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # vLLM, llama-cpp-python
        (
            {
                "object": "error",
                "message": "This model's maximum context length is 8192 tokens. However, you "
                "requested 8292 tokens (8192 in the messages, 100 in the completion). Please "
                "reduce the length of the messages or completion.",
                "code": 400,
            },
            "input length and `max_tokens` exceed context limit: 8192 + 100 > 8192, decrease "
            "input length or `max_tokens` and try again",
        ),
        (
            {
                "error": {
                    "message": "This model's maximum context length is 2048 tokens. However, "
                    "you requested 3041 tokens (3031 in the messages, 10 in the completion).",
                    "code": "context_length_exceeded",
                }
            },
            "prompt is too long: 3031 tokens > 2048 maximum",
        ),
        # newer vLLM
        (
            {
                "message": "'max_tokens' or 'max_completion_tokens' is too large: 500. This "
                "model's maximum context length is 4096 tokens and your request has 3900 input "
                "tokens (500 > 4096 - 3900)."
            },
            "input length and `max_tokens` exceed context limit: 3900 + 500 > 4096, decrease "
            "input length or `max_tokens` and try again",
        ),
        # SGLang
        (
            {
                "message": "Input length (40000 tokens) exceeds the maximum allowed length "
                "(32768 tokens). Use a shorter input or enable --allow-auto-truncate."
            },
            "prompt is too long: 40000 tokens > 32768 maximum",
        ),
        # llama-server
        (
            {
                "error": {
                    "code": 400,
                    "message": "request (3031 tokens) exceeds the available context size "
                    "(2048 tokens), try increasing it",
                    "type": "exceed_context_size_error",
                }
            },
            "prompt is too long: 3031 tokens > 2048 maximum",
        ),
        # any other server that says so
        (
            {"error": {"message": "the input length exceeds the context length"}},
            "prompt is too long: the input length exceeds the context length",
        ),
    ],
)
def test_a_prompt_too_long_is_the_clients_400(body: dict[str, object], message: str) -> None:
    raw = json.dumps(body).encode()
    text, _ = error_message(raw)
    error = status_error(400, text, {}, upstream="up", body=raw)
    assert isinstance(error, InvalidRequestError)
    assert error.message == message


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_any_other_refusal_is_parleys_own_failure(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    raw = b'{"error": {"message": "Invalid tool_choice: any"}}'
    error = status_error(status, "Invalid tool_choice: any", {}, upstream="up", body=raw)
    assert isinstance(error, InternalServerError)
    assert (error.message, error.headers) == ("Internal server error", {"x-should-retry": "false"})
    assert "Invalid tool_choice: any" in caplog.text
