"""Whether the API keys may have changed since a moment: what lets a process keep
keys in memory and still refuse a revoked key at once, whichever process revoked it.

`stamp()` is cheap (no database round trip) and changes whenever a key may have
changed; a value read under an older stamp is stale.

- SQLite: every process shares one database file, and beside it a marker file
  that every key change grows by a byte once it has committed (store/keys.py); a
  stat of the marker is the stamp. Other writes (usage, batches, which commit every
  second) leave it alone, so they do not send every process back to the store.
- PostgreSQL: every write to `api_keys` sends a NOTIFY in its own transaction
  (store/keys.py), and each process LISTENs on one connection of its own. While that
  connection is down nothing can be trusted: the stamp changes on every call, so
  every lookup reads the store, until the connection is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from parley.store.database import Database

log = logging.getLogger(__name__)

CHANNEL = "parley_api_keys"
_RECONNECT_DELAY = 1.0
_PING_INTERVAL = 5.0
_PING_TIMEOUT = 2.0


class KeyChanges:
    """The in-process part every kind shares: changes made here are seen at once."""

    def __init__(self) -> None:
        self._local = 0

    def bump(self) -> None:
        """A key was changed through this process."""
        self._local += 1

    def stamp(self) -> Any:
        return self._local

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class FileKeyChanges(KeyChanges):
    def __init__(self, marker: Path) -> None:
        super().__init__()
        self._marker = str(marker)

    def stamp(self) -> Any:
        try:
            info = os.stat(self._marker)
        except FileNotFoundError:
            return (self._local, 0, 0)
        return (self._local, info.st_size, info.st_mtime_ns)


def _marker(url: URL) -> Path | None:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(f"{url.database}-keys")
    return None


def mark_changed(url: URL) -> None:
    """Tell every process on this SQLite database that a key changed (PostgreSQL is
    told by NOTIFY): the marker grows by a byte, so its size never repeats."""
    marker = _marker(url)
    if marker is not None:
        with open(marker, "ab") as out:
            out.write(b".")


class NotifyKeyChanges(KeyChanges):
    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._heard = 0
        self._listening = False
        self._blind = itertools.count()  # stamps while nothing can be trusted
        self._task: asyncio.Task[None] | None = None

    def stamp(self) -> Any:
        if not self._listening:
            return ("blind", next(self._blind))
        return (self._local, self._heard)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="key-changes")

    async def _listen(self) -> None:
        while True:
            try:
                connection = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot listen for API key changes (%s); reading keys each time", exc)
                await asyncio.sleep(_RECONNECT_DELAY)
                continue
            lost = asyncio.Event()
            try:
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                await connection.add_listener(CHANNEL, self._heard_change)
                self._heard += 1  # whatever changed while we were not listening
                self._listening = True
                await _until_lost(connection, lost)
                log.warning("lost the connection that listens for API key changes")
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)

    def _heard_change(self, *_: object) -> None:
        self._heard += 1

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def _until_lost(connection: asyncpg.Connection, lost: asyncio.Event) -> None:
    """Return when the connection is gone. A connection that went silent (a peer that
    vanished without closing it) is found by a ping: notifications cannot be missed
    for longer than the ping interval plus its timeout."""
    while not lost.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lost.wait(), _PING_INTERVAL)
            return
        try:
            await connection.execute("SELECT 1", timeout=_PING_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return


def key_changes(database: Database) -> KeyChanges:
    url = database.url
    if url.get_backend_name() == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return NotifyKeyChanges(dsn)
    marker = _marker(url)
    if marker is not None:
        return FileKeyChanges(marker)
    return KeyChanges()
