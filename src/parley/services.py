"""The running parts of a Parley process, built and wired in one place.

`start_services()` opens the store, the rate-limit buckets and the engines,
builds the message pipeline and the batch service and worker on them, and hands
back a `Services` in which everything is running; `aclose()` stops it all in
reverse order. Each part receives only what it uses.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass

from parley.batches.service import BatchService
from parley.batches.worker import BatchWorker, WorkerSettings
from parley.config import Settings
from parley.core.lifecycle import Lifecycle
from parley.engines.registry import ModelRegistry
from parley.pipeline.background import BackgroundWork
from parley.pipeline.image_urls import ImageFetcher, ImageFetchPolicy
from parley.pipeline.keyring import Keyring
from parley.pipeline.messages import MessagePipeline
from parley.ratelimit.backends import BucketBackend, MemoryBackend, RedisBackend
from parley.ratelimit.limiter import Clock, RateLimiter
from parley.store.batch_leases import BatchLeaseStore
from parley.store.batch_records import BatchRecordStore
from parley.store.database import Database, open_database
from parley.store.keys import KeyStore
from parley.store.usage import UsageStore
from parley.store.usage_recorder import UsageRecorder


@dataclass(frozen=True)
class Services:
    settings: Settings
    clock: Clock
    organization_id: str
    database: Database
    keys: Keyring
    usage: UsageRecorder
    limiter: RateLimiter
    registry: ModelRegistry
    pipeline: MessagePipeline
    batches: BatchService
    batch_worker: BatchWorker
    background: BackgroundWork
    lifecycle: Lifecycle
    _stack: AsyncExitStack

    @property
    def draining(self) -> bool:
        """True once a drain has begun (SIGTERM): readiness probes should fail."""
        return self.lifecycle.draining

    async def drain(self) -> None:
        """Finish background writes (settlements, key use) and write held usage."""
        await self.background.drain()
        await self.usage.flush()

    async def aclose(self) -> None:
        await self._stack.aclose()


async def start_services(settings: Settings, *, clock: Clock = time.time) -> Services:
    async with AsyncExitStack() as stack:
        await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
        organization_id = await asyncio.to_thread(_organization_id, settings)
        # Closed in reverse: the worker and the engines stop first, then background
        # writes finish and held usage is written, then the buckets and the store go.
        database = await open_database(
            settings.database,
            connect_timeout=settings.database_connect_timeout,
            statement_timeout=settings.database_timeout,
        )
        stack.push_async_callback(database.dispose)
        buckets: BucketBackend = (
            RedisBackend(settings.redis_url, settings.redis_prefix, timeout=settings.redis_timeout)
            if settings.redis_url
            else MemoryBackend()
        )
        stack.push_async_callback(buckets.aclose)
        usage = UsageRecorder(UsageStore(database), settings.usage_flush_interval)
        usage.start()
        stack.push_async_callback(usage.aclose)
        background = BackgroundWork()
        stack.push_async_callback(background.drain)
        limiter = RateLimiter(buckets, settings, usage.tokens_since, clock)
        registry = ModelRegistry.from_settings(settings)
        stack.push_async_callback(registry.aclose)
        await registry.start()
        keys = Keyring(KeyStore(database), clock, background.spawn)
        pipeline = MessagePipeline(
            registry,
            limiter,
            usage,
            images=_image_fetcher(settings),
            clock=clock,
            spawn=background.spawn,
        )
        worker = BatchWorker(
            BatchLeaseStore(database),
            pipeline,
            keys.get,
            WorkerSettings(
                concurrency=settings.batch_concurrency,
                lease_seconds=settings.batch_lease_seconds,
                poll_interval=settings.batch_poll_interval,
            ),
            clock,
        )
        batches = BatchService(
            BatchRecordStore(database),
            clock,
            max_body_bytes=settings.max_batch_body_bytes,
            max_requests=settings.max_batch_requests,
            spawn=background.spawn,
            on_change=worker.wake,
        )
        if settings.batch_worker:
            worker.start()
            stack.push_async_callback(worker.aclose)
        services = Services(
            settings=settings,
            clock=clock,
            organization_id=organization_id,
            database=database,
            keys=keys,
            usage=usage,
            limiter=limiter,
            registry=registry,
            pipeline=pipeline,
            batches=batches,
            batch_worker=worker,
            background=background,
            lifecycle=Lifecycle(),
            _stack=stack.pop_all(),
        )
    return services


def _organization_id(settings: Settings) -> str:
    path = settings.data_dir / "organization-id"
    if path.is_file():
        return path.read_text().strip()
    value = str(uuid.uuid4())
    path.write_text(value + "\n")
    return value


def _image_fetcher(settings: Settings) -> ImageFetcher | None:
    """URL image sources are fetched only when the configuration allows it."""
    if not settings.image_url_fetch:
        return None
    return ImageFetcher(
        ImageFetchPolicy(
            enabled=True,
            allowed_hosts=tuple(settings.image_url_hosts),
            max_bytes=settings.image_url_max_bytes,
            timeout=settings.image_url_timeout,
        )
    )
