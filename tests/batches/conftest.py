"""Batches in-process: the app on the scripted engine, a clock the test moves, and the
worker driven by the test (`run_until_idle`) unless a test wants it running."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import Settings
from parley.services import Services, start_services
from parley.store.batch_leases import BatchLeaseStore
from parley.store.batch_records import BatchRecordStore
from tests.clock import FakeClock
from tests.conftest import SCRIPTED_MODEL, asgi_client, old_sdk_headers, scripted_settings

BATCHES = "/v1/messages/batches"


def batch_request(custom_id: str, text: str = "say: ok", **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": text}],
    }
    body.update(params)
    return {"custom_id": custom_id, "params": body}


def requests_(n: int, prefix: str = "r", text: str = "say: ok") -> list[dict[str, Any]]:
    return [batch_request(f"{prefix}{i}", text) for i in range(n)]


class App:
    """Started services, a key and a client using it, the clock, and helpers."""

    def __init__(
        self, svc: Services, http: httpx.AsyncClient, clock: FakeClock, secret: str
    ) -> None:
        self.svc = svc
        self.http = http
        self.clock = clock
        self.secret = secret

    @property
    def worker(self) -> Any:
        assert self.svc.batch_worker is not None
        return self.svc.batch_worker

    @property
    def records(self) -> BatchRecordStore:
        """The batch tables as the API sees them, to look into or change directly."""
        assert self.svc.database is not None
        return BatchRecordStore(self.svc.database)

    @property
    def leases(self) -> BatchLeaseStore:
        """The batch tables as a worker sees them (this one, or another replica)."""
        assert self.svc.database is not None
        return BatchLeaseStore(self.svc.database)

    async def create(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        response = await self.http.post(BATCHES, json={"requests": requests})
        assert response.status_code == 200, response.text
        batch: dict[str, Any] = response.json()
        return batch

    async def get(self, batch_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{BATCHES}/{batch_id}")
        assert response.status_code == 200, response.text
        batch: dict[str, Any] = response.json()
        return batch

    async def results(self, batch_id: str) -> list[dict[str, Any]]:
        import json

        response = await self.http.get(f"{BATCHES}/{batch_id}/results")
        assert response.status_code == 200, response.text
        assert response.text.endswith("\n")
        assert "\r" not in response.text
        return [json.loads(line) for line in response.text.split("\n")[:-1]]

    async def wait_ended(self, batch_id: str) -> dict[str, Any]:
        async def ended() -> bool:
            return (await self.get(batch_id))["processing_status"] == "ended"

        await eventually(ended)
        return await self.get(batch_id)


async def eventually(condition: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    """Wait until `condition()` holds, polling; fails after `seconds`."""
    async with asyncio.timeout(seconds):
        for _ in itertools.count():
            if await condition():
                return
            await asyncio.sleep(0.01)


@asynccontextmanager
async def started(
    settings: Settings, clock: FakeClock | None = None, *, key: str | None = None
) -> AsyncIterator[App]:
    clock = clock or FakeClock()
    svc = await start_services(settings, clock=clock)
    try:
        secret = key or (await svc.keys.store.create("test")).secret
        async with asgi_client(svc, old_sdk_headers(secret)) as http:
            yield App(svc, http, clock, secret)
    finally:
        await svc.aclose()


def batch_settings(tmp_path: Path, **overrides: object) -> Settings:
    """The worker off by default: tests run it with `run_until_idle`, deterministically."""
    values: dict[str, object] = {"batch_worker": False}
    values.update(overrides)
    return scripted_settings(tmp_path / "data", **values)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    async with started(batch_settings(tmp_path)) as running:
        yield running
