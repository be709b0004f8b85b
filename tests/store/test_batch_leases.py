"""The batch lease store on the real PostgreSQL: claims from concurrent workers never
overlap and never exceed their limit; results are written once; finalize counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.store.batch_leases import BatchLeaseStore, Outcome
from parley.store.batch_records import BatchRecordStore, NewRequest
from parley.store.database import open_database

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
LEASE = T0 + timedelta(seconds=30)


@pytest.fixture
async def engines(pg_url: str) -> AsyncIterator[list[AsyncEngine]]:
    """Three engines of their own, as three replicas would have."""
    engines = [await open_database(pg_url) for _ in range(3)]
    try:
        yield engines
    finally:
        for engine in engines:
            await engine.dispose()


async def make_batch(records: BatchRecordStore, n: int) -> None:
    await records.begin("msgbatch_01pg", "key", "2023-06-01", T0, T0 + timedelta(hours=24))
    await records.add_requests("msgbatch_01pg", [NewRequest(i, f"c{i}", "{}") for i in range(n)])
    await records.activate("msgbatch_01pg", n)


async def test_concurrent_claims_share_the_work_without_overlap(
    engines: list[AsyncEngine],
) -> None:
    records = BatchRecordStore(engines[0])
    stores = [BatchLeaseStore(engine) for engine in engines]
    await make_batch(records, 200)
    [batch] = await stores[0].claimable_batches(T0)
    claimed: dict[str, list[int]] = {f"w{i}": [] for i in range(3)}

    async def worker(name: str, store: BatchLeaseStore) -> None:
        while True:
            got = await store.claim(batch, name, 7, T0, LEASE)
            assert len(got) <= 7
            if not got:
                return
            claimed[name] += [c.position for c in got]

    await asyncio.gather(*(worker(f"w{i}", s) for i, s in enumerate(stores)))
    everything = sorted(p for positions in claimed.values() for p in positions)
    assert everything == list(range(200))
    assert await records.state_counts(batch.id) == {"running": 200}


async def test_results_are_written_once_and_the_batch_ends(engines: list[AsyncEngine]) -> None:
    records = BatchRecordStore(engines[0])
    first, second, _ = (BatchLeaseStore(engine) for engine in engines)
    await make_batch(records, 3)
    [batch] = await first.claimable_batches(T0)
    mine = await first.claim(batch, "w1", 2, T0, LEASE)
    assert [c.position for c in mine] == [0, 1]
    # w1's lease lapses; w2 takes over request 0 and the pending request 2.
    later = LEASE + timedelta(seconds=1)
    taken = await second.claim(batch, "w2", 2, later, later + timedelta(seconds=30))
    assert [c.position for c in taken] == [0, 1]
    assert await second.claim(batch, "w2", 5, later, later + timedelta(seconds=30)) != []

    def outcome(position: int, state: str = "succeeded") -> Outcome:
        return Outcome(batch.id, position, state, '{"type":"succeeded"}')

    assert await first.complete("w1", [outcome(0), outcome(1)]) == 0
    assert await second.complete("w2", [outcome(0), outcome(1), outcome(2)]) == 3
    assert await second.unfinished(batch.id) is False
    assert await first.finalize(batch.id, later)
    assert not await second.finalize(batch.id, later)  # once
    record = await records.get(batch.id)
    assert record is not None
    assert record.processing_status == "ended"
    assert record.counts == {"succeeded": 3, "errored": 0, "canceled": 0, "expired": 0}
    assert await first.claimed_by(batch.id) == {"w2": 3}
