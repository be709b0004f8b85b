"""Body size limit (api-spec §12) and the engine queue limit (529 overloaded_error)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import ModelConfig, Tier
from parley.core.slots import SlotPool
from parley.engines.scripted import ScriptedEngine
from parley.services import Services
from tests.conftest import SCRIPTED_MODEL, running_app, scripted_settings
from tests.waiting import eventually

TOO_LARGE = {"error": {"type": "request_too_large", "message": "Request exceeds the maximum size"}}


def params(prompt: str = "say: ok", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}],
    }
    body.update(overrides)
    return body


@pytest.fixture
async def small_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(scripted_settings(tmp_path / "small", max_body_bytes=1000)) as (_, http):
        yield http


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def big_body() -> bytes:
    raw = encoded(params("x " * 600))
    assert len(raw) > 1000
    return raw


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/json")
    # The edge's 413 has no top-level type and no request_id (§12).
    assert response.json() == TOO_LARGE
    assert response.headers["request-id"].startswith("req_")


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
async def test_body_over_the_limit(small_client: httpx.AsyncClient, path: str) -> None:
    response = await small_client.post(
        path, content=big_body(), headers={"content-type": "application/json"}
    )
    assert_too_large(response)


async def test_body_over_the_limit_is_refused_before_auth(
    small_client: httpx.AsyncClient,
) -> None:
    response = await small_client.post(
        "/v1/messages",
        content=big_body(),
        headers={"content-type": "application/json", "x-api-key": "sk-parley-wrong"},
    )
    assert_too_large(response)


async def test_chunked_body_over_the_limit(small_client: httpx.AsyncClient) -> None:
    # No Content-Length: the limit is enforced while the body is read.
    raw = big_body()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 100):
            yield raw[start : start + 100]

    response = await small_client.post(
        "/v1/messages", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_too_large(response)


async def test_body_at_the_limit_is_read(small_client: httpx.AsyncClient) -> None:
    raw = encoded(params("say: ok"))
    raw = raw[:-1] + b" " * (1000 - len(raw)) + b"}"
    assert len(raw) == 1000
    response = await small_client.post(
        "/v1/messages", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "ok"}]


async def test_chunked_body_under_the_limit_is_read(small_client: httpx.AsyncClient) -> None:
    raw = encoded(params("say: ok"))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 7):
            yield raw[start : start + 7]

    response = await small_client.post(
        "/v1/messages", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


def pool_of(services: Services) -> SlotPool[int]:
    engine = services.registry.resolve(SCRIPTED_MODEL).engine
    assert isinstance(engine, ScriptedEngine)
    return engine.pool


def assert_overloaded(response: httpx.Response) -> None:
    assert response.status_code == 529, response.text
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": response.headers["request-id"],
    }
    # Retryable, at once: SDKs obey x-should-retry above all (api-spec §13); no
    # retry-after, since how soon a slot frees is unknown.
    assert response.headers["x-should-retry"] == "true"
    assert "retry-after" not in response.headers


@asynccontextmanager
async def full_pool(pool: SlotPool[int]) -> AsyncIterator[None]:
    """Hold the only slot and fill the queue (slots=1, queue_size=2)."""
    slot = await pool.acquire()
    waiters = [asyncio.create_task(pool.acquire()) for _ in range(2)]
    await eventually(lambda: pool.waiting == 2, seconds=0.5, step=0.001)
    try:
        yield
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with pytest.raises(asyncio.CancelledError):
                await waiter
        pool.release(slot)


@pytest.mark.parametrize("stream", [False, True])
async def test_queue_full_is_overloaded(
    client: httpx.AsyncClient, services: Services, stream: bool
) -> None:
    pool = pool_of(services)
    async with full_pool(pool):
        # Refused before any byte is sent, so a stream gets an HTTP error too (§6.4).
        assert_overloaded(await client.post("/v1/messages", json=params(stream=stream)))
    assert pool.busy == 0
    assert pool.waiting == 0
    response = await client.post("/v1/messages", json=params(stream=stream))
    assert response.status_code == 200, response.text


async def test_count_tokens_is_not_queued(client: httpx.AsyncClient, services: Services) -> None:
    async with full_pool(pool_of(services)):
        response = await client.post(
            "/v1/messages/count_tokens",
            json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200, response.text


async def test_queued_request_runs_once_the_slot_frees(
    client: httpx.AsyncClient, services: Services
) -> None:
    pool = pool_of(services)
    slot = await pool.acquire()
    try:
        queued = asyncio.create_task(client.post("/v1/messages", json=params("say: waited")))
        await eventually(lambda: pool.waiting == 1, seconds=0.5, step=0.001)
        assert not queued.done()
    finally:
        pool.release(slot)
    response = await queued
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "waited"}]
    assert pool.busy == 0


async def test_concurrent_requests_beyond_the_queue(tmp_path: Path) -> None:
    slow = ModelConfig(
        id=SCRIPTED_MODEL,
        engine="scripted",
        context_window=2048,
        max_output_tokens=1024,
        slots=1,
        token_delay=0.02,
    )
    settings = scripted_settings(tmp_path / "slow", models=[slow], queue_size=2)
    async with running_app(settings) as (svc, http):
        pool = pool_of(svc)

        def send(prompt: str) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(http.post("/v1/messages", json=params(prompt)))

        # One request decodes (10 tokens, 0.2 s), two wait, and the fourth is refused.
        first = send("count: 10")
        await eventually(lambda: pool.busy == 1, seconds=0.5, step=0.001)
        queued = [send("say: second"), send("say: third")]
        await eventually(lambda: pool.waiting == 2, seconds=0.5, step=0.001)
        assert_overloaded(await http.post("/v1/messages", json=params("say: fourth")))
        assert not first.done()
        responses = [await first, *[await q for q in queued]]
        assert [r.status_code for r in responses] == [200, 200, 200]
        texts = [r.json()["content"][0]["text"] for r in responses]
        assert texts == ["1 2 3 4 5 6 7 8 9 10", "second", "third"]
        assert pool.busy == 0


async def test_admitted_stream_is_never_refused_later(
    client: httpx.AsyncClient, services: Services
) -> None:
    # Many streams arrive together while the only slot is busy. Each one is either
    # refused with an HTTP 529 before any byte is sent (which the SDKs retry), or
    # admitted and then served in full: never a 200 that ends in an overloaded
    # `error` event, which no SDK retries (§6.4, §13).
    pool = pool_of(services)
    slot = await pool.acquire()
    body = params("say: served", stream=True)
    tasks = [asyncio.create_task(client.post("/v1/messages", json=body)) for _ in range(20)]
    try:
        await eventually(
            lambda: sum(t.done() for t in tasks) + pool.waiting == len(tasks),
            seconds=0.5,
            step=0.001,
        )
    finally:
        pool.release(slot)
    responses = [await t for t in tasks]
    for response in responses:
        if response.status_code == 529:
            assert_overloaded(response)
        else:
            assert response.status_code == 200, response.text
            assert "event: error" not in response.text
            assert response.text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert pool.busy == 0
    assert pool.waiting == 0


async def test_a_request_refused_as_overloaded_costs_no_rate_limit(tmp_path: Path) -> None:
    # Admitted by the rate limiter, then refused by the engine's full queue: the
    # request, its input tokens and its output reservation are all given back.
    tiers = {"default": Tier(requests_per_minute=3)}
    settings = scripted_settings(tmp_path / "data", tiers=tiers, queue_size=2)
    async with running_app(settings) as (svc, http):
        async with full_pool(pool_of(svc)):
            for _ in range(5):
                assert_overloaded(await http.post("/v1/messages", json=params()))
        await svc.drain()
        response = await http.post("/v1/messages", json=params())
    assert response.status_code == 200, response.text
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "2"
