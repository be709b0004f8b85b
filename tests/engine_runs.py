"""Driving an engine directly, as the message pipeline does (prepare, open, events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from parley.core.generation import EngineEvent, GenerationRequest
from parley.core.messages import MessageStream, collect_message
from parley.engines.base import Engine
from parley.protocol.responses import Message


async def generate(engine: Engine[Any], request: GenerationRequest) -> AsyncIterator[EngineEvent]:
    generation = await engine.open(await engine.prepare(request))
    async with aclosing(generation.events) as events:
        async for event in events:
            yield event


async def collect(engine: Engine[Any], request: GenerationRequest) -> Message:
    prepared = await engine.prepare(request)
    generation = await engine.open(prepared)
    async with aclosing(generation.events) as events:
        return await collect_message(MessageStream(request, generation.input_tokens), events)
