"""`parley serve --workers N`: several processes on one port, one store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from parley.store.database import open_database
from parley.store.usage import UsageStore
from tests.conftest import SCRIPTED_CONFIG, SCRIPTED_MODEL
from tests.serverproc import ParleyProcess
from tests.telemetry.scrape import Scrape

pytestmark = pytest.mark.e2e


def workers_of(server: ParleyProcess) -> list[int]:
    """The worker processes (not multiprocessing's own resource tracker)."""
    assert server.proc is not None
    found = subprocess.run(
        ["pgrep", "-P", str(server.proc.pid), "-f", "spawn_main"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(pid) for pid in found.stdout.split()]


def wait_for(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition never became true")


async def send(server: ParleyProcess, count: int) -> list[httpx.Response]:
    headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
    body = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "count: 5"}],
    }
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        return list(
            await asyncio.gather(*[http.post("/v1/messages", json=body) for _ in range(count)])
        )


def test_workers_share_the_port_and_the_store(tmp_path: Path) -> None:
    server = ParleyProcess(tmp_path / "data", config=SCRIPTED_CONFIG, args=["--workers", "2"])
    server.start()
    try:
        assert server.logs().count("Parley ready on") == 1
        assert len(workers_of(server)) == 2
        replies = asyncio.run(send(server, 40))
        assert [r.status_code for r in replies] == [200] * 40
        assert {r.json()["content"][0]["text"] for r in replies} == {"1 2 3 4 5"}

        # A worker that dies is replaced; the port keeps answering meanwhile. (It dies
        # after its usage was written: what a crash loses is at most one flush interval.)
        time.sleep(2.5)
        first = workers_of(server)[0]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(workers_of(server)) == 2 and first not in workers_of(server))
        replies = asyncio.run(send(server, 10))
        assert [r.status_code for r in replies] == [200] * 10
    finally:
        server.stop()
    assert server.proc is not None
    assert server.proc.returncode == 0
    assert "Traceback" not in server.logs()

    async def requests_recorded() -> int:
        database = await open_database(f"sqlite:///{server.data_dir / 'parley.db'}")
        try:
            rows = await UsageStore(database).rows()
        finally:
            await database.dispose()
        return sum(r.counts["requests"] for r in rows)

    # Each worker wrote its usage before it stopped (the killed one lost at most its
    # last flush interval: it had served nothing since the previous flush).
    assert asyncio.run(requests_recorded()) >= 40


async def scrape_fresh(server: ParleyProcess) -> Scrape:
    """One scrape on a connection of its own: the kernel picks the worker that answers."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)


async def send_apart(server: ParleyProcess, count: int) -> None:
    """`count` messages, each on a connection of its own (spread over the workers)."""
    headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
    body = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    for _ in range(count):
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            assert (await http.post("/v1/messages", json=body)).status_code == 200


def test_a_scrape_of_any_worker_reports_every_worker(tmp_path: Path) -> None:
    server = ParleyProcess(tmp_path / "data", config=SCRIPTED_CONFIG, args=["--workers", "2"])
    server.start()
    try:
        asyncio.run(send_apart(server, 20))
        workers = set(workers_of(server))
        for _ in range(6):
            scraped = asyncio.run(scrape_fresh(server))
            # Counts are summed over the workers, whichever answered.
            assert scraped.total("parley_http_requests_total", route="/v1/messages") == 20
            assert scraped.total("parley_tokens_total", type="output") > 0
            # State: slots summed (two per worker), readiness one series per worker.
            assert scraped.get("parley_engine_slots", model=SCRIPTED_MODEL) == 4
            ready = {
                int(s.labels["pid"]): s.value
                for s in scraped.samples
                if s.name == "parley_model_ready"
            }
            assert ready == dict.fromkeys(workers, 1.0)
            assert scraped.get("process_cpu_seconds_total") > 0
            assert scraped.get("parley_http_requests_in_flight") >= 1  # this scrape

        # A worker that dies: its state leaves the scrape, its counts stay.
        killed = sorted(workers)[0]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: len(workers_of(server)) == 2 and killed not in workers_of(server))
        now = set(workers_of(server))

        def current() -> bool:
            scraped = asyncio.run(scrape_fresh(server))
            pids = {int(s.labels["pid"]) for s in scraped.samples if s.name == "parley_model_ready"}
            return pids == now

        wait_for(current, timeout=30)
        scraped = asyncio.run(scrape_fresh(server))
        assert scraped.total("parley_http_requests_total", route="/v1/messages") == 20
        assert scraped.get("parley_engine_slots", model=SCRIPTED_MODEL) == 4
    finally:
        server.stop()
    assert "Traceback" not in server.logs()
