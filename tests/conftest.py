"""Shared fixtures: the app in-process with the scripted engine, and real server processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from parley.config import ModelConfig, Settings, load_settings
from parley.server.app import create_app
from parley.services import Services, start_services
from tests.serverproc import ParleyProcess

# A failed golden comparison shows the diff, not a bare AssertionError; registered here,
# before any test module (in tests/protocol or elsewhere) imports the helpers.
pytest.register_assert_rewrite("tests.protocol.golden")

SCRIPTED_MODEL = "scripted-1"


@pytest.fixture(autouse=True)
def _no_ambient_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """SDK clients in tests get their base URL and key explicitly; a developer's own
    ANTHROPIC_* variables must not leak in (the newest SDK refuses two credentials)."""
    import os

    for name in [n for n in os.environ if n.startswith("ANTHROPIC_")]:
        monkeypatch.delenv(name)


def scripted_settings(data_dir: Path, **overrides: object) -> Settings:
    models = [
        ModelConfig(
            id=SCRIPTED_MODEL,
            aliases=["scripted"],
            engine="scripted",
            display_name="Scripted",
            context_window=2048,
            max_output_tokens=1024,
            slots=1,
        )
    ]
    values: dict[str, object] = {"data_dir": data_dir, "models": models, "queue_size": 2}
    values.update(overrides)
    return load_settings(None, **values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return scripted_settings(tmp_path / "data")


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    svc = await start_services(settings)
    try:
        yield svc
    finally:
        await svc.aclose()


@pytest.fixture
async def api_key(services: Services) -> str:
    return (await services.keys.store.create("test")).secret


def old_sdk_headers(api_key: str) -> dict[str, str]:
    """How the 0.x SDKs authenticate: x-api-key and version 2023-06-01."""
    return {"x-api-key": api_key, "anthropic-version": "2023-06-01"}


def asgi_client(svc: Services, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """An HTTP client for the app in-process (no sockets)."""
    transport = httpx.ASGITransport(app=create_app(svc))
    return httpx.AsyncClient(transport=transport, base_url="http://parley.test", headers=headers)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """Started services for `settings`, a key, and a client that uses it."""
    svc = await start_services(settings)
    try:
        key = (await svc.keys.store.create("test")).secret
        async with asgi_client(svc, old_sdk_headers(key)) as http:
            yield svc, http
    finally:
        await svc.aclose()


@pytest.fixture
async def client(services: Services, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app in-process, authenticated like the 0.x SDKs."""
    async with asgi_client(services, old_sdk_headers(api_key)) as http:
        yield http


SCRIPTED_CONFIG = f"""
[[models]]
id = "{SCRIPTED_MODEL}"
aliases = ["scripted"]
engine = "scripted"
context_window = 2048
max_output_tokens = 1024
slots = 2
token_delay = 0.01
"""


@pytest.fixture(scope="session")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    """A real `parley serve` process on the scripted engine (fast)."""
    server = ParleyProcess(tmp_path_factory.mktemp("scripted"), config=SCRIPTED_CONFIG)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    """A real `parley serve` process on the embedded SmolLM2 model (default config)."""
    server = ParleyProcess(tmp_path_factory.mktemp("model"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (dropped afterwards); fails, never
    skips, when PostgreSQL is not reachable."""
    from tests.pg import fresh_database

    with fresh_database() as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    """The real Redis; fails, never skips, when it is not reachable."""
    from tests.pg import require_redis

    return require_redis()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    from tests.pg import fresh_redis_prefix

    with fresh_redis_prefix() as prefix:
        yield prefix
