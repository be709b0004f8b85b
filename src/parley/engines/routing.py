"""Several backends behind one model.

- Balancing: each request goes to the backend with the fewest requests in
  flight (ties taken in turn).
- Ejection: a backend that fails `eject_after` times in a row (connection
  errors, 5xx; a 429 means busy, not broken) is taken out of rotation and
  health-checked every `health_check_interval` seconds until it answers.
- Failover: a request that fails before any of its reply reached the client
  (refused, or cut off while the upstream was still reading the prompt) is
  sent to another backend, up to `max_attempts` backends in all. Parley's own
  `message_start` and pings carry nothing from the backend, so a client never
  sees such a retry; once reply text has gone out, a failure is the client's
  `error` event (api-spec §6.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from parley.config import RoutingConfig
from parley.core.generation import EngineEvent, GenerationRequest
from parley.engines.base import (
    Engine,
    EngineCapabilities,
    Generation,
    Occupancy,
    PreparedGeneration,
)
from parley.errors import (
    APIError,
    GatewayTimeoutError,
    InternalServerError,
    OverloadedError,
    RateLimitError,
)

log = logging.getLogger(__name__)

# Errors another backend may not have; anything else (a 400) would fail there too.
FAILOVER_ERRORS = (OverloadedError, InternalServerError, GatewayTimeoutError, RateLimitError)


@dataclass(eq=False)
class Backend:
    name: str
    kind: str  # openai, anthropic, llamacpp or scripted
    target: str  # the base URL or the GGUF path
    engine: Engine[Any]
    upstream_model: str | None = None
    outstanding: int = 0
    failures: int = 0  # in a row
    ejected: bool = False
    last_error: str | None = None
    ejections: int = 0  # times taken out of rotation since start (a metric)


@dataclass(eq=False)
class _Routed:
    backend: Backend  # the backend the request was prepared for, tried first
    inner: PreparedGeneration[Any]


class RoutedEngine(Engine[_Routed]):
    def __init__(
        self,
        backends: list[Backend],
        routing: RoutingConfig | None = None,
        *,
        context_window: int | None = None,
        capabilities: EngineCapabilities | None = None,
    ) -> None:
        if not backends:
            raise ValueError("a routed model needs at least one backend")
        self.backends = backends
        self.routing = routing or RoutingConfig()
        # A request may go to any backend: the model can do what all of them can.
        own = [b.engine.capabilities for b in backends]
        self.capabilities = capabilities or EngineCapabilities(
            images=all(c.images for c in own),
            tools=all(c.tools for c in own),
            structured_outputs=all(c.structured_outputs for c in own),
            thinking=all(c.thinking for c in own),
            thinking_budgets=all(c.thinking_budgets for c in own),
            upstream_signatures=all(c.upstream_signatures for c in own),
            citations=all(c.citations for c in own),
        )
        self._context_window = context_window
        self._turn = 0
        self._health_task: asyncio.Task[None] | None = None

    @property
    def context_window(self) -> int:
        if self._context_window is not None:
            return self._context_window
        return min(b.engine.context_window for b in self.backends)

    async def start(self) -> None:
        for backend in self.backends:
            await backend.engine.start()
        self._health_task = asyncio.create_task(self._health_loop())

    async def aclose(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        for backend in self.backends:
            await backend.engine.aclose()

    def is_ready(self) -> bool:
        return any(not b.ejected and b.engine.is_ready() for b in self.backends)

    def occupancy(self) -> Occupancy | None:
        """The local backends' slots added up; None when every backend is upstream."""
        pools = [o for b in self.backends if (o := b.engine.occupancy()) is not None]
        if not pools:
            return None
        return Occupancy(
            sum(o.slots for o in pools),
            sum(o.busy for o in pools),
            sum(o.waiting for o in pools),
            sum(o.busy_background for o in pools),
            sum(o.waiting_background for o in pools),
        )

    # -- choosing -----------------------------------------------------------------------------

    def _pick(self, tried: list[Backend]) -> Backend | None:
        untried = [b for b in self.backends if b not in tried]
        live = [b for b in untried if not b.ejected]
        if not live and all(b.ejected for b in self.backends):
            live = untried  # every backend is out: trying one beats refusing outright
        if not live:
            return None
        turn, count = self._turn, len(self.backends)
        self._turn += 1
        order = {id(b): i for i, b in enumerate(self.backends)}
        return min(live, key=lambda b: (b.outstanding, (order[id(b)] - turn) % count))

    def _failed(self, backend: Backend, error: APIError) -> None:
        if isinstance(error, RateLimitError):
            return  # busy, not broken
        backend.failures += 1
        backend.last_error = f"{error.type}: {error.message}"
        if backend.failures >= self.routing.eject_after and not backend.ejected:
            backend.ejected = True
            backend.ejections += 1
            log.warning(
                "backend %s ejected after %d failures in a row (%s); health-checking it",
                backend.name,
                backend.failures,
                backend.last_error,
            )

    def _served(self, backend: Backend) -> None:
        backend.failures = 0
        if backend.ejected:
            backend.ejected = False
            log.info("backend %s served a request: back in rotation", backend.name)

    # -- the Engine contract ------------------------------------------------------------------

    async def count_tokens(self, request: GenerationRequest) -> int:
        tried: list[Backend] = []
        error: APIError | None = None
        while len(tried) < self.routing.max_attempts and (backend := self._pick(tried)):
            tried.append(backend)
            try:
                return await backend.engine.count_tokens(request)
            except FAILOVER_ERRORS as exc:
                self._failed(backend, exc)
                error = exc
        raise error or OverloadedError("Overloaded")

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration[_Routed]:
        backend = self._pick([])
        if backend is None:
            raise OverloadedError("Overloaded")
        inner = await backend.engine.prepare(request)
        return PreparedGeneration(request, inner.input_tokens, _Routed(backend, inner))

    def discard(self, prepared: PreparedGeneration[_Routed]) -> None:
        prepared.state.backend.engine.discard(prepared.state.inner)

    async def open(self, prepared: PreparedGeneration[_Routed]) -> Generation:
        tried: list[Backend] = []
        backend, generation = await self._open_next(prepared, tried, None)
        current = [generation]
        return Generation(
            generation.input_tokens,
            self._events(prepared, tried, backend, current),
            lambda: current[0].abandon(),
            generation.cache,
        )

    async def _open_next(
        self,
        prepared: PreparedGeneration[_Routed],
        tried: list[Backend],
        error: APIError | None,
    ) -> tuple[Backend, Generation]:
        first = prepared.state
        while len(tried) < self.routing.max_attempts:
            backend = first.backend if not tried else self._pick(tried)
            if backend is None:
                break
            tried.append(backend)
            backend.outstanding += 1
            try:
                inner = (
                    first.inner
                    if backend is first.backend
                    else await backend.engine.prepare(prepared.request)
                )
                return backend, await backend.engine.open(inner)
            except FAILOVER_ERRORS as exc:
                self._failed(backend, exc)
                log.info("backend %s refused a request (%s)", backend.name, exc.type)
                error = exc
            finally:
                backend.outstanding -= 1
        raise error or OverloadedError("Overloaded")

    async def _events(
        self,
        prepared: PreparedGeneration[_Routed],
        tried: list[Backend],
        backend: Backend,
        current: list[Generation],
    ) -> AsyncGenerator[EngineEvent, None]:
        while True:
            started = False
            backend.outstanding += 1
            try:
                async with aclosing(current[0].events) as events:
                    async for event in events:
                        if not started:
                            started = True
                            self._served(backend)
                        yield event
                return
            except FAILOVER_ERRORS as exc:
                self._failed(backend, exc)
                if started:
                    raise
                log.info(
                    "backend %s failed before the reply started (%s); trying another",
                    backend.name,
                    exc.type,
                )
                error: APIError = exc
            finally:
                backend.outstanding -= 1
            backend, current[0] = await self._open_next(prepared, tried, error)

    # -- health -------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.routing.health_check_interval)
            for backend in [b for b in self.backends if b.ejected]:
                if await self.probe(backend) is None and backend.ejected:
                    backend.ejected = False
                    backend.failures = 0
                    log.info("backend %s passed its health check: back in rotation", backend.name)

    async def probe(self, backend: Backend, within: float = 10.0) -> str | None:
        """Ask the backend whether it can serve: None if so, else why not."""
        try:
            async with asyncio.timeout(within):
                await backend.engine.check_health()
        except TimeoutError:
            problem = f"no answer within {within:g} s"
        except APIError as exc:
            problem = f"{exc.type}: {exc.message}"
            if exc.__cause__ is not None:  # the transport failure behind it says more
                problem += f" ({type(exc.__cause__).__name__}: {exc.__cause__})"
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            return None
        backend.last_error = problem
        return problem
