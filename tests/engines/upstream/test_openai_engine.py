"""The OpenAI-compatible engine against a scripted upstream (fake_openai.py beside this)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import pytest

from parley.config import OpenAIBackendConfig
from parley.core.generation import (
    EngineEvent,
    Finished,
    GenerationRequest,
    Sampling,
    TextChunk,
    ToolCallStart,
    ToolInputChunk,
    Turn,
)
from parley.engines.base import Generation
from parley.engines.openai_compat import OpenAICompatEngine
from parley.errors import (
    InternalServerError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
)
from tests.engines.upstream.conftest import Fake, collect
from tests.engines.upstream.raw_server import raw_server, read_request
from tests.waiting import eventually


def request(text: str, *turns: Turn, **fields: Any) -> GenerationRequest:
    values: dict[str, Any] = {
        "model": "up-1",
        "system": None,
        "turns": (Turn.of("user", text), *turns),
        "max_tokens": 50,
    }
    values.update(fields)
    return GenerationRequest(**values)


@asynccontextmanager
async def engine_for(url: str, **config: Any) -> AsyncIterator[OpenAICompatEngine]:
    claim_timeout = config.pop("claim_timeout", 10.0)
    backend = OpenAIBackendConfig(engine="openai", base_url=url, model="fake-model", **config)
    engine = OpenAICompatEngine(backend, context_window=4096, claim_timeout=claim_timeout)
    try:
        yield engine
    finally:
        await engine.aclose()


async def opened(engine: OpenAICompatEngine, req: GenerationRequest) -> Generation:
    return await engine.open(await engine.prepare(req))


async def run(engine: OpenAICompatEngine, req: GenerationRequest) -> list[EngineEvent]:
    return await read(await opened(engine, req))


async def read(generation: Generation) -> list[EngineEvent]:
    async with aclosing(generation.events) as events:
        return [event async for event in events]


async def test_reply_streams_as_text_chunks_then_finished(fake: Fake) -> None:
    fake.state.token_delay = 0.02  # a token's pace: each chunk goes on alone
    async with engine_for(fake.url) as engine:
        events = await run(engine, request("say: one two three"))
    assert [e.text for e in events if isinstance(e, TextChunk)] == ["one ", "two ", "three"]
    # The counts are the upstream's own, from the usage chunk at the end of the stream.
    assert events[-1] == Finished("end_turn", 3, input_tokens=11)


def sse_reply(*chunks: dict[str, Any]) -> bytes:
    body = b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in chunks)
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


def text_chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


@asynccontextmanager
async def answering(reply: bytes) -> AsyncIterator[str]:
    """A server that answers every request with `reply`, written at once: a backlog, as
    when the upstream runs ahead of Parley."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(reply)

    async with raw_server(handler) as (url, _):
        yield url


async def test_chunks_that_arrived_together_go_on_as_one_text_event() -> None:
    reply = sse_reply(
        text_chunk("one "),
        text_chunk("two "),
        text_chunk("three"),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    )
    async with answering(reply) as url, engine_for(url, flavor="vllm") as engine:
        events = await run(engine, request("hi"))
    assert events == [TextChunk("one two three", 3), Finished("end_turn", 3)]


async def test_text_that_arrived_before_an_error_chunk_still_goes_on_first() -> None:
    reply = sse_reply(text_chunk("a "), text_chunk("b "), {"error": {"message": "boom"}})
    got: list[EngineEvent] = []
    async with answering(reply) as url, engine_for(url, flavor="vllm") as engine:
        generation = await opened(engine, request("hi"))
        with pytest.raises(InternalServerError):
            await collect(generation.events, got)
    assert got == [TextChunk("a b ", 2)]


async def test_request_translation(fake: Fake) -> None:
    req = request(
        "first question",
        Turn.of("assistant", "an answer"),
        Turn.of("user", "say: ok"),
        Turn.of("assistant", "Sure,"),
        system="Be brief.",
        max_tokens=33,
        stop_sequences=("STOP",),
        sampling=Sampling(temperature=0.2, top_p=0.9, top_k=5),
    )
    async with engine_for(fake.url) as engine:
        await run(engine, req)
    body = fake.state.requests[0]
    assert body["model"] == "fake-model"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "say: ok"},
        {"role": "assistant", "content": "Sure,"},
    ]
    assert body["max_tokens"] == 33
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 5)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    # The prefill is continued, not answered (vLLM/SGLang's parameters).
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    # Stop sequences are matched by Parley, not sent (which one matched is unknowable).
    assert "stop" not in body
    assert "tools" not in body


async def test_prefill_refused_when_configured(fake: Fake) -> None:
    async with engine_for(fake.url, prefill="refuse") as engine:
        with pytest.raises(InvalidRequestError, match="prefill"):
            await engine.prepare(request("hi", Turn.of("assistant", "Sure,")))
    assert fake.state.requests == []


