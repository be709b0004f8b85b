"""Faults with real `parley serve` processes: SIGKILL in the middle of a batch, and two
replicas sharing one batch on PostgreSQL. Every request ends with exactly one result."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from parley.store.batch_leases import BatchLeaseStore
from parley.store.database import open_database
from parley.store.schema import usage
from tests.conftest import SCRIPTED_MODEL, old_sdk_headers
from tests.pg import run_sync
from tests.serverproc import ParleyProcess

pytestmark = pytest.mark.e2e

# Three slots, so batch work may use two; frequent polls, so that a replica notices new
# work at once; the lease as given (short where a killed process's claims must lapse).
CONFIG = """
batch_lease_seconds = {lease}
batch_poll_interval = 0.1
batch_concurrency = 4

[[models]]
id = "{model}"
engine = "scripted"
slots = 3
token_delay = 0.01
"""


def config(lease: float) -> str:
    return CONFIG.format(lease=lease, model=SCRIPTED_MODEL)


BATCHES = "/v1/messages/batches"


def requests_(n: int, words: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"req-{i}",
            "params": {
                "model": SCRIPTED_MODEL,
                "max_tokens": 100,
                "messages": [{"role": "user", "content": f"say: {i} " + "w " * (words - 1)}],
            },
        }
        for i in range(n)
    ]


def client(server: ParleyProcess, api_key: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=old_sdk_headers(api_key), timeout=30)


def wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def ended(http: httpx.Client, batch_id: str) -> dict[str, Any]:
    batches: list[dict[str, Any]] = []

    def check() -> bool:
        response = http.get(f"{BATCHES}/{batch_id}")
        assert response.status_code == 200, response.text
        batches.append(response.json())
        return bool(batches[-1]["processing_status"] == "ended")

    wait_for(check)
    return batches[-1]


def results(http: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    response = http.get(f"{BATCHES}/{batch_id}/results")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def assert_one_success_each(lines: list[dict[str, Any]], n: int) -> None:
    ids = [line["custom_id"] for line in lines]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(n))  # no loss, no duplicate
    for line in lines:
        result = line["result"]
        assert result["type"] == "succeeded", line
        number = line["custom_id"].removeprefix("req-")
        assert result["message"]["content"][0]["text"].split()[0] == number


def test_sigkill_mid_batch_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    n = 80
    first = ParleyProcess(tmp_path / "data", config=config(lease=1.0)).start()
    try:
        api_key = first.api_key
        with client(first, api_key) as http:
            created = http.post(BATCHES, json={"requests": requests_(n, words=10)})
            assert created.status_code == 200, created.text
            batch_id = created.json()["id"]

            def some_done() -> bool:
                response = http.get(f"{BATCHES}/{batch_id}")
                finished = response.headers.get("parley-batch-requests-finished")
                return finished is not None and int(finished) >= 10

            wait_for(some_done)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
    finally:
        first.stop()

    second = ParleyProcess(tmp_path / "data", config=config(lease=1.0)).start()
    try:
        with client(second, api_key) as http:
            assert http.get(f"{BATCHES}/{batch_id}").json()["processing_status"] == "in_progress"
            batch = ended(http, batch_id)
            assert batch["request_counts"]["succeeded"] == n
            assert_one_success_each(results(http, batch_id), n)
    finally:
        second.stop()


def test_two_replicas_share_a_batch_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    n = 80
    env = {"PARLEY_DATABASE_URL": pg_url}
    # A long lease: here a request runs twice only if a replica's claim is taken over.
    one = ParleyProcess(tmp_path / "one", config=config(lease=30.0), env=env).start()
    two: ParleyProcess | None = None
    try:
        two = ParleyProcess(tmp_path / "two", config=config(lease=30.0), env=env).start()
        with client(one, one.api_key) as http_one, client(two, one.api_key) as http_two:
            created = http_one.post(BATCHES, json={"requests": requests_(n, words=5)})
            assert created.status_code == 200, created.text
            batch_id = created.json()["id"]
            batch = ended(http_two, batch_id)  # either replica answers for the batch
            assert batch["request_counts"]["succeeded"] == n
            assert_one_success_each(results(http_one, batch_id), n)
    finally:
        one.stop()
        if two is not None:
            two.stop()

    async def inspect() -> tuple[dict[str, int], int]:
        database = await open_database(pg_url)
        try:
            workers = await BatchLeaseStore(database).claimed_by(batch_id)
            async with database.connect() as conn:
                runs = (await conn.execute(select(func.sum(usage.c.requests)))).scalar_one()
            return workers, int(runs)
        finally:
            await database.dispose()

    workers, runs = run_sync(inspect())
    # Both replicas did part of the work, and no request ran twice: usage counts every
    # run that reached an engine.
    assert len(workers) == 2, workers
    assert all(count > 0 for count in workers.values()), workers
    assert sum(workers.values()) == n
    assert runs == n
