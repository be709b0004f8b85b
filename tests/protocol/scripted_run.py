"""One scripted message run, shared by the golden tests: `MessageStream` over fixed engine
events that reproduce api-spec §6.3's example (text, then a get_weather call whose input
arrives as `{"location": "Par` + `is"}`), framed by `event_frame` as the route sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from parley.core.generation import (
    EngineEvent,
    Finished,
    GenerationRequest,
    TextChunk,
    ToolCallStart,
    ToolInputChunk,
    ToolSpec,
    Turn,
)
from parley.core.messages import MessageStream
from parley.core.sse import event_frame
from parley.protocol.responses import Message
from tests.protocol.golden import parse_frame

MODEL = "claude-sonnet-4-5-20250929"
MESSAGE_ID = "msg_013Zva2CMHLNnXjNJJKqJ2EF"
TOOL_USE_ID = "toolu_01A09q90qw90lq917835lq9"

REQUEST = GenerationRequest(
    model=MODEL,
    system=None,
    turns=(Turn.of("user", "What is the weather in Paris?"),),
    max_tokens=1024,
    tools=(
        ToolSpec(
            name="get_weather",
            description="Get the current weather in a given location",
            input_schema={
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        ),
    ),
)

ENGINE_EVENTS: tuple[EngineEvent, ...] = (
    TextChunk("I'll check the weather in Paris.", output_tokens=9),
    ToolCallStart("get_weather", output_tokens=12, id=TOOL_USE_ID),
    ToolInputChunk('{"location": "Par', output_tokens=20),
    ToolInputChunk('is"}', output_tokens=24),
    Finished("tool_use", output_tokens=65),
)


def run_stream() -> tuple[list[tuple[str, Any]], Message]:
    """The SSE events (name, data) of the scripted run, and the Message it built."""

    async def source() -> AsyncIterator[EngineEvent]:
        for event in ENGINE_EVENTS:
            yield event

    async def run() -> tuple[list[bytes], Message]:
        stream = MessageStream(REQUEST, input_tokens=25, msg_id=MESSAGE_ID)
        frames = [event_frame(e) async for batch in stream.events(source()) for e in batch]
        return frames, stream.message

    frames, message = asyncio.run(run())
    return [parse_frame(f) for f in frames], message
