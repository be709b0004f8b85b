"""One generation of the embedded engine: its jobs in the batch loop, under one
sequence ticket of the engine's `SlotPool`, and their tokens turned into the neutral
events (text, tool calls, thinking, `Finished`).

A generation is one job (the reply), or two when the model thinks: the thinking
section without a grammar, stopped at `</think>` or the budget, then the reply under
its grammar, continuing from the first job's kept KV state. The ticket comes back
when the loop says the last job's sequence is clear; a prompt-cache lease that no job
took goes back when the generation is closed (or dropped).
"""

from __future__ import annotations

import codecs
import logging
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from parley.core.generation import (
    CacheUsage,
    EngineEvent,
    Finished,
    TextChunk,
    ThinkingChunk,
    ToolCallStart,
    ToolInputChunk,
)
from parley.core.slots import SlotPool
from parley.engines.base import PreparedGeneration
from parley.engines.hermes import CallSplitter, CallStartOut, InputOut, SplitEvent, TextOut
from parley.engines.llamacpp.cache import CacheLease
from parley.engines.llamacpp.jobs import (
    Done,
    EventQueue,
    Failed,
    Job,
    LoopEvent,
    SamplingParams,
    TokenOut,
)
from parley.engines.llamacpp.loop import BatchLoop, JobHandle
from parley.engines.llamacpp.prompt import Prompt, ToolPlan
from parley.engines.think_tags import THINK_CLOSE, ThinkSplitter
from parley.errors import InternalServerError

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """The engine's form of a prepared request: the prompt, what the cache promised,
    and the usage that follows from it."""

    prompt: Prompt
    # What `lookup` promised; the engine gives it back unless a job took it.
    lease: CacheLease | None
    input_tokens: int
    cache: CacheUsage | None


class Run:
    """One generation's jobs in the loop, under one sequence ticket: the reply's, or a
    thinking section's and then the reply's."""

    def __init__(
        self, loop: BatchLoop, pool: SlotPool[int], prepared: PreparedGeneration[Prepared]
    ) -> None:
        self._loop = loop
        self._pool = pool
        self._request = prepared.request
        self._state = prepared.state
        self._queue = EventQueue()
        self._ticket: int | None = None
        self._handle: JobHandle | None = None
        self._closed = False
        model = loop.model
        assert model is not None
        self._is_eog = model.is_eog
        # A generation dropped unread and unclosed (a router's, say, whose own events
        # never started) still gives its lease back.
        weakref.finalize(self, release_lease, prepared.state)

    # --- the ticket and the jobs ----------------------------------------------------

    def _submit(self, tokens: list[int], max_tokens: int, *, first: bool, **job: Any) -> None:
        request, state = self._request, self._state
        sampling = request.sampling
        lease = state.lease if first else None
        state.lease = None if first else state.lease
        try:
            self._handle = self._loop.submit(
                Job(
                    tokens,
                    max_tokens,
                    self._on_events,
                    sampling=SamplingParams(
                        sampling.temperature, sampling.top_p, sampling.top_k, sampling.seed
                    ),
                    cache_scope=request.cache_scope,
                    breakpoints=state.prompt.breakpoints if first else (),
                    lease=lease,
                    **job,
                )
            )
        except RuntimeError:
            if lease is not None:
                lease.release()
            log.error("the batch loop is not running")
            raise InternalServerError("Internal server error") from None

    def _on_events(self, events: list[LoopEvent]) -> None:
        self._queue.push(events)
        last = events[-1]
        if isinstance(last, Done | Failed):
            self._handle = None
            if isinstance(last, Done) and last.reason == "cancelled":
                log.info("generation cancelled after %d tokens; sequence free", last.generated)
            if self._closed:
                self._release()

    def _release(self) -> None:
        if self._ticket is not None:
            self._pool.release(self._ticket)
            self._ticket = None

    def close(self) -> None:
        """However the generation ended: the lease back if no job took it, a running
        job cancelled (its ticket comes back with its last event), else the ticket."""
        self._closed = True
        release_lease(self._state)
        if self._handle is not None:
            self._handle.cancel()
        else:
            self._release()

    async def _job(
        self, tokens: list[int], max_tokens: int, *, first: bool, **job: Any
    ) -> AsyncIterator[TokenOut | Done]:
        """A job's tokens, then its `Done`; `Failed` is raised."""
        self._submit(tokens, max_tokens, first=first, **job)
        while True:
            event = await self._queue.get()
            if isinstance(event, Failed):
                log.error("llama.cpp could not generate: %s", event.message)
                raise InternalServerError("Internal server error")
            if isinstance(event, TokenOut | Done):
                yield event
                if isinstance(event, Done):
                    return

    async def prewarm(self) -> None:
        prompt = self._state.prompt
        cache = self._state.cache
        try:
            if cache is None or not cache.creation_input_tokens:
                return
            self._ticket = await self._pool.acquire()
            last = prompt.breakpoints[-1].position
            # One token is sampled and dropped; the snapshots are taken on the way.
            async for _ in self._job(
                prompt.tokens[:last],
                1,
                first=True,
                keep=False,
            ):
                pass
        finally:
            self.close()

    # --- the events -----------------------------------------------------------------

    async def events(self) -> AsyncGenerator[EngineEvent, None]:
        prompt = self._state.prompt
        try:
            self._ticket = await self._pool.acquire()
            tokens, produced = list(prompt.tokens), 0
            if prompt.thinks:
                thought = _Thought()
                async for event in self._think(thought):
                    yield event
                if thought.tokens is None:
                    return
                tokens, produced = thought.tokens, thought.produced
            async for event in self._reply(tokens, produced, first=not prompt.thinks):
                yield event
        finally:
            self.close()

    async def _reply(
        self, tokens: list[int], produced: int, *, first: bool
    ) -> AsyncGenerator[EngineEvent, None]:
        request, plan = self._request, self._state.prompt.plan
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        calls = _CallEvents(plan) if plan.calls else None
        remaining = request.max_tokens - produced
        async for event in self._job(tokens, remaining, first=first, grammar=plan.grammar):
            if isinstance(event, TokenOut):
                produced += 1
                if self._is_eog(event.token):
                    continue
                text = decoder.decode(event.piece)
                if calls is not None:
                    for out in calls.feed(text, produced):
                        yield out
                elif text:
                    yield TextChunk(text, produced)
                continue
            if event.reason == "cancelled":
                return
            if calls is not None:
                for out in calls.finish(produced):
                    yield out
            if event.reason == "eog":
                called = calls is not None and calls.called
                yield Finished("tool_use" if called else "end_turn", produced)
            elif event.reason == "context":
                yield Finished("model_context_window_exceeded", produced)
            else:
                yield Finished("max_tokens", produced)

    async def _think(self, thought: _Thought) -> AsyncGenerator[EngineEvent, None]:
        """The thinking section, without a grammar (the reply's grammar applies after
        it): until the model closes it, or the budget runs out and Parley closes it.
        Sets `thought.tokens` to what the reply continues from, unless the generation
        already ended."""
        request, prompt = self._request, self._state.prompt
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        splitter = ThinkSplitter()
        budget = min(request.thinking.budget_tokens or request.max_tokens, request.max_tokens)
        tokens = list(prompt.tokens)
        produced = 0
        yield ThinkingChunk("", 0)  # the block opens even if nothing is thought
        job = self._job(tokens, budget, first=True, stop=THINK_CLOSE.encode())
        async for event in job:
            if isinstance(event, TokenOut):
                produced += 1
                if self._is_eog(event.token):
                    continue
                tokens.append(event.token)
                thinking, _ = splitter.feed(decoder.decode(event.piece))
                if thinking:
                    yield ThinkingChunk(thinking, produced)
                continue
            if event.reason == "cancelled":
                return
            yield ThinkingChunk(splitter.flush(), produced)
            if event.reason == "eog":
                yield Finished("end_turn", produced)
            elif event.reason == "context":
                yield Finished("model_context_window_exceeded", produced)
            elif produced >= request.max_tokens:
                yield Finished("max_tokens", produced)
            else:
                if event.reason == "max_tokens":  # the budget ran out: Parley closes it
                    tokens += prompt.forced_close
                thought.tokens = tokens + list(prompt.resume)
                thought.produced = produced