async def test_upstream_429_keeps_its_retry_delay(fake: Fake) -> None:
    async with engine_for(fake.url) as engine:
        with pytest.raises(RateLimitError) as caught:
            await opened(engine, request("status: 429"))
    assert caught.value.headers["retry-after"] == "7"
    assert caught.value.headers["x-should-retry"] == "true"


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, InternalServerError), (503, OverloadedError), (502, OverloadedError)],
)
async def test_upstream_5xx_is_retryable(fake: Fake, status: int, error: type[Exception]) -> None:
    async with engine_for(fake.url) as engine:
        with pytest.raises(error) as caught:
            await opened(engine, request(f"status: {status}"))
    assert getattr(caught.value, "headers", {})["x-should-retry"] == "true"


async def test_upstream_400_for_the_request_parley_built_is_parleys_error(
    fake: Fake, caplog: pytest.LogCaptureFixture
) -> None:
    # Parley checked the client's request before translating it: an upstream refusal
    # that is not about the prompt's size is a translation failure, never the client's.
    async with engine_for(fake.url) as engine:
        with pytest.raises(InternalServerError) as caught:
            await opened(engine, request("status: 400"))
    assert caught.value.message == "Internal server error"
    assert caught.value.headers["x-should-retry"] == "false"
    assert "scripted 400" in caplog.text  # the upstream's body is logged


async def test_connection_refused_is_overloaded() -> None:
    async with engine_for("http://127.0.0.1:9/v1") as engine:
        with pytest.raises(OverloadedError) as caught:
            await opened(engine, request("hi"))
    assert caught.value.headers["x-should-retry"] == "true"


async def test_prepare_sends_nothing(fake: Fake) -> None:
    async with engine_for(fake.url) as engine:
        prepared = await engine.prepare(request("say: hello"))
        engine.discard(prepared)
    assert fake.state.requests == []


async def test_error_after_the_headers_surfaces_in_the_events(fake: Fake) -> None:
    # The upstream holds its headers longer than Parley waits: open() returns, and
    # the refusal arrives when generation claims the response.
    async with engine_for(fake.url, header_wait=0.01) as engine:
        generation = await opened(engine, request("headers_delay: 0.3\nstatus: 429"))
        with pytest.raises(RateLimitError):
            await read(generation)


async def test_connection_dropped_mid_reply(fake: Fake) -> None:
    got: list[EngineEvent] = []
    async with engine_for(fake.url) as engine:
        generation = await opened(engine, request("say: a b c d\ndie_after: 2"))
        with pytest.raises(InternalServerError):
            await collect(generation.events, got)
    assert "".join(e.text for e in got if isinstance(e, TextChunk)) == "a b "


async def test_error_chunk_mid_stream(fake: Fake) -> None:
    async with engine_for(fake.url) as engine:
        with pytest.raises(InternalServerError):
            await run(engine, request("say: a b c\nerror_after: 1"))


async def test_length_finish_is_max_tokens(fake: Fake) -> None:
    async with engine_for(fake.url) as engine:
        events = await run(engine, request("say: a b\nfinish: length"))
    assert isinstance(events[-1], Finished)
    assert events[-1].reason == "max_tokens"


async def test_closing_the_generation_closes_the_upstream_stream(fake: Fake) -> None:
    fake.state.token_delay = 0.05
    async with engine_for(fake.url) as engine:
        generation = await opened(engine, request("say: " + " ".join(["w"] * 50)))
        async with aclosing(generation.events) as events:
            first = await anext(events)
        assert isinstance(first, TextChunk)
        await eventually(lambda: fake.state.cancelled == 1)
    assert fake.state.completed == 0


async def test_a_generation_given_up_unread_closes_the_upstream_response(fake: Fake) -> None:
    # The request was opened, then its client went away before reading any of it.
    async with engine_for(fake.url) as engine:
        generation = await opened(engine, request("prefill_delay: 30"))
        await generation.aclose()
        await eventually(lambda: fake.state.cancelled == 1)


async def test_an_unclaimed_upstream_response_is_closed(fake: Fake) -> None:
    # A safety net: a generation nobody reads nor closes is closed after a while.
    async with engine_for(fake.url, claim_timeout=0.05) as engine:
        await opened(engine, request("prefill_delay: 30"))
        await eventually(lambda: fake.state.cancelled == 1)


async def test_claiming_after_the_timeout_reopens(fake: Fake) -> None:
    async with engine_for(fake.url, claim_timeout=0.01) as engine:
        generation = await opened(engine, request("prefill_delay: 0.3\nsay: late"))
        await eventually(lambda: fake.state.cancelled == 1)
        events = await read(generation)
    assert [e.text for e in events if isinstance(e, TextChunk)] == ["late"]
    assert len(fake.state.requests) == 2


async def test_tool_call_fragments_become_one_call(fake: Fake) -> None:
    arguments = '{"city": "Paris", "days": 3}'
    async with engine_for(fake.url) as engine:
        events = await run(engine, request(f"tool: get_weather {arguments}"))
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [s.name for s in starts] == ["get_weather"]
    fragments = [e.partial_json for e in events if isinstance(e, ToolInputChunk)]
    assert len(fragments) > 1
    assert "".join(fragments) == arguments
    assert isinstance(events[-1], Finished)
    assert events[-1].reason == "tool_use"


async def test_health_check(fake: Fake) -> None:
    async with engine_for(fake.url) as engine:
        await engine.check_health()
    async with engine_for("http://127.0.0.1:9/v1") as engine:
        with pytest.raises(OverloadedError):
            await engine.check_health()
