"""SIGTERM drains a real `parley serve`: new requests get a retryable 529, running
streams finish or end with an `error` event at the deadline (never a cut connection),
and usage is recorded for every one of them before the process exits."""

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
from tests.fuzz.checks import sse_events
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

DRAIN = 6.0
CONFIG = f"""
drain_timeout = {DRAIN}
queue_size = 40

[[models]]
id = "scripted-1"
engine = "scripted"
slots = 40
token_delay = 0.1
"""


def body(words: int, *, stream: bool = True) -> dict[str, Any]:
    return {
        "model": "scripted-1",
        "max_tokens": 2000,
        "stream": stream,
        "messages": [{"role": "user", "content": f"count: {words}"}],
    }


async def stream(http: httpx.AsyncClient, words: int, started: asyncio.Event) -> list[str]:
    """The names of the events the client saw; raises if the connection was cut."""
    async with http.stream("POST", "/v1/messages", json=body(words)) as response:
        assert response.status_code == 200, await response.aread()
        started.set()
        raw = b"".join([chunk async for chunk in response.aiter_bytes()])
    return [name for name, _ in sse_events(raw)]


async def usage_requests(data_dir: Path) -> int:
    engine = await open_database(f"sqlite:///{data_dir / 'parley.db'}")
    try:
        rows = await UsageStore(engine).rows()
        return sum(row.counts["requests"] for row in rows)
    finally:
        await engine.dispose()


async def test_sigterm_drains_streams_and_records_their_usage(tmp_path: Path) -> None:
    server = ParleyProcess(tmp_path / "serve", config=CONFIG).start()
    assert server.proc is not None
    headers = old_sdk_headers(server.api_key)
    limits = httpx.Limits(max_connections=100)
    try:
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=headers, timeout=60, limits=limits
        ) as http:
            # 20 long streams (50 s: cut at the deadline), 20 short ones (2 s: they
            # finish), and 20 queued behind the 40 slots (they run once the short ones
            # end, and finish or are cut).
            started = [asyncio.Event() for _ in range(60)]
            words = [500] * 20 + [20] * 20 + [20] * 20
            tasks = [
                asyncio.create_task(stream(http, n, event))
                for n, event in zip(words, started, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            refused = await http.post("/v1/messages", json=body(3, stream=False))
            results = await asyncio.gather(*tasks, return_exceptions=True)
        began = time.monotonic()
        code = await asyncio.to_thread(server.proc.wait, 30)
        exit_seconds = time.monotonic() - began
    finally:
        server.stop()

    assert refused.status_code == 529, refused.text
    assert refused.headers["x-should-retry"] == "true"
    assert refused.headers["connection"] == "close"
    assert refused.json()["error"]["type"] == "overloaded_error"
    assert refused.headers["request-id"] == refused.json()["request_id"]

    cut = [r for r in results if isinstance(r, BaseException)]
    assert not cut, f"connections cut: {cut[:3]}"
    endings = [events[-1] for events in results if isinstance(events, list)]
    assert set(endings) <= {"message_stop", "error"}, endings
    assert endings[:20] == ["error"] * 20  # the long ones, at the deadline
    assert endings[20:40] == ["message_stop"] * 20  # the short ones finished
    assert code == 0, server.logs()[-3000:]
    assert exit_seconds < 15
    # Every stream, finished or cut, was settled and its usage written before the exit.
    assert await usage_requests(server.data_dir) == 60
    logs = server.logs()
    assert "draining: 60 requests in flight" in logs
    assert "Traceback" not in logs
