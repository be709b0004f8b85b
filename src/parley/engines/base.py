"""The Engine contract.

An engine turns a neutral `GenerationRequest` into a stream of neutral events
(text chunks and tool calls, then `Finished`; the order and fields are described
in `parley.core.generation`). It owns its model's chat template and tokenizer,
and declares what it can read in `capabilities`; the pipeline refuses the rest
before the engine is called.

A message goes through an engine in two steps, with the rate limiter between them:

1. `prepare(request)` renders and tokenizes. It does no IO and holds nothing the
   engine would have to give back, except what `discard()` releases (a pinned
   prompt-cache entry, say), so a request refused after it costs nothing.
2. `open(prepared)` admits the request to the engine: a place in its wait queue
   (`OverloadedError` when full), or the upstream request itself. What it returns,
   a `Generation`, is read to the end or closed; either way the engine cleans up.

Errors are raised as `parley.errors.APIError` subclasses; before the first event
they become HTTP errors, after it an SSE `error` event.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from parley.core.generation import (
    CacheUsage,
    EngineCapabilities,
    EngineEvent,
    GenerationRequest,
)
from parley.core.slots import Occupancy

__all__ = ["Engine", "EngineCapabilities", "Generation", "Occupancy", "PreparedGeneration"]

S = TypeVar("S")


@dataclass(frozen=True)
class PreparedGeneration(Generic[S]):
    """A request the engine has rendered and tokenized. `state` is the engine's own
    form of the prompt (token ids, an upstream request body, a script)."""

    request: GenerationRequest
    input_tokens: int
    state: S


def _nothing() -> None:
    return None


@dataclass
class Generation:
    """A generation an engine has accepted.

    `input_tokens` is the prompt's size as the engine now knows it (an upstream may
    have reported its own count on opening; `cache` is then the part of it read from
    or written to the upstream's prompt cache, apart from `input_tokens`, as in the
    API's usage). `events` runs the model; closing it
    early stops generation promptly. `abandon` releases what opening took when the
    events are never read (an upstream response nobody claims).
    """

    input_tokens: int
    events: AsyncGenerator[EngineEvent, None]
    abandon: Callable[[], None] = field(default=_nothing)
    cache: CacheUsage | None = None

    async def aclose(self) -> None:
        self.abandon()
        await self.events.aclose()


class Engine(ABC, Generic[S]):
    # Text only unless an engine says otherwise (a class or instance attribute).
    capabilities: EngineCapabilities = EngineCapabilities()

    @property
    @abstractmethod
    def context_window(self) -> int: ...

    async def start(self) -> None:
        """Load weights or open connections; called once before serving."""

    @abstractmethod
    async def count_tokens(self, request: GenerationRequest) -> int:
        """Input tokens of the prompt the model would be given for this request,
        rendered exactly as `prepare` renders it (tools and tool blocks included)."""

    @abstractmethod
    async def prepare(self, request: GenerationRequest) -> PreparedGeneration[S]:
        """Render and tokenize; no IO, nothing held but what `discard` releases."""

    def discard(self, prepared: PreparedGeneration[S]) -> None:
        """Forget a prepared request that will not be opened (refused by the rate
        limiter, say)."""

    @abstractmethod
    async def open(self, prepared: PreparedGeneration[S]) -> Generation:
        """Admit the request: `OverloadedError` when the engine's queue is full, an
        upstream's refusal as its APIError. `prepared` is the engine's from now on."""

    async def check_health(self) -> None:
        """Raise if the engine cannot serve now (an upstream engine asks its server);
        the router uses it to bring an ejected backend back."""

    def is_ready(self) -> bool:
        """Whether it takes requests now, as far as it knows without any IO (readiness
        probes ask this often): started, and for a router, a backend in rotation."""
        return True

    def occupancy(self) -> Occupancy | None:
        """Its slots and wait queue now, for metrics; None for an engine without them
        (an upstream's server keeps its own queue). Read-only and cheap."""
        return None

    async def aclose(self) -> None:
        """Release resources."""
