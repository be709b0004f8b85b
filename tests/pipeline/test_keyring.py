"""Keys kept in memory: one store read for many requests, and a change made by any
process (another replica, the CLI) applies at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parley.core.records import ApiKey, UsageRecord
from parley.pipeline.background import BackgroundWork
from parley.pipeline.keyring import Keyring
from parley.store.database import Database, open_database
from parley.store.key_changes import key_changes
from parley.store.keys import KeyStore
from parley.store.usage import UsageStore


class CountingStore(KeyStore):
    """The real store, counting the lookups that reach the database."""

    reads = 0

    async def find_active_digest(self, digest: str) -> ApiKey | None:
        self.reads += 1
        return await super().find_active_digest(digest)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        pg: str = request.getfixturevalue("pg_url")
        return pg
    return f"sqlite:///{tmp_path / 'keys.db'}"


@pytest.fixture
async def databases(url: str) -> AsyncIterator[tuple[Database, Database]]:
    """Two engines on one database: this process, and another replica or the CLI."""
    mine, other = await open_database(url), await open_database(url)
    try:
        yield mine, other
    finally:
        await mine.dispose()
        await other.dispose()


Ring = tuple[Keyring, CountingStore, BackgroundWork]


@pytest.fixture
async def keys(databases: tuple[Database, Database]) -> AsyncIterator[Ring]:
    changes = key_changes(databases[0])
    await changes.start()
    store = CountingStore(databases[0])
    background = BackgroundWork()
    try:
        for _ in range(200):  # until it listens (PostgreSQL); at once on SQLite
            if changes.stamp() == changes.stamp():
                break
            await asyncio.sleep(0.01)
        yield Keyring(store, changes, lambda: 0.0, background.spawn), store, background
    finally:
        await background.drain()
        await changes.aclose()


async def test_a_key_is_read_once_for_many_requests(keys: Ring) -> None:
    ring, store, background = keys
    secret = (await store.create("k")).secret
    await background.drain()
    found = [await ring.find(secret) for _ in range(50)]
    await background.drain()
    assert all(key is not None and key.name == "k" for key in found)
    assert store.reads <= 3  # the first read, and a re-read after last_used_at was written
    assert await ring.find(secret + "x") is None


async def test_a_revoke_by_another_process_applies_at_once(
    keys: Ring, databases: tuple[Database, Database]
) -> None:
    ring, _, background = keys
    other = databases[1]
    created = await KeyStore(other).create("doomed")
    assert await ring.find(created.secret) is not None
    await background.drain()
    await KeyStore(other).revoke(created.key.id)
    # PostgreSQL delivers the change as a notification: allow it a moment to arrive.
    for _ in range(100):
        if await ring.find(created.secret) is None:
            break
        await asyncio.sleep(0.01)
    assert await ring.find(created.secret) is None
    reactivated_name = await KeyStore(other).update(created.key.id, name="renamed")
    assert reactivated_name.status == "archived"
    assert await ring.find(created.secret) is None


async def test_a_change_made_here_applies_before_the_call_returns(keys: Ring) -> None:
    ring, _, _ = keys
    created = await ring.create("here")
    assert await ring.find(created.secret) is not None
    await ring.update(created.key.id, status="inactive")
    assert await ring.find(created.secret) is None


async def test_other_writes_to_the_database_leave_the_keys_in_memory(
    keys: Ring, databases: tuple[Database, Database]
) -> None:
    # Usage and batch writes commit every second; were they news to the keyring, every
    # process would read its keys from the store again after each of them.
    ring, store, background = keys
    secret = (await store.create("k")).secret
    assert await ring.find(secret) is not None
    await background.drain()
    await asyncio.sleep(0.2)  # PostgreSQL: the create's own notification arrives
    assert await ring.find(secret) is not None
    reads = store.reads
    for day in range(5):
        await UsageStore(databases[1]).add_all(
            [UsageRecord("key_x", "m", datetime(2026, 1, day + 1, tzinfo=UTC), input_tokens=3)]
        )
        assert await ring.find(secret) is not None
    assert store.reads == reads
