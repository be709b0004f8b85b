"""Usage held in memory and written per interval: totals per key, model and minute,
budgets that see what is still held, and nothing lost while the database is away."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parley.core.records import UsageRecord
from parley.store.database import Database, open_database
from parley.store.usage import UsageStore
from parley.store.usage_recorder import UsageRecorder

AT = datetime(2027, 3, 4, 5, 6, 7, tzinfo=UTC)


class FlakyStore(UsageStore):
    """A real store whose writes can be made to fail, as when the database is down."""

    down = False

    async def add_all(self, records: Iterable[UsageRecord]) -> None:
        if self.down:
            raise ConnectionError("database unreachable")
        await super().add_all(records)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    engine = await open_database(f"sqlite:///{tmp_path / 'usage.db'}")
    try:
        yield engine
    finally:
        await engine.dispose()


def record(key: str = "k1", *, at: datetime = AT, **counts: int) -> UsageRecord:
    return UsageRecord(key, "m", at, **counts)


async def test_records_are_added_up_per_key_model_and_minute(database: Database) -> None:
    recorder = UsageRecorder(UsageStore(database), interval=60)
    recorder.record(record(input_tokens=3, output_tokens=4))
    recorder.record(record(at=AT + timedelta(seconds=30), input_tokens=5, output_tokens=1))
    recorder.record(record(at=AT + timedelta(minutes=1), input_tokens=7))
    recorder.record(record("k2", input_tokens=1))
    assert await recorder.store.rows() == []  # nothing written before a flush
    await recorder.flush()
    rows = {(r.key_id, r.minute.minute): r.counts for r in await recorder.store.rows()}
    assert rows[("k1", 6)]["requests"] == 2
    assert (rows[("k1", 6)]["input_tokens"], rows[("k1", 6)]["output_tokens"]) == (8, 5)
    assert rows[("k1", 7)]["input_tokens"] == 7
    assert rows[("k2", 6)]["input_tokens"] == 1


async def test_budgets_count_what_is_still_held(database: Database) -> None:
    recorder = UsageRecorder(UsageStore(database), interval=60)
    recorder.record(record(input_tokens=10, output_tokens=5))
    await recorder.flush()
    recorder.record(record(input_tokens=2, cache_read_input_tokens=3))
    assert await recorder.tokens_since("k1", AT.replace(day=1)) == 20
    assert await recorder.tokens_since("k1", AT + timedelta(minutes=1)) == 0
    assert await recorder.tokens_since("nobody", AT.replace(day=1)) == 0


async def test_a_failed_write_keeps_the_usage_for_the_next(database: Database) -> None:
    store = FlakyStore(database)
    recorder = UsageRecorder(store, interval=60)
    recorder.record(record(input_tokens=1))
    store.down = True
    with pytest.raises(ConnectionError):
        await recorder.flush()
    recorder.record(record(input_tokens=2))
    store.down = False
    await recorder.flush()
    [row] = await store.rows()
    assert (row.counts["requests"], row.counts["input_tokens"]) == (2, 3)


async def test_closing_writes_what_is_held(database: Database) -> None:
    recorder = UsageRecorder(UsageStore(database), interval=3600)
    recorder.start()
    recorder.record(record(output_tokens=9))
    await recorder.aclose()
    [row] = await recorder.store.rows()
    assert row.counts["output_tokens"] == 9


async def test_what_is_held_while_the_store_is_down_is_bounded(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(database)
    recorder = UsageRecorder(store, interval=60, max_held=3)
    store.down = True
    for minute in range(5):  # five (key, model, minute) totals; room for three
        recorder.record(record(at=AT + timedelta(minutes=minute), input_tokens=1))
    recorder.record(record(at=AT, input_tokens=10))  # a total already held still adds up
    with pytest.raises(ConnectionError):
        await recorder.flush()
    assert recorder.held == 3
    assert recorder.dropped == 2
    assert caplog.text.count("at its bound") == 1
    store.down = False
    await recorder.aclose()
    rows = await store.rows()
    assert sum(r.counts["requests"] for r in rows) == 4
    assert sum(r.counts["input_tokens"] for r in rows) == 13


async def test_a_store_down_at_shutdown_is_logged_not_raised(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(database)
    recorder = UsageRecorder(store, interval=60)
    recorder.record(record(input_tokens=1))
    store.down = True
    await recorder.aclose()
    assert "usage of 1 requests could not be written at shutdown" in caplog.text
