"""Driving LlamaCppEngine generations by hand, as the pipeline does: prepared, opened,
their events read one at a time, closed early or run to the end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from parley.core.generation import (
    CacheMark,
    EngineEvent,
    Finished,
    GenerationRequest,
    Sampling,
    TextChunk,
    TextPart,
    Turn,
)
from parley.core.messages import MessageStream, collect_message
from parley.engines.base import Generation
from parley.engines.llamacpp import LlamaCppEngine
from parley.protocol.responses import Message, Usage


@contextmanager
def started(engine: LlamaCppEngine) -> Iterator[LlamaCppEngine]:
    """An engine for a whole test module: started and closed on loops of their own (the
    batch loop answers each job on the loop that submitted it)."""
    asyncio.run(engine.start())
    try:
        yield engine
    finally:
        asyncio.run(engine.aclose())


def request(
    question: str,
    *,
    system: str | None = None,
    mark: CacheMark | None = None,
    scope: str | None = "key-a",
    max_tokens: int = 24,
    **fields: Any,
) -> GenerationRequest:
    """A greedy request; `mark` puts a cache breakpoint on the system prompt."""
    parts = (TextPart(system, mark),) if system is not None and mark is not None else ()
    return GenerationRequest(
        model="smollm2",
        system=system,
        system_parts=parts,
        turns=fields.pop("turns", (Turn.of("user", question),)),
        max_tokens=max_tokens,
        sampling=fields.pop("sampling", Sampling(temperature=0.0)),
        cache_scope=scope,
        **fields,
    )


class Stream:
    """One opened generation whose events are read as the test asks."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.text = ""
        self.chunks = 0
        self.finished: Finished | None = None

    @classmethod
    async def open(cls, engine: LlamaCppEngine, sent: GenerationRequest) -> Stream:
        return cls(await engine.open(await engine.prepare(sent)))

    async def next(self) -> EngineEvent:
        event = await self.generation.events.__anext__()
        if isinstance(event, TextChunk):
            self.text += event.text
            self.chunks += 1
        elif isinstance(event, Finished):
            self.finished = event
        return event

    async def finish(self) -> tuple[str, Finished]:
        while self.finished is None:
            await self.next()
        await self.generation.aclose()
        return self.text, self.finished

    async def close(self) -> None:
        await self.generation.aclose()


async def message(engine: LlamaCppEngine, sent: GenerationRequest) -> Message:
    """The Message the pipeline would build, usage included."""
    generation = await engine.open(await engine.prepare(sent))
    stream = MessageStream(sent, generation.input_tokens, cache=generation.cache)
    return await collect_message(stream, generation.events)


def counts(usage: Usage) -> tuple[int, int, int]:
    """(input, cache creation, cache read)."""
    return (
        usage.input_tokens,
        usage.cache_creation_input_tokens or 0,
        usage.cache_read_input_tokens or 0,
    )
