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
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from parley.core.outages import Outage

# What the stores are built on; named so that their callers need not import SQLAlchemy.
Database = AsyncEngine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; replicas starting at once take turns to migrate.
_MIGRATION_LOCK = 7_242_033_901

# Logs the database's outages, one line each way (a connection checked out means the
# database answered its pre-ping: it is back).
OUTAGE = Outage("the database")


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says that the database could not be reached or did not answer in
    time (refused, reset, timed out, pool exhausted), rather than a bug or bad data."""
    if isinstance(exc, OSError | PoolTimeout | OperationalError | InterfaceError):
        # OSError covers refused and reset connections and asyncpg's timeouts.
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


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


def _checked_out(*_: Any) -> None:
    OUTAGE.recovered()


class DatabaseUnavailable(Exception):
    """The database could not be opened. The message names the server's complaint,
    never the URL, which may hold a password."""


async def open_database(
    url: str, *, connect_timeout: float = 5.0, statement_timeout: float = 10.0
) -> AsyncEngine:
    """`connect_timeout`: seconds to open a connection to a database server;
    `statement_timeout`: seconds to wait for a pooled connection, and for any one
    statement."""
    try:
        return await _open(url, connect_timeout, statement_timeout)
    except (OSError, SQLAlchemyError) as exc:
        raise DatabaseUnavailable(str(exc)) from exc


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database (readiness probes); raises when it is unreachable."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _open(url: str, connect_timeout: float, statement_timeout: float) -> AsyncEngine:
    parsed = make_url(async_url(url))
    if parsed.drivername.startswith("sqlite") and parsed.database:
        await asyncio.to_thread(Path(parsed.database).parent.mkdir, parents=True, exist_ok=True)
    # A ping before each checkout finds PostgreSQL connections dropped by a restart or a
    # proxy; a SQLite file cannot drop them, and the ping cost a few ms per request.
    sqlite_file = parsed.drivername.startswith("sqlite")
    options: dict[str, Any] = {}
    if parsed.drivername.endswith("asyncpg"):
        # Without these a black-holed server holds every request for minutes.
        options["connect_args"] = {
            "timeout": connect_timeout,
            "command_timeout": statement_timeout,
        }
        options["pool_timeout"] = statement_timeout
    engine = create_async_engine(parsed, pool_pre_ping=not sqlite_file, **options)
    event.listen(engine.sync_engine, "checkout", _checked_out)
    if sqlite_file:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        await _use_wal(engine)
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
    return engine
