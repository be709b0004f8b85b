"""A client that leaves, and a drain deadline, stop a request's work at once, in a real
`parley serve`: the engine's only slot is free again, and the request is settled
(its usage recorded, with the tokens made before it stopped)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.store.database import open_database
from parley.store.usage import UsageStore
from tests.conftest import old_sdk_headers
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

# One slot and no queue: while a request holds the slot, another gets a 529.
CONFIG = """
queue_size = 0
drain_timeout = {drain}

[[models]]
id = "scripted-1"
engine = "scripted"
slots = 1
token_delay = 0.05
"""
LONG = 400  # words: 20 s of generation


def body(words: int, *, stream: bool) -> dict[str, Any]:
    return {
        "model": "scripted-1",
        "max_tokens": 2000,
        "stream": stream,
        "messages": [{"role": "user", "content": f"count: {words}"}],
    }


async def usage_counts(data_dir: Path) -> dict[str, int]:
    engine = await open_database(f"sqlite:///{data_dir / 'parley.db'}")
    try:
        rows = await UsageStore(engine).rows()
    finally:
        await engine.dispose()
    totals: dict[str, int] = {}
    for row in rows:
        for name, value in row.counts.items():
            totals[name] = totals.get(name, 0) + value
    return totals


async def slot_free_within(http: httpx.AsyncClient, seconds: float) -> list[int]:
    """Statuses of quick requests until one is served (529 while the slot is held)."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = await http.post("/v1/messages", json=body(2, stream=False))
        statuses.append(response.status_code)
        if response.status_code != 529:
            break
        await asyncio.sleep(0.05)
    return statuses


async def settled(data_dir: Path, requests: int) -> dict[str, int]:
    """The usage totals once `requests` requests are recorded (flushed each second)."""
    counts: dict[str, int] = {}
    for _ in range(50):
        counts = await usage_counts(data_dir)
        if counts.get("requests", 0) >= requests:
            break
        await asyncio.sleep(0.1)
    return counts


async def check_stopped_and_settled(server: ParleyProcess, statuses: list[int]) -> None:
    """The slot was free again soon, and the abandoned request was recorded with the
    tokens made before it stopped: about when its client left, far from its 400 words."""
    assert statuses[-1] == 200, statuses
    counts = await settled(server.data_dir, 2)
    assert counts["requests"] == 2
    assert 0 < counts["output_tokens"] < 100, counts
    assert "Traceback" not in server.logs()


@pytest.fixture
def server(tmp_path: Path) -> Any:
    proc = ParleyProcess(tmp_path / "serve", config=CONFIG.format(drain=1.0)).start()
    yield proc
    proc.stop()


async def test_a_plain_request_whose_client_left_stops_and_is_settled(
    server: ParleyProcess,
) -> None:
    headers = old_sdk_headers(server.api_key)
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/messages", json=body(LONG, stream=False), timeout=0.5)
        statuses = await slot_free_within(http, 5)
    await check_stopped_and_settled(server, statuses)


async def test_a_stream_whose_client_left_stops_and_is_settled(server: ParleyProcess) -> None:
    headers = old_sdk_headers(server.api_key)
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        async with http.stream("POST", "/v1/messages", json=body(LONG, stream=True)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            seen = b""
            async for chunk in response.aiter_bytes():
                seen += chunk
                if seen.count(b"event: content_block_delta") >= 3:
                    break  # leaving the block closes the connection mid-stream
        statuses = await slot_free_within(http, 5)
    await check_stopped_and_settled(server, statuses)


async def test_a_plain_request_running_at_the_drain_deadline_gets_a_retryable_529(
    server: ParleyProcess,
) -> None:
    assert server.proc is not None
    headers = old_sdk_headers(server.api_key)
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        running = asyncio.create_task(http.post("/v1/messages", json=body(LONG, stream=False)))
        await asyncio.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        response = await running
    assert response.status_code == 529, response.text
    assert response.headers["x-should-retry"] == "true"
    assert response.json()["error"]["type"] == "overloaded_error"
    assert await asyncio.to_thread(server.proc.wait, 15) == 0
    counts = await usage_counts(server.data_dir)
    assert counts["requests"] == 1
    assert 0 < counts["output_tokens"] < 100, counts
