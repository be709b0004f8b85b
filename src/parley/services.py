"""The long-lived parts of a running Parley, started and stopped together."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from parley.batches.service import BatchService
from parley.batches.worker import BatchWorker
from parley.config import Settings
from parley.core.generation import Meter
from parley.core.image_sources import ImageFetcher, ImageFetchPolicy
from parley.engines.registry import ModelRegistry
from parley.ratelimit.backends import BucketBackend, MemoryBackend, RedisBackend
from parley.ratelimit.limiter import Admission, Clock, RateLimiter
from parley.store.batch_leases import BatchLeaseStore
from parley.store.batch_records import BatchRecordStore
from parley.store.database import open_database
from parley.store.keys import ApiKey, KeyStore
from parley.store.usage import UsageRecord, UsageStore

log = logging.getLogger(__name__)

# last_used_at is written at most this often per key (seconds), not on every request.
_TOUCH_INTERVAL = 60.0


def _organization_id(settings: Settings) -> str:
    path = settings.data_dir / "organization-id"
    if path.is_file():
        return path.read_text().strip()
    value = str(uuid.uuid4())
    path.write_text(value + "\n")
    return value


@dataclass
class Services:
    settings: Settings
    registry: ModelRegistry
    clock: Clock = time.time
    organization_id: str = ""
    database: AsyncEngine | None = None
    keys: KeyStore | None = None
    usage: UsageStore | None = None
    limiter: RateLimiter | None = None
    batches: BatchService | None = None
    batch_worker: BatchWorker | None = None
    _buckets: BucketBackend | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _touched: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = time.time) -> Services:
        return cls(settings=settings, registry=ModelRegistry.from_settings(settings), clock=clock)

    async def start(self) -> None:
        await asyncio.to_thread(self.settings.data_dir.mkdir, parents=True, exist_ok=True)
        self.organization_id = await asyncio.to_thread(_organization_id, self.settings)
        self.database = await open_database(self.settings.database)
        self.keys = KeyStore(self.database)
        self.usage = UsageStore(self.database)
        self._buckets = (
            RedisBackend(self.settings.redis_url, self.settings.redis_prefix)
            if self.settings.redis_url
            else MemoryBackend()
        )
        self.limiter = RateLimiter(
            self._buckets, self.settings, self.usage.tokens_since, self.clock
        )
        await self.registry.start()
        self.batch_worker = BatchWorker(self, BatchLeaseStore(self.database))
        self.batches = BatchService(
            BatchRecordStore(self.database),
            self.clock,
            max_body_bytes=self.settings.max_batch_body_bytes,
            max_requests=self.settings.max_batch_requests,
            spawn=self.spawn,
            on_change=self.batch_worker.wake,
        )
        if self.settings.batch_worker:
            self.batch_worker.start()

    async def aclose(self) -> None:
        if self.batch_worker is not None:
            await self.batch_worker.aclose()
            self.batch_worker = None
        await self.drain()
        await self.registry.aclose()
        if self._buckets is not None:
            await self._buckets.aclose()
        if self.database is not None:
            await self.database.dispose()
            self.database = None

    async def drain(self) -> None:
        """Wait for background writes (usage, settlements) to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, tracked so that shutdown waits for it. Used from
        `finally` blocks of cancelled requests, where awaiting is not safe."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background write failed: %r", task.exception())

    def note_key_use(self, key: ApiKey) -> None:
        now = self.clock()
        if now - self._touched.get(key.id, float("-inf")) < _TOUCH_INTERVAL:
            return
        self._touched[key.id] = now
        self.spawn(self.key_store.touch(key.id, datetime.fromtimestamp(now, UTC)))

    def finish_message(self, key: ApiKey, model: str, admission: Admission, meter: Meter) -> None:
        """Settle the output reservation and record usage for a message that reached
        the engine, however it ended (completed, failed or cut off)."""
        record = UsageRecord(
            key_id=key.id,
            model=model,
            at=datetime.fromtimestamp(self.clock(), UTC),
            input_tokens=meter.input_tokens,
            output_tokens=meter.output_tokens,
        )
        self.spawn(self._finish(admission, meter.output_tokens, record))

    async def _finish(self, admission: Admission, output_tokens: int, record: UsageRecord) -> None:
        try:
            await self.rate_limiter.settle(admission, output_tokens)
        finally:
            await self.usage_store.add(record)

    @functools.cached_property
    def image_fetcher(self) -> ImageFetcher:
        """Fetches URL image sources under the configured policy (off by default)."""
        settings = self.settings
        return ImageFetcher(
            ImageFetchPolicy(
                enabled=settings.image_url_fetch,
                allowed_hosts=tuple(settings.image_url_hosts),
                max_bytes=settings.image_url_max_bytes,
                timeout=settings.image_url_timeout,
            )
        )

    @property
    def key_store(self) -> KeyStore:
        return _started(self.keys)

    @property
    def usage_store(self) -> UsageStore:
        return _started(self.usage)

    @property
    def rate_limiter(self) -> RateLimiter:
        return _started(self.limiter)

    @property
    def batch_service(self) -> BatchService:
        return _started(self.batches)


T = TypeVar("T")


def _started(value: T | None) -> T:
    if value is None:
        raise RuntimeError("services not started")
    return value
