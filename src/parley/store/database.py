"""One async SQLAlchemy engine for SQLite (default) or PostgreSQL, migrated on open."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# What the stores are built on; named so that their callers need not import SQLAlchemy.
Database = AsyncEngine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; replicas starting at once take turns to migrate.
_MIGRATION_LOCK = 7_242_033_901


def async_url(url: str) -> str:
    """Pick the async driver for a plain URL (`sqlite:///...`, `postgresql://...`)."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _upgrade(connection: Connection) -> None:
    # Processes opening a fresh database at once (replicas; `parley keys create` beside
    # `parley serve`) take the lock before alembic reads the version, so they migrate in
    # turn instead of racing to create the same tables.
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
    elif connection.dialect.name == "sqlite":
        # pysqlite opens no transaction for DDL by itself; this one holds the write lock.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # With WAL (set once per file, below) a commit under synchronous=NORMAL no longer
    # waits for fsync: a killed process still loses nothing committed (only a power
    # cut could lose the last commits).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def _use_wal(engine: AsyncEngine) -> None:
    """WAL lets readers (lists, results, usage) run beside the one writer. Switching
    needs the file to itself and does not wait for a busy one, so processes opening
    the same new file at once retry briefly; WAL then stays set in the file."""
    for _ in range(100):
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            return
        except OperationalError:
            await asyncio.sleep(0.05)
    log.warning("SQLite stays in its default journal mode: the file is busy")


class DatabaseUnavailable(Exception):
    """The database could not be opened. The message names the server's complaint,
    never the URL, which may hold a password."""


async def open_database(url: str) -> AsyncEngine:
    try:
        return await _open(url)
    except (OSError, SQLAlchemyError) as exc:
        raise DatabaseUnavailable(str(exc)) from exc


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database (readiness probes); raises when it is unreachable."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _open(url: str) -> AsyncEngine:
    parsed = make_url(async_url(url))
    if parsed.drivername.startswith("sqlite") and parsed.database:
        await asyncio.to_thread(Path(parsed.database).parent.mkdir, parents=True, exist_ok=True)
    # A ping before each checkout finds PostgreSQL connections dropped by a restart or a
    # proxy; a SQLite file cannot drop them, and the ping cost a few ms per request.
    sqlite_file = parsed.drivername.startswith("sqlite")
    engine = create_async_engine(parsed, pool_pre_ping=not sqlite_file)
    if sqlite_file:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        await _use_wal(engine)
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
    return engine
