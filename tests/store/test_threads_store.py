"""Message threads in the store, on PostgreSQL and SQLite with the same code: the
migrated tables, claims under concurrency, turns kept only under a claim that holds,
clean-up; and two app instances sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.config import Settings
from parley.core.threads import StoredTurn
from parley.store.database import open_database
from parley.store.schema import metadata
from parley.store.threads import NewThread, ThreadStore
from tests.clock import FakeClock
from tests.conftest import scripted_settings
from tests.server.test_threads import (
    SLOW_MODEL,
    app,
    claimed,
    cont,
    create,
    models,
    ok,
    refused,
    text,
)
from tests.server.test_threads import user as user_message

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
TURN = StoredTurn('[{"role":"user","content":"hi"}]', '[{"type":"text","text":"hello"}]')


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


@pytest.fixture
def store(engine: AsyncEngine) -> ThreadStore:
    return ThreadStore(engine)


async def new_thread(store: ThreadStore, message_id: str = "msg_01a") -> None:
    await store.create(NewThread(message_id, "key_1", "{}", None, None), TURN, NOW, LATER)


async def test_the_migrations_make_the_tables_of_the_schema(engine: AsyncEngine) -> None:
    """schema.py and the migrations agree (the thread tables with the rest)."""

    def differences(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []


async def test_one_claim_wins_among_many(store: ThreadStore) -> None:
    await new_thread(store)
    claims = await asyncio.gather(
        *[store.claim("msg_01a", f"t{i}", NOW, NOW + timedelta(minutes=5)) for i in range(12)]
    )
    assert sum(claims) == 1
    found = await store.find("msg_01a")
    assert found is not None
    assert found.claimed(NOW)
    assert not found.claimed(NOW + timedelta(minutes=6))


async def test_a_turn_is_kept_only_under_its_claim(store: ThreadStore) -> None:
    await new_thread(store)
    reply = await store.find("msg_01a")
    assert reply is not None
    assert await store.claim("msg_01a", "mine", NOW, NOW + timedelta(minutes=5))
    # Someone else's token keeps nothing.
    assert not await store.append(reply, "theirs", "msg_01b", TURN, LATER)
    assert await store.count() == (1, 1)
    assert await store.append(reply, "mine", "msg_01b", TURN, LATER + timedelta(days=1))
    # Once continued, never again (the claim is gone with it).
    assert not await store.claim("msg_01a", "again", NOW, NOW + timedelta(minutes=5))
    assert not await store.append(reply, "mine", "msg_01c", TURN, LATER)
    found = await store.find("msg_01a")
    assert found is not None
    assert (found.continued_by, found.claim_token) == ("msg_01b", None)
    loaded = await store.load("msg_01b")
    assert loaded is not None
    newest, history = loaded
    assert (newest.position, newest.expires_at) == (1, LATER + timedelta(days=1))
    assert history == [TURN, TURN]
    assert await store.load("msg_01a") == (found, [TURN])


async def test_a_released_claim_may_be_taken_again(store: ThreadStore) -> None:
    await new_thread(store)
    assert await store.claim("msg_01a", "one", NOW, NOW + timedelta(minutes=5))
    await store.release("msg_01a", "other")  # not its claim: nothing happens
    assert not await store.claim("msg_01a", "two", NOW, NOW + timedelta(minutes=5))
    await store.release("msg_01a", "one")
    assert await store.claim("msg_01a", "two", NOW, NOW + timedelta(minutes=5))


async def test_sweep_deletes_expired_threads_with_their_turns(store: ThreadStore) -> None:
    await new_thread(store, "msg_01a")
    await store.create(
        NewThread("msg_01x", "key_1", "{}", None, None), TURN, NOW, LATER + timedelta(days=1)
    )
    reply = await store.find("msg_01a")
    assert reply is not None
    assert await store.claim("msg_01a", "t", NOW, NOW + timedelta(minutes=5))
    assert await store.append(reply, "t", "msg_01b", TURN, LATER)
    assert await store.sweep(LATER - timedelta(seconds=1)) == 0
    assert await store.sweep(LATER) == 1
    assert await store.count() == (1, 1)
    assert await store.find("msg_01b") is None
    assert await store.find("msg_01x") is not None


async def test_a_turn_is_not_kept_once_its_thread_was_swept(store: ThreadStore) -> None:
    await new_thread(store)
    reply = await store.find("msg_01a")
    assert reply is not None
    assert await store.claim("msg_01a", "t", NOW, NOW + timedelta(minutes=5))
    assert await store.sweep(LATER) == 1
    assert not await store.append(reply, "t", "msg_01b", TURN, LATER + timedelta(days=30))
    assert await store.count() == (0, 0)


# --- replicas ------------------------------------------------------------------------


async def test_two_app_instances_share_threads_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    clock = FakeClock()

    def settings(name: str) -> Settings:
        return scripted_settings(
            tmp_path / name, models=models(), database_url=pg_url, batch_worker=False
        )

    async with (
        app(settings("a"), clock) as (svc_a, http_a),
        app(settings("b"), clock) as (_svc_b, http_b),
    ):
        # Each instance made its own key; the threads belong to one of them.
        secret = (await svc_a.keys.store.create("shared")).secret
        for http in (http_a, http_b):
            http.headers["x-api-key"] = secret
        first = await ok(http_a, create(user_message("one"), system="S"))
        second = await ok(http_b, cont(first["id"], user_message("two")))
        assert text(second) == "Echo: two"
        third = await ok(http_a, cont(second["id"], user_message("three")))
        assert third["usage"]["input_tokens"] > second["usage"]["input_tokens"]
        await refused(http_b, cont(first["id"], user_message("x")), 400, "thread_already_continued")
        # A continue running through one instance is in flight for the other.
        slow = await ok(http_a, create(user_message("start"), model=SLOW_MODEL))
        running = asyncio.create_task(
            ok(http_a, cont(slow["id"], user_message("count: 20"), model=SLOW_MODEL))
        )
        await claimed(svc_a, slow["id"])
        await refused(
            http_b,
            cont(slow["id"], user_message("me too"), model=SLOW_MODEL),
            400,
            "thread_continue_in_flight",
        )
        done = await running
        on = await ok(http_b, cont(done["id"], user_message("on"), model=SLOW_MODEL))
        assert text(on) == "Echo: on"
