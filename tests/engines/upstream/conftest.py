"""Fixtures for the upstream engines: a scripted OpenAI-compatible server in-process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from parley.config import ModelConfig, Settings
from parley.core.generation import EngineEvent
from parley.server.app import create_app
from parley.services import Services, start_services
from tests.conftest import old_sdk_headers, scripted_settings
from tests.engines.upstream.fake_openai import FakeState, serve_asgi, serving

UPSTREAM_MODEL = "up-1"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The generation client's own tests run on asyncio's loop and on uvloop, which
    `parley serve` runs it on (their transports differ in what they call when); the
    other tests here on asyncio's alone."""
    if item.path.name == "test_http_client.py":
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@dataclass
class Fake:
    state: FakeState
    url: str


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    state = FakeState(name="fake-a")
    async with serving(state) as url:
        yield Fake(state, url)


def openai_model(*urls: str, model_id: str = UPSTREAM_MODEL, **backend: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": model_id,
            "aliases": ["up"],
            "context_window": 4096,
            "max_output_tokens": 512,
            "backends": [
                {"engine": "openai", "base_url": url, "model": "fake-model", **backend}
                for url in urls
            ],
        }
    )


def upstream_settings(tmp_path: Path, *models: ModelConfig, **overrides: object) -> Settings:
    return scripted_settings(tmp_path / "data", models=list(models), **overrides)


def message_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": UPSTREAM_MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of a whole SSE body; checks each name equals data.type."""
    events: list[tuple[str, dict[str, Any]]] = []
    name: str | None = None
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            assert name == data["type"]
            events.append((name, data))
    return events


def names(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [n for n, _ in events]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["type"] == "error"
    error: dict[str, Any] = body["error"]
    return error


@dataclass
class LiveParley:
    """Parley served over real sockets in this event loop (streams arrive as sent, and a
    client that goes away is seen as gone, which httpx's ASGI transport cannot show)."""

    services: Services
    url: str
    key: str

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=old_sdk_headers(self.key), timeout=30)


@asynccontextmanager
async def live_parley(settings: Settings) -> AsyncIterator[LiveParley]:
    svc = await start_services(settings)
    try:
        key = (await svc.keys.store.create("test")).secret
        async with serve_asgi(create_app(svc)) as url:
            yield LiveParley(svc, url, key)
    finally:
        await svc.aclose()


async def collect(events: AsyncGenerator[EngineEvent, None], into: list[EngineEvent]) -> None:
    """Read a generation's events into `into` (a list a test watches as it grows)."""
    async with aclosing(events) as stream:
        async for event in stream:
            into.append(event)
