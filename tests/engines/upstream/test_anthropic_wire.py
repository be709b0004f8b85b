"""The Messages body Parley sends upstream, and upstream errors as the client sees them."""

from __future__ import annotations

import base64

import pytest

from parley.core.generation import (
    GenerationRequest,
    ImagePart,
    Sampling,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Turn,
)
from parley.engines.anthropic_wire import anthropic_error, messages_body
from parley.errors import InternalServerError, InvalidRequestError, OverloadedError, RateLimitError

TOOL = ToolSpec("lookup", None, {"type": "object", "properties": {}})
PNG = b"\x89PNG\r\n\x1a\nfake"


def test_text_conversation_with_sampling_and_stops() -> None:
    request = GenerationRequest(
        model="parley-name",
        system="Be brief.",
        turns=(Turn.of("user", "Hi"), Turn.of("assistant", "Hello,")),
        max_tokens=20,
        stop_sequences=("END",),
        sampling=Sampling(temperature=1.0, top_k=3),
    )
    assert messages_body(request, "claude-up", stream=True) == {
        "model": "claude-up",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello,"},
        ],
        "system": "Be brief.",
        "max_tokens": 20,
        "stream": True,
        "stop_sequences": ["END"],
        "top_k": 3,  # temperature 1.0 is the API's default and is left out
    }


def test_tools_images_and_tool_results() -> None:
    request = GenerationRequest(
        model="m",
        system=None,
        turns=(
            Turn.of("user", "Look", ImagePart("image/png", PNG)),
            Turn.of("assistant", ToolCall("toolu_1", "lookup", {"q": 1})),
            Turn.of("user", ToolResult("toolu_1", "lookup", (ImagePart("image/png", PNG),), True)),
        ),
        max_tokens=5,
        tools=(TOOL,),
        tool_choice=ToolChoice("tool", "lookup", parallel=False),
    )
    body = messages_body(request, "claude-up", stream=False)
    image = {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(PNG).decode(),
        },
    }
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Look"}, image]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [image],
                    "is_error": True,
                }
            ],
        },
    ]
    assert body["tools"] == [
        {"name": "lookup", "input_schema": {"type": "object", "properties": {}}}
    ]
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "lookup",
        "disable_parallel_tool_use": True,
    }
    assert "max_tokens" not in body  # a count_tokens body


def test_rate_limits_keep_the_delay_but_not_the_upstream_wording() -> None:
    error = anthropic_error(
        "rate_limit_error",
        "This request would exceed the rate limit for your organization (0f1e...)",
        {"retry-after": "12"},
        status=429,
        upstream="anthropic",
    )
    assert isinstance(error, RateLimitError)
    assert error.headers == {"retry-after": "12", "x-should-retry": "true"}
    assert "organization" not in error.message


@pytest.mark.parametrize("kind", ["authentication_error", "permission_error", "not_found_error"])
def test_problems_with_the_server_held_key_or_model_are_internal(kind: str) -> None:
    error = anthropic_error(kind, "invalid x-api-key", {}, status=401, upstream="anthropic")
    assert isinstance(error, InternalServerError)
    assert error.message == "Internal server error"


def test_client_errors_and_overload_pass_through() -> None:
    bad = anthropic_error(
        "invalid_request_error", "prompt is too long", {}, status=400, upstream="u"
    )
    assert isinstance(bad, InvalidRequestError)
    assert bad.message == "prompt is too long"
    busy = anthropic_error("overloaded_error", "Overloaded", {}, status=529, upstream="u")
    assert isinstance(busy, OverloadedError)
    assert busy.headers["x-should-retry"] == "true"
