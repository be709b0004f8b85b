"""The store on a real PostgreSQL and on SQLite, with the same code: migrations on a
fresh database (idempotent, and safe when replicas start together), keys, usage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.core.records import UsageRecord
from parley.store.database import MIGRATIONS, open_database
from parley.store.keys import SECRET_PREFIX, KeyNotFound, KeyStore
from parley.store.schema import api_keys
from parley.store.usage import UsageStore

AT = datetime(2027, 1, 15, 8, 30, 12, tzinfo=UTC)
MINUTE = AT.replace(second=0)


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        pg: str = request.getfixturevalue("pg_url")
        return pg
    return f"sqlite:///{tmp_path / 'data' / 'parley.db'}"


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = await open_database(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names)


# The newest migration: every open runs the store up to it.
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


async def revision(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return [row[0] for row in rows]


# --- migrations -----------------------------------------------------------------


async def test_migrations_create_the_schema_on_a_fresh_database(engine: AsyncEngine) -> None:
    assert {"api_keys", "usage", "alembic_version"} <= await tables(engine)
    assert await revision(engine) == [HEAD]


async def test_a_postgres_url_uses_postgres(pg_url: str) -> None:
    engine = await open_database(pg_url)
    try:
        assert engine.dialect.name == "postgresql"
        assert engine.url.drivername == "postgresql+asyncpg"
        async with engine.connect() as conn:
            name = (await conn.execute(text("SELECT current_database()"))).scalar_one()
        assert name == pg_url.rsplit("/", 1)[1]
    finally:
        await engine.dispose()


async def test_opening_twice_is_idempotent_and_keeps_data(url: str) -> None:
    first = await open_database(url)
    try:
        created = await KeyStore(first).create("kept")
        await UsageStore(first).add(UsageRecord("apikey_01x", "m", AT, 1, 2, 3))
    finally:
        await first.dispose()
    second = await open_database(url)
    try:
        assert await revision(second) == [HEAD]
        assert await KeyStore(second).find_active(created.secret) == created.key
        rows = await UsageStore(second).rows()
        assert [r.counts["output_tokens"] for r in rows] == [3]
    finally:
        await second.dispose()


async def test_replicas_opening_at_once_do_not_fail(url: str) -> None:
    """Several processes start together on an empty database: each migrates or finds
    it migrated, none fails (PostgreSQL: they take turns on an advisory lock)."""
    engines = await asyncio.gather(*[open_database(url) for _ in range(4)])
    try:
        for engine in engines:
            assert await revision(engine) == [HEAD]
        assert {"api_keys", "usage"} <= await tables(engines[0])
    finally:
        for engine in engines:
            await engine.dispose()


# --- keys -----------------------------------------------------------------------


async def test_keys_create_find_and_list(engine: AsyncEngine) -> None:
    keys = KeyStore(engine)
    assert await keys.count() == 0
    first = await keys.create("first")
    second = await keys.create("second", tier="free")
    admin = await keys.create("ops", admin=True)
    assert await keys.count() == 3
    assert first.secret.startswith(SECRET_PREFIX)
    assert admin.secret.startswith("sk-parley-admin-")
    assert first.secret != second.secret

    found = await keys.find_active(second.secret)
    assert found is not None
    assert found.id == second.key.id
    assert found.tier == "free"
    assert found.status == "active"
    assert not found.is_admin
    assert found.created_at.tzinfo is not None
    assert found.created_at == second.key.created_at
    assert (await keys.find_active(admin.secret)) == admin.key

    assert await keys.find_active(first.secret + "x") is None
    assert await keys.find_active("") is None
    assert await keys.find_active(SECRET_PREFIX) is None

    listed = await keys.list()
    assert [k.id for k in listed] == [admin.key.id, second.key.id, first.key.id]  # newest first
    assert await keys.get(first.key.id) == first.key


async def test_secrets_are_stored_only_as_hashes(engine: AsyncEngine) -> None:
    keys = KeyStore(engine)
    created = await keys.create("secretive")
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_keys))).one()
    stored = " ".join(str(value) for value in row)
    body = created.secret[len(SECRET_PREFIX) :]
    assert body not in stored
    # Not even a long piece of it (the hint shows 4 characters at each end).
    assert all(body[i : i + 8] not in stored for i in range(4, len(body) - 12))
    assert row.hint == created.key.hint
    assert row.hint.startswith(SECRET_PREFIX)
    assert row.hint.endswith(created.secret[-4:])


async def test_revoked_and_inactive_keys_are_refused(engine: AsyncEngine) -> None:
    keys = KeyStore(engine)
    revoked = await keys.create("revoked")
    paused = await keys.create("paused")
    assert (await keys.revoke(revoked.key.id)).status == "archived"
    assert await keys.find_active(revoked.secret) is None
    assert (await keys.update(paused.key.id, status="inactive")).status == "inactive"
    assert await keys.find_active(paused.secret) is None
    assert (await keys.update(paused.key.id, status="active")).status == "active"
    assert await keys.find_active(paused.secret) is not None
    # Archived is final.
    with pytest.raises(ValueError, match="archived"):
        await keys.update(revoked.key.id, status="active")
    assert await keys.find_active(revoked.secret) is None
    renamed = await keys.update(paused.key.id, name="renamed")
    assert renamed.name == "renamed"
    assert renamed.status == "active"


async def test_unknown_key_ids(engine: AsyncEngine) -> None:
    keys = KeyStore(engine)
    with pytest.raises(KeyNotFound):
        await keys.get("apikey_01nope")
    with pytest.raises(KeyNotFound):
        await keys.revoke("apikey_01nope")


async def test_touch_records_last_use(engine: AsyncEngine) -> None:
    keys = KeyStore(engine)
    created = await keys.create("used")
    assert created.key.last_used_at is None
    await keys.touch(created.key.id, AT)
    assert (await keys.get(created.key.id)).last_used_at == AT


async def test_a_key_revoked_through_one_engine_is_refused_by_another(url: str) -> None:
    """Two replicas, each with its own connection pool: revocation is seen at once."""
    one, other = await open_database(url), await open_database(url)
    try:
        created = await KeyStore(one).create("shared")
        assert await KeyStore(other).find_active(created.secret) is not None
        await KeyStore(one).revoke(created.key.id)
        assert await KeyStore(other).find_active(created.secret) is None
    finally:
        await one.dispose()
        await other.dispose()


# --- usage ----------------------------------------------------------------------


async def test_usage_adds_up_per_key_model_and_minute(engine: AsyncEngine) -> None:
    usage = UsageStore(engine)
    await usage.add(UsageRecord("k1", "m1", AT, 1, 10, 5, 2, 3))
    await usage.add(UsageRecord("k1", "m1", AT + timedelta(seconds=40), 1, 1, 1))  # same minute
    await usage.add(UsageRecord("k1", "m1", AT + timedelta(minutes=1), 1, 7, 0))
    await usage.add(UsageRecord("k1", "m2", AT, 1, 100, 100))
    await usage.add(UsageRecord("k2", "m1", AT, 1, 1000, 1000))

    rows = await usage.rows(key_ids=["k1"], models=["m1"])
    assert [(r.minute, r.counts) for r in rows] == [
        (
            datetime(2027, 1, 15, 8, 30, tzinfo=UTC),
            {
                "requests": 2,
                "input_tokens": 11,
                "output_tokens": 6,
                "cache_creation_input_tokens": 2,
                "cache_read_input_tokens": 3,
            },
        ),
        (
            datetime(2027, 1, 15, 8, 31, tzinfo=UTC),
            {
                "requests": 1,
                "input_tokens": 7,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        ),
    ]
    assert len(await usage.rows()) == 4
    assert len(await usage.rows(since=AT + timedelta(minutes=1))) == 1
    assert len(await usage.rows(until=AT.replace(second=0) + timedelta(minutes=1))) == 3
    assert {r.key_id for r in await usage.rows(models=["m1"])} == {"k1", "k2"}

    # Everything counts towards a budget: input, output and cached input.
    assert (
        await usage.tokens_since("k1", AT.replace(day=1, hour=0, minute=0)) == 11 + 6 + 5 + 7 + 200
    )
    assert await usage.tokens_since("k1", AT + timedelta(minutes=1)) == 7
    assert await usage.tokens_since("nobody", AT) == 0


async def test_usage_times_are_utc_whatever_the_offset(engine: AsyncEngine) -> None:
    usage = UsageStore(engine)
    tokyo = AT.astimezone(ZoneInfo("Asia/Tokyo"))
    await usage.add(UsageRecord("k", "m", tokyo, 1, 1, 1))
    await usage.add(UsageRecord("k", "m", AT, 1, 1, 1))
    (row,) = await usage.rows()
    assert row.minute == datetime(2027, 1, 15, 8, 30, tzinfo=UTC)
    assert row.minute.utcoffset() == timedelta(0)
    assert row.counts["requests"] == 2


async def test_concurrent_usage_adds_sum_exactly(engine: AsyncEngine) -> None:
    usage = UsageStore(engine)
    await asyncio.gather(
        *[
            usage.add(UsageRecord("k", "m", MINUTE + timedelta(seconds=i), 1, i, 2))
            for i in range(60)
        ]
    )
    (row,) = await usage.rows()
    assert row.counts["requests"] == 60
    assert row.counts["input_tokens"] == sum(range(60))
    assert row.counts["output_tokens"] == 120


async def test_concurrent_usage_adds_from_two_replicas(url: str) -> None:
    """Two engines (two replicas' pools) writing the same new minute row at once:
    the first insert races, the upsert still loses nothing."""
    one, other = await open_database(url), await open_database(url)
    try:
        stores = [UsageStore(one), UsageStore(other)]
        await asyncio.gather(
            *[stores[i % 2].add(UsageRecord("k", "m", AT, 1, 3, 4)) for i in range(80)]
        )
        (row,) = await stores[0].rows()
        assert row.counts["requests"] == 80
        assert row.counts["input_tokens"] == 240
        assert row.counts["output_tokens"] == 320
    finally:
        await one.dispose()
        await other.dispose()
