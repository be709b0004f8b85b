"""Usage added up in memory and written in one transaction per interval.

A request's usage is recorded without waiting for the database: it is added to
its key's (model, minute) totals here, and a background task writes what has
gathered every `interval` seconds, and once more at shutdown. A crash loses at
most one interval. A write that fails (the database is down) keeps its totals
for the next one, so nothing owed is dropped while the store is away, within a
bound: at most `max_held` (key, model, minute) totals are held (about 300 bytes
each). Past it, usage of a slot already held is still added up, and usage that
would need a new slot is dropped and counted (`dropped`, logged once per outage).
A store still down at shutdown loses what is held then (logged with the totals).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from datetime import datetime

from parley.core.calendar import minute_of
from parley.core.records import UsageRecord
from parley.store.usage import UsageStore

log = logging.getLogger(__name__)

_Slot = tuple[str, str, datetime]  # key id, model, minute


def _add(a: UsageRecord, b: UsageRecord) -> UsageRecord:
    return replace(
        a,
        requests=a.requests + b.requests,
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cache_creation_input_tokens=a.cache_creation_input_tokens + b.cache_creation_input_tokens,
        cache_read_input_tokens=a.cache_read_input_tokens + b.cache_read_input_tokens,
    )


def _tokens(record: UsageRecord) -> int:
    return (
        record.input_tokens
        + record.output_tokens
        + record.cache_creation_input_tokens
        + record.cache_read_input_tokens
    )


class UsageRecorder:
    def __init__(self, store: UsageStore, interval: float, max_held: int = 100_000) -> None:
        self.store = store
        self._interval = interval
        self._max_held = max_held
        self._pending: dict[_Slot, UsageRecord] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.dropped = 0  # requests whose usage could not be held

    @property
    def held(self) -> int:
        """(key, model, minute) totals waiting to be written."""
        return len(self._pending)

    def record(self, record: UsageRecord) -> None:
        slot = (record.key_id, record.model, minute_of(record.at))
        held = self._pending.get(slot)
        if held is None and len(self._pending) >= self._max_held:
            if not self.dropped:
                log.error("usage held for the store is at its bound (%d); dropping", self._max_held)
            self.dropped += record.requests
            return
        self._pending[slot] = _add(held, record) if held is not None else record

    async def tokens_since(self, key_id: str, since: datetime) -> int:
        """Tokens used since `since`: what is stored plus what is still held here."""
        start = minute_of(since)
        held = sum(
            _tokens(r)
            for (key, _, minute), r in self._pending.items()
            if key == key_id and minute >= start
        )
        return await self.store.tokens_since(key_id, since) + held

    async def flush(self) -> None:
        """Write what has gathered; on failure it stays held for the next flush."""
        if not self._pending:
            return
        taken, self._pending = self._pending, {}
        try:
            await self.store.add_all(taken.values())
        except BaseException:
            for record in taken.values():
                self.record(record)
            raise

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception as exc:
                if not self._failing:
                    log.error("usage could not be written (kept for later): %s", exc)
                self._failing = True
            else:
                if self._failing:
                    log.info("usage written again")
                self._failing = False

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as exc:
            requests = sum(r.requests for r in self._pending.values())
            log.error(
                "usage of %d requests could not be written at shutdown and is lost: %s",
                requests,
                exc,
            )
