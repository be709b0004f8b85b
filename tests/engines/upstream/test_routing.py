"""Balancing, ejection, health checks and failover across a model's backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager

import pytest

from parley.config import RoutingConfig
from parley.core.generation import EngineEvent, Finished, GenerationRequest, TextChunk, Turn
from parley.engines.base import Engine, Generation, PreparedGeneration
from parley.engines.routing import Backend, RoutedEngine
from parley.errors import APIError, InvalidRequestError, OverloadedError, RateLimitError
from tests.engines.upstream.conftest import collect
from tests.waiting import eventually

REQUEST = GenerationRequest(model="m", system=None, turns=(Turn.of("user", "hi"),), max_tokens=9)


class FakeEngine(Engine[None]):
    """A backend whose failures the test decides."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False  # open and health checks fail with 529
        self.refuse: APIError | None = None  # open raises this
        self.die_before_reply = 0  # this many generations fail before their first event
        self.die_after_first = False
        self.gate: asyncio.Event | None = None  # generation waits for it after one chunk
        self.opened = 0
        self.served = 0

    @property
    def context_window(self) -> int:
        return 1000

    async def count_tokens(self, request: GenerationRequest) -> int:
        return 5

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration[None]:
        return PreparedGeneration(request, 5, None)

    async def open(self, prepared: PreparedGeneration[None]) -> Generation:
        self.opened += 1
        if self.down:
            raise OverloadedError("Overloaded")
        if self.refuse is not None:
            raise self.refuse
        return Generation(5, self._events())

    async def _events(self) -> AsyncGenerator[EngineEvent, None]:
        if self.die_before_reply:
            self.die_before_reply -= 1
            raise OverloadedError("Overloaded")
        yield TextChunk(self.name, 1)
        if self.die_after_first:
            raise OverloadedError("Overloaded")
        if self.gate is not None:
            await self.gate.wait()
        self.served += 1
        yield Finished("end_turn", 1)

    async def check_health(self) -> None:
        if self.down:
            raise OverloadedError("Overloaded")


@asynccontextmanager
async def routed(
    *names: str, **routing: float
) -> AsyncIterator[tuple[RoutedEngine, dict[str, FakeEngine]]]:
    engines = {name: FakeEngine(name) for name in names}
    backends = [Backend(n, "fake", n, e) for n, e in engines.items()]
    router = RoutedEngine(backends, RoutingConfig.model_validate(routing))
    await router.start()
    try:
        yield router, engines
    finally:
        await router.aclose()


async def opened(router: RoutedEngine) -> Generation:
    return await router.open(await router.prepare(REQUEST))


async def reply(router: RoutedEngine) -> str:
    async with aclosing((await opened(router)).events) as events:
        return "".join([e.text async for e in events if isinstance(e, TextChunk)])


async def test_idle_backends_take_turns() -> None:
    async with routed("a", "b", "c") as (router, _):
        served = [await reply(router) for _ in range(6)]
    assert sorted(served) == ["a", "a", "b", "b", "c", "c"]


async def test_a_busy_backend_gets_no_more_until_the_others_are_as_busy() -> None:
    async with routed("a", "b") as (router, engines):
        engines["a"].gate = asyncio.Event()
        held = (await opened(router)).events
        assert await anext(held) == TextChunk("a", 1)  # "a" now has a request in flight
        assert [await reply(router) for _ in range(3)] == ["b", "b", "b"]
        engines["a"].gate.set()
        await held.aclose()


async def test_a_refused_request_goes_to_another_backend() -> None:
    async with routed("a", "b") as (router, engines):
        engines["a"].down = True
        assert {await reply(router) for _ in range(2)} == {"b"}
        assert engines["a"].opened >= 1


async def test_a_request_cut_off_before_its_reply_goes_to_another_backend() -> None:
    async with routed("a", "b") as (router, engines):
        # The first request goes to "a" (both idle, "a" first in turn), which accepts it
        # and then fails before any event, as an upstream killed mid-prompt does.
        engines["a"].die_before_reply = 1
        assert await reply(router) == "b"
    assert (engines["a"].served, engines["b"].served) == (0, 1)
    assert router.backends[0].failures == 1


async def test_no_failover_once_the_reply_started() -> None:
    async with routed("a") as (router, engines):
        engines["a"].die_after_first = True
        generation = await opened(router)
        got: list[EngineEvent] = []
        with pytest.raises(OverloadedError):
            await collect(generation.events, got)
    assert got == [TextChunk("a", 1)]


async def test_the_clients_own_errors_are_not_retried() -> None:
    async with routed("a", "b") as (router, engines):
        engines["a"].refuse = engines["b"].refuse = InvalidRequestError("bad")
        with pytest.raises(InvalidRequestError):
            await opened(router)
        assert engines["a"].opened + engines["b"].opened == 1


async def test_when_every_backend_refuses_the_last_error_is_the_answer() -> None:
    async with routed("a", "b") as (router, engines):
        for engine in engines.values():
            engine.refuse = RateLimitError("slow down", headers={"retry-after": "3"})
        with pytest.raises(RateLimitError) as caught:
            await opened(router)
    assert caught.value.headers["retry-after"] == "3"


async def test_max_attempts_bounds_the_failover() -> None:
    async with routed("a", "b", max_attempts=1) as (router, engines):
        engines["a"].down = engines["b"].down = True
        with pytest.raises(OverloadedError):
            await opened(router)
        assert engines["a"].opened + engines["b"].opened == 1


async def test_repeated_failures_eject_and_a_health_check_readmits() -> None:
    async with routed("a", "b", eject_after=2, health_check_interval=0.02) as (router, engines):
        a = next(b for b in router.backends if b.name == "a")
        engines["a"].down = True
        for _ in range(4):
            assert await reply(router) == "b"
        assert a.ejected
        tries = engines["a"].opened
        for _ in range(4):
            assert await reply(router) == "b"
        assert engines["a"].opened == tries  # out of rotation: not even tried
        engines["a"].down = False
        await eventually(lambda: not a.ejected)
        assert "a" in {await reply(router) for _ in range(4)}


async def test_rate_limits_do_not_eject() -> None:
    async with routed("a", "b", eject_after=1) as (router, engines):
        engines["a"].refuse = RateLimitError("busy")
        for _ in range(4):
            assert await reply(router) == "b"
        assert not any(b.ejected for b in router.backends)


async def test_with_every_backend_ejected_one_is_still_tried() -> None:
    async with routed("a", eject_after=1, health_check_interval=60) as (router, engines):
        engines["a"].down = True
        with pytest.raises(OverloadedError):
            await reply(router)
        assert router.backends[0].ejected
        engines["a"].down = False
        assert await reply(router) == "a"  # tried anyway, and back in rotation
        assert not router.backends[0].ejected


async def test_probe_reports_why_a_backend_is_unhealthy() -> None:
    async with routed("a", "b") as (router, engines):
        engines["b"].down = True
        a, b = router.backends
        assert await router.probe(a) is None
        assert await router.probe(b) == "overloaded_error: Overloaded"  # no cause to add
