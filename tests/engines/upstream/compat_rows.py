"""One row of the compatibility matrix (docs/upstreams.md): what a client of the Claude
API sees through Parley in front of one real server, checked request by request.

Every check sends an ordinary Messages request through Parley and asserts what the
real API would answer: text, streams, stop sequences, usage, a tool call and its
result turn, tool_choice any/tool/none, a prefill continued, images where the model
reads them (refused with the API's 400 where not), and an upstream refusal mapped.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.engines.upstream.conftest import UPSTREAM_MODEL, error_of, names, sse

STORY = "Write a long story about a lighthouse keeper."
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    },
}
CLOCK = {
    "name": "get_time",
    "description": "The current time in a time zone",
    "input_schema": {
        "type": "object",
        "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "PST"]}},
        "required": ["zone"],
    },
}
# A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
    )
).decode()


@dataclass(frozen=True)
class Row:
    """What differs between servers, as the client would see it."""

    name: str
    images: bool = False
    # The server reports a prompt's cached part, so a repeated prompt reads from cache.
    cache_reads: bool = False
    # The server's own context window (its refusal of a longer prompt is checked).
    context: int = 2048
    # Parley's `context_window` for the model: larger than the server's, so that the
    # server itself refuses; the same where the server cannot say why it failed.
    parley_context: int = 32768


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": UPSTREAM_MODEL,
        "max_tokens": 16,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


async def post(http: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/v1/messages", json=payload)
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()
    return message


def blocks(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in message["content"] if b["type"] == kind]


# -- the checks ----------------------------------------------------------------------------


async def plain_text(http: httpx.AsyncClient, row: Row) -> None:
    message = await post(http, body("What is the capital of France?"))
    assert message["content"][0]["type"] == "text"
    assert message["content"][0]["text"].strip()
    assert message["stop_reason"] in ("end_turn", "max_tokens")


async def streamed_text(http: httpx.AsyncClient, row: Row) -> None:
    response = await http.post("/v1/messages", json=body(STORY, max_tokens=8, stream=True))
    events = sse(response.text)
    order = names(events)
    assert order[:2] == ["message_start", "content_block_start"]
    assert order[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "max_tokens"  # finish_reason "length"
    assert 1 <= delta["usage"]["output_tokens"] <= 8


async def stop_sequences(http: httpx.AsyncClient, row: Row) -> None:
    payload = body(STORY, max_tokens=40, stop_sequences=[" "], stream=True)
    events = sse((await http.post("/v1/messages", json=payload)).text)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    delta = next(d for n, d in events if n == "message_delta")
    assert (delta["delta"]["stop_reason"], delta["delta"]["stop_sequence"]) == (
        "stop_sequence",
        " ",
    )
    assert " " not in text


async def usage(http: httpx.AsyncClient, row: Row) -> None:
    payload = body("You are a pirate. " * 40 + "Say hi.", max_tokens=4)
    first = (await post(http, payload))["usage"]
    again = (await post(http, payload))["usage"]
    assert first["output_tokens"] >= 1
    assert first["input_tokens"] > 100
    if row.cache_reads:
        # The repeated prompt is read from the server's prompt cache, and the API
        # counts cache reads apart from input_tokens (api-spec §16).
        assert again["cache_read_input_tokens"] > 100
        assert again["input_tokens"] + again["cache_read_input_tokens"] == (
            first["input_tokens"] + first["cache_read_input_tokens"]
        )
    else:
        assert again["cache_read_input_tokens"] == 0


async def tool_call_and_result(http: httpx.AsyncClient, row: Row) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    call = await post(
        http,
        body(
            "",
            max_tokens=60,
            messages=[question],
            tools=[WEATHER, CLOCK],
            tool_choice={"type": "tool", "name": "get_weather"},
        ),
    )
    (use,) = blocks(call, "tool_use")
    assert use["name"] == "get_weather"
    assert isinstance(use["input"].get("city"), str)
    assert use["id"].startswith("toolu_")
    answer = await post(
        http,
        body(
            "",
            max_tokens=24,
            messages=[
                question,
                {"role": "assistant", "content": call["content"]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use["id"], "content": "Sunny, 21C"}
                    ],
                },
            ],
            tools=[WEATHER, CLOCK],
        ),
    )
    assert answer["stop_reason"] in ("end_turn", "max_tokens", "tool_use")
    assert answer["content"]


async def tool_choice_any(http: httpx.AsyncClient, row: Row) -> None:
    message = await post(
        http,
        body(
            "What time is it in Paris?",
            max_tokens=60,
            tools=[WEATHER, CLOCK],
            tool_choice={"type": "any"},
        ),
    )
    # Never prose under a forced choice: one call, and nothing before it.
    assert message["content"][0]["type"] == "tool_use"
    assert message["content"][0]["name"] in ("get_weather", "get_time")
    assert message["stop_reason"] == "tool_use"


async def tool_choice_tool_streamed(http: httpx.AsyncClient, row: Row) -> None:
    payload = body(
        "Hello!",
        max_tokens=60,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_time"},
        stream=True,
    )
    events = sse((await http.post("/v1/messages", json=payload)).text)
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [b["type"] for b in starts] == ["tool_use"]
    assert starts[0]["name"] == "get_time"
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert deltas
    assert all(d["type"] == "input_json_delta" for d in deltas)
    assert '"zone"' in "".join(d["partial_json"] for d in deltas)
    assert next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"] == "tool_use"


async def tool_choice_none(http: httpx.AsyncClient, row: Row) -> None:
    message = await post(
        http,
        body(
            "What is the weather in Paris?",
            tools=[WEATHER, CLOCK],
            tool_choice={"type": "none"},
        ),
    )
    assert not blocks(message, "tool_use")
    assert blocks(message, "text")


async def prefill(http: httpx.AsyncClient, row: Row) -> None:
    start = "The colour of the sky is"
    message = await post(
        http,
        body(
            "",
            max_tokens=12,
            messages=[
                {"role": "user", "content": "What colour is the sky?"},
                {"role": "assistant", "content": start},
            ],
        ),
    )
    text = message["content"][0]["text"]
    # Continued, not repeated and not started over (api-spec §5.2).
    assert text.strip()
    assert not text.lstrip().startswith(start)
    assert not text.lstrip().startswith("The")


async def images(http: httpx.AsyncClient, row: Row) -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "What is in this picture?"},
    ]
    response = await http.post(
        "/v1/messages", json=body("", messages=[{"role": "user", "content": content}])
    )
    if row.images:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400
    assert "does not support image input" in error_of(response)["message"]


async def prompt_too_long(http: httpx.AsyncClient, row: Row) -> None:
    # The server refuses a prompt longer than its context (or, where its streams end
    # without a word, Parley refuses it first against the configured window): the
    # client gets the API's 400 for a prompt too long, never a 500.
    response = await http.post("/v1/messages", json=body("hello world " * 1500))
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("prompt is too long: ")
    assert error["message"].endswith(f" > {row.context} maximum")


Check = Callable[[httpx.AsyncClient, Row], Awaitable[None]]
CHECKS: list[Check] = [
    plain_text,
    streamed_text,
    stop_sequences,
    usage,
    tool_call_and_result,
    tool_choice_any,
    tool_choice_tool_streamed,
    tool_choice_none,
    prefill,
    images,
    prompt_too_long,
]


def row_checks() -> Any:
    """`@row_checks()` over a test taking `check`: one test per column of the row."""
    return pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
