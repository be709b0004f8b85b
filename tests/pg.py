"""The real PostgreSQL and Redis the storage and rate-limit tests run against.

Each test gets a fresh database (`parley_t_<random>`, dropped afterwards) and
a fresh Redis key prefix (its keys deleted afterwards). CI has both services;
when one is missing the tests fail with a message saying so, never skip.
Override the servers with TEST_POSTGRES_URL (a database to connect to for
CREATE DATABASE) and TEST_REDIS_URL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

T = TypeVar("T")


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on its own loop in its own thread, so that
    synchronous tests and fixtures can use async libraries whatever loop the
    calling thread has (pytest-asyncio's, or none)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(work))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def database_url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


async def _admin(sql: str, *args: object) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        problem = repr(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({problem}). These tests need a "
            "real server (trust auth, database `test`); CI provides one.",
            pytrace=False,
        )
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def _drop(name: str) -> None:
    await _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (or module); yields its URL."""
    name = "parley_t_" + secrets.token_hex(6)
    run_sync(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield database_url(name)
    finally:
        run_sync(_drop(name))


def _redis() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        problem = str(exc)
    else:
        return client
    client.close()
    pytest.fail(
        f"Redis is not reachable at {REDIS_URL} ({problem}). These tests need a real server; "
        "CI provides one.",
        pytrace=False,
    )


def require_redis() -> str:
    _redis().close()
    return REDIS_URL


@contextmanager
def fresh_redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    client = _redis()
    prefix = "parley-t-" + secrets.token_hex(6)
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