def release_lease(state: Prepared) -> None:
    if state.lease is not None:
        state.lease.release()
        state.lease = None


@dataclass
class _Thought:
    tokens: list[int] | None = None
    produced: int = 0


class _CallEvents:
    """The splitter's output as neutral events."""

    def __init__(self, plan: ToolPlan) -> None:
        self._splitter = CallSplitter(forced=plan.forced)

    @property
    def called(self) -> bool:
        return self._splitter.name is not None

    def feed(self, text: str, produced: int) -> list[EngineEvent]:
        return _events(self._splitter.feed(text), produced)

    def finish(self, produced: int) -> list[EngineEvent]:
        return _events(self._splitter.finish(), produced)


def _events(split: list[SplitEvent], produced: int) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    for event in split:
        if isinstance(event, TextOut):
            out.append(TextChunk(event.text, produced))
        elif isinstance(event, CallStartOut):
            out.append(ToolCallStart(event.name, produced))
        elif isinstance(event, InputOut):
            out.append(ToolInputChunk(event.partial_json, produced))
    return out


class Events(AsyncGenerator[EngineEvent, None]):
    """A generation's events whose `aclose` also cleans up when they were never read
    (a generator closed before it started runs none of its own code)."""

    def __init__(
        self, inner: AsyncGenerator[EngineEvent, None], on_close: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._on_close = on_close

    def __aiter__(self) -> Events:
        return self

    async def __anext__(self) -> EngineEvent:
        return await self._inner.__anext__()

    async def asend(self, value: None) -> EngineEvent:
        return await self._inner.asend(value)

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None, /) -> EngineEvent:
        return await self._inner.athrow(typ, val, tb)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._on_close()


async def nothing() -> AsyncGenerator[EngineEvent, None]:
    return
    yield  # an async generator that ends at once
