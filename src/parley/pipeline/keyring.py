"""Which key a request presents: the active key with that secret, and its use noted.

Keys are kept in memory, so a request costs no database round trip, and a change
to any key still applies at once: an entry is used only while the store's change
stamp (store/key_changes.py) is the one it was read under, and any write to the
keys, by any process, changes that stamp. Entries also expire after `MAX_AGE`, a
bound on staleness should a change ever go unnoticed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from parley.core.records import ApiKey
from parley.ratelimit.limiter import Clock
from parley.store.key_changes import KeyChanges
from parley.store.keys import CreatedKey, KeyNotFound, KeyStatus, KeyStore, hash_secret

# last_used_at is written at most this often per key (seconds), not on every request.
TOUCH_INTERVAL = 60.0
# Seconds a key read from the store is used without reading it again.
MAX_AGE = 60.0
# Distinct secrets kept; beyond it the cache starts afresh (a flood of valid keys).
MAX_ENTRIES = 100_000

Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(frozen=True)
class _Entry:
    key: ApiKey
    stamp: Any
    read_at: float


class Keyring:
    def __init__(self, store: KeyStore, changes: KeyChanges, clock: Clock, spawn: Spawn) -> None:
        self.store = store
        self._changes = changes
        self._clock = clock
        self._spawn = spawn
        self._entries: dict[str, _Entry] = {}
        self._touched: dict[str, float] = {}

    async def find(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        digest = hash_secret(secret)
        stamp = self._changes.stamp()
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry.stamp == stamp and now - entry.read_at < MAX_AGE:
            key: ApiKey | None = entry.key
        else:
            # Read under the stamp taken before the read: a change committed meanwhile
            # makes this entry stale at once.
            key = await self.store.find_active_digest(digest)
            if key is None:
                self._entries.pop(digest, None)
            else:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[digest] = _Entry(key, stamp, now)
        if key is not None:
            self._note_use(key)
        return key

    async def get(self, key_id: str) -> ApiKey | None:
        """A key by id, whatever its status (batch work of a revoked key still runs)."""
        try:
            return await self.store.get(key_id)
        except KeyNotFound:
            return None

    async def create(self, name: str, **options: Any) -> CreatedKey:
        created = await self.store.create(name, **options)
        self._changes.bump()
        return created

    async def update(
        self,
        key_id: str,
        *,
        name: str | None = None,
        status: KeyStatus | None = None,
        browser_access: bool | None = None,
    ) -> ApiKey:
        try:
            return await self.store.update(
                key_id, name=name, status=status, browser_access=browser_access
            )
        finally:
            self._changes.bump()

    def _note_use(self, key: ApiKey) -> None:
        now = self._clock()
        if now - self._touched.get(key.id, float("-inf")) < TOUCH_INTERVAL:
            return
        self._touched[key.id] = now
        self._spawn(self.store.touch(key.id, datetime.fromtimestamp(now, UTC)))
