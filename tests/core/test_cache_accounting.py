"""Prompt caching in the neutral request and in usage: the caller's cache_control marks
kept on the parts they were set on, and a backend's cache counts reported apart from
input_tokens (api-spec §16)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from parley.core.conversation import generation_request
from parley.core.generation import (
    CacheMark,
    CacheUsage,
    EngineCapabilities,
    EngineEvent,
    Finished,
    GenerationRequest,
    TextChunk,
    ToolCall,
    ToolResult,
    Turn,
)
from parley.core.messages import MessageStream, collect_message
from parley.protocol.requests import MessageCreateParams

ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
EPHEMERAL = {"type": "ephemeral"}


async def test_cache_marks_stay_on_their_parts() -> None:
    params = MessageCreateParams.model_validate(
        {
            "model": "m",
            "max_tokens": 10,
            "system": [
                {"type": "text", "text": "Rules."},
                {"type": "text", "text": "Manual.", "cache_control": ONE_HOUR},
            ],
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Doc", "cache_control": EPHEMERAL}],
                },
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "t",
                            "input": {},
                            "cache_control": EPHEMERAL,
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": "ok",
                            "cache_control": ONE_HOUR,
                        }
                    ],
                },
            ],
        }
    )
    request = await generation_request(params, EngineCapabilities(tools=True))
    assert request.cache is None
    assert request.system == "Rules.\n\nManual."
    assert [p.cache for p in request.system_parts] == [None, CacheMark("1h")]
    assert request.tools[0].cache is None
    document, call, result = (turn.parts[0] for turn in request.turns)
    assert document.cache == CacheMark()
    assert isinstance(call, ToolCall)
    assert call.cache == CacheMark()
    assert isinstance(result, ToolResult)
    assert result.cache == CacheMark("1h")


async def test_tools_and_the_request_itself_carry_marks() -> None:
    params = MessageCreateParams.model_validate(
        {
            "model": "m",
            "max_tokens": 10,
            "cache_control": EPHEMERAL,
            "tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": ONE_HOUR}],
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    request = await generation_request(params, EngineCapabilities(tools=True))
    assert request.cache == CacheMark()
    assert request.tools[0].cache == CacheMark("1h")


async def test_a_plain_system_string_has_no_parts() -> None:
    params = MessageCreateParams.model_validate(
        {
            "model": "m",
            "max_tokens": 1,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    request = await generation_request(params, EngineCapabilities())
    assert (request.system, request.system_parts, request.cache) == ("Be brief.", (), None)


async def events(*items: EngineEvent) -> AsyncIterator[EngineEvent]:
    for item in items:
        yield item


async def test_cache_counts_reach_usage_apart_from_input_tokens() -> None:
    request = GenerationRequest(
        model="m", system=None, turns=(Turn.of("user", "hi"),), max_tokens=5
    )
    opened = CacheUsage(
        read_input_tokens=90, creation_input_tokens=10, ephemeral_1h_input_tokens=10
    )
    stream = MessageStream(request, 20, cache=opened)
    assert stream.usage.cache_read_input_tokens == 90
    final = CacheUsage(read_input_tokens=96)
    message = await collect_message(
        stream, events(TextChunk("Hi", 1), Finished("end_turn", 1, input_tokens=24, cache=final))
    )
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (24, 96)
    assert usage.cache_creation_input_tokens == 0
    assert usage.cache_creation.ephemeral_1h_input_tokens == 0
