"""Which key a request presents: the active key with that secret, and its use noted."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from parley.core.records import ApiKey
from parley.ratelimit.limiter import Clock
from parley.store.keys import KeyNotFound, KeyStore

# last_used_at is written at most this often per key (seconds), not on every request.
TOUCH_INTERVAL = 60.0

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Keyring:
    def __init__(self, store: KeyStore, clock: Clock, spawn: Spawn) -> None:
        self.store = store
        self._clock = clock
        self._spawn = spawn
        self._touched: dict[str, float] = {}

    async def find(self, secret: str) -> ApiKey | None:
        """The active key with this secret. Read from the store on every request, so a
        key revoked through any replica is refused at once everywhere."""
        key = await self.store.find_active(secret)
        if key is not None:
            self._note_use(key)
        return key

    async def get(self, key_id: str) -> ApiKey | None:
        """A key by id, whatever its status (batch work of a revoked key still runs)."""
        try:
            return await self.store.get(key_id)
        except KeyNotFound:
            return None

    def _note_use(self, key: ApiKey) -> None:
        now = self._clock()
        if now - self._touched.get(key.id, float("-inf")) < TOUCH_INTERVAL:
            return
        self._touched[key.id] = now
        self._spawn(self.store.touch(key.id, datetime.fromtimestamp(now, UTC)))
