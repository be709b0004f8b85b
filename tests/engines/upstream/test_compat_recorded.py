"""Compatibility rows for vLLM, SGLang and Ollama, from recorded exchanges of their
documented behaviour (fixtures/ beside this file, replayed by replay.py).

Each column sends one Messages request through Parley, checks that the request
Parley sent upstream is the recorded one for that server (its tool turns, how it
forces a call, how it continues a prefill, ...), and that the client sees the
Claude API's answer to the server's recorded reply. The flavor is detected from the
recorded discovery answers, as at a real start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.engines.openai_compat import OpenAICompatEngine
from tests.conftest import running_app
from tests.engines.upstream.compat_rows import CLOCK, PNG, WEATHER, body
from tests.engines.upstream.conftest import error_of, names, openai_model, sse, upstream_settings
from tests.engines.upstream.replay import Replay, replaying

SERVERS = ["vllm", "sglang", "ollama"]
CALL_ID = "toolu_01A09q90qw90lq917835lq9"


@dataclass
class Row:
    server: str
    replay: Replay
    http: httpx.AsyncClient

    @property
    def cache_reads(self) -> bool:
        return self.server in ("vllm", "sglang")

    async def send(self, exchange: str | None, payload: dict[str, Any]) -> httpx.Response:
        self.replay.expect = exchange
        response = await self.http.post("/v1/messages", json=payload)
        assert self.replay.problems == []
        return response

    async def message(self, exchange: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = await self.send(exchange, payload)
        assert response.status_code == 200, response.text
        message: dict[str, Any] = response.json()
        return message


@pytest.fixture(params=SERVERS)
async def row(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Row]:
    server: str = request.param
    async with replaying(server) as (replay, url):
        model = openai_model(url, model=replay.fixture["model"])
        model = model.model_copy(update={"images": True})
        async with running_app(upstream_settings(tmp_path, model)) as (svc, http):
            (backend,) = svc.registry.resolve("up").engine.backends  # type: ignore[attr-defined]
            assert isinstance(backend.engine, OpenAICompatEngine)
            assert backend.engine.upstream.flavor.name == server
            yield Row(server, replay, http)


QUESTION = "What is the capital of France?"
ANSWER = "Paris is the capital of France."


def assert_usage(row: Row, usage: dict[str, Any]) -> None:
    # The recorded prompt is 120 tokens; vLLM and SGLang (with their cache reports on)
    # read 96 of them from the prefix cache, counted apart (api-spec §16).
    assert usage["output_tokens"] == 7
    if row.cache_reads:
        assert (usage["input_tokens"], usage["cache_read_input_tokens"]) == (24, 96)
    else:
        assert (usage["input_tokens"], usage["cache_read_input_tokens"]) == (120, 0)


# -- the columns ---------------------------------------------------------------------------


async def plain_text(row: Row) -> None:
    message = await row.message("plain", body(QUESTION, max_tokens=100))
    assert message["content"] == [{"type": "text", "text": ANSWER}]
    assert message["stop_reason"] == "end_turn"


async def streamed_text(row: Row) -> None:
    response = await row.send("plain", body(QUESTION, max_tokens=100, stream=True))
    events = [(n, d) for n, d in sse(response.text) if n != "ping"]
    # The recording is replayed at once: its chunks arrive together, and their text
    # goes on as one delta or a few.
    order = [n for i, n in enumerate(names(events)) if i == 0 or n != names(events)[i - 1]]
    assert order == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == ANSWER
    assert_usage(row, events[-2][1]["usage"])


async def stop_sequences(row: Row) -> None:
    # Not sent upstream (which sequence matched is unknowable there): matched by Parley.
    payload = body(QUESTION, max_tokens=100, stop_sequences=["capital"])
    message = await row.message("plain", payload)
    assert message["content"] == [{"type": "text", "text": "Paris is the "}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "capital")


async def usage(row: Row) -> None:
    message = await row.message("plain", body(QUESTION, max_tokens=100))
    assert_usage(row, message["usage"])


async def tool_call(row: Row) -> None:
    message = await row.message(
        "tool_call", body("What is the weather in Paris?", max_tokens=100, tools=[WEATHER, CLOCK])
    )
    (block,) = message["content"]
    assert (block["type"], block["name"], block["input"]) == (
        "tool_use",
        "get_weather",
        {"city": "Paris"},
    )
    assert message["stop_reason"] == "tool_use"


async def tool_result(row: Row) -> None:
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": CALL_ID,
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": CALL_ID, "content": "Sunny, 21C"}],
        },
    ]
    payload = body("", max_tokens=100, messages=messages, tools=[WEATHER, CLOCK])
    message = await row.message("tool_result", payload)
    assert message["content"] == [{"type": "text", "text": "It is sunny in Paris, 21C."}]
    assert message["stop_reason"] == "end_turn"


async def tool_choice_any(row: Row) -> None:
    payload = body(
        "What time is it in Paris?",
        max_tokens=100,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "any"},
    )
    message = await row.message("any", payload)
    (block,) = message["content"]
    assert (block["type"], block["name"], block["input"]) == (
        "tool_use",
        "get_time",
        {"zone": "CET"},
    )
    assert message["stop_reason"] == "tool_use"


async def tool_choice_tool(row: Row) -> None:
    payload = body(
        "Hello!",
        max_tokens=100,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_weather"},
        stream=True,
    )
    events = sse((await row.send("tool", payload)).text)
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [(b["type"], b["name"]) for b in starts] == [("tool_use", "get_weather")]
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert partial.replace(" ", "") == '{"city":"London"}'


async def tool_choice_none(row: Row) -> None:
    payload = body(
        "What is the weather in Paris?",
        max_tokens=100,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "none"},
    )
    message = await row.message("none", payload)
    assert message["content"] == [{"type": "text", "text": "I cannot check the weather."}]


async def prefill(row: Row) -> None:
    messages = [
        {"role": "user", "content": "What colour is the sky?"},
        {"role": "assistant", "content": "The sky is"},
    ]
    message = await row.message("prefill", body("", max_tokens=100, messages=messages))
    assert message["content"] == [{"type": "text", "text": " blue."}]


async def images(row: Row) -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "What is in this picture?"},
    ]
    payload = body("", max_tokens=100, messages=[{"role": "user", "content": content}])
    message = await row.message("image", payload)
    assert message["content"] == [{"type": "text", "text": "A single pixel."}]


async def prompt_too_long(row: Row) -> None:
    response = await row.send("too_long", body(QUESTION, max_tokens=100))
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(("prompt is too long", "input length and `max_tokens`"))


async def refused_translation(row: Row) -> None:
    # A 4xx for the request Parley built, not about the prompt: Parley's failure, not
    # the client's, and not worth retrying as is.
    response = await row.send("refused", body("What is the weather?", tools=[WEATHER]))
    assert response.status_code == 500
    assert error_of(response) == {"type": "api_error", "message": "Internal server error"}
    assert response.headers["x-should-retry"] == "false"


async def top_k(row: Row) -> None:
    payload = body(QUESTION, max_tokens=100, top_k=5)
    if row.server == "ollama":
        # Not among the fields Ollama's OpenAI endpoint reads: refused, not dropped.
        response = await row.send(None, payload)
        assert response.status_code == 400
        assert error_of(response)["message"] == "top_k: not supported by model up-1"
        assert row.replay.received == []
        return
    message = await row.message("top_k", payload)
    assert message["content"] == [{"type": "text", "text": ANSWER}]


Column = Callable[[Row], Awaitable[None]]
COLUMNS: list[Column] = [
    plain_text,
    streamed_text,
    stop_sequences,
    usage,
    tool_call,
    tool_result,
    tool_choice_any,
    tool_choice_tool,
    tool_choice_none,
    prefill,
    images,
    prompt_too_long,
    refused_translation,
    top_k,
]


@pytest.mark.parametrize("column", COLUMNS, ids=[c.__name__ for c in COLUMNS])
async def test_row(row: Row, column: Column) -> None:
    await column(row)
