"""The running parts of a Parley process, built and wired in one place.

`start_services()` opens the store, the rate-limit buckets and the engines,
builds the message pipeline and the batch service and worker on them, and hands
back a `Services` in which everything is running; `aclose()` stops it all in
reverse order. Each part receives only what it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

from parley.batches.service import BatchService
from parley.batches.worker import BatchWorker, WorkerSettings
from parley.config import Settings
from parley.core.lifecycle import Lifecycle
from parley.core.thinking import ThinkingSigner
from parley.engines.registry import ModelRegistry
from parley.pipeline.background import BackgroundWork
from parley.pipeline.files import FileLimits, FileService
from parley.pipeline.image_urls import ImageFetcher, ImageFetchPolicy
from parley.pipeline.keyring import Keyring
from parley.pipeline.messages import MessagePipeline, Spawn
from parley.pipeline.threads import Threads
from parley.ratelimit.backends import BucketBackend, MemoryBackend, RedisBackend
from parley.ratelimit.limiter import Clock, RateLimiter
from parley.store.batch_leases import BatchLeaseStore
from parley.store.batch_records import BatchRecordStore
from parley.store.database import Database, open_database
from parley.store.file_blobs import BlobStore, DatabaseBlobs, DirectoryBlobs
from parley.store.files import FileRecordStore
from parley.store.key_changes import key_changes
from parley.store.keys import KeyStore
from parley.store.threads import ThreadStore
from parley.store.usage import UsageStore
from parley.store.usage_recorder import UsageRecorder
from parley.telemetry.metrics import SHARED_DIR_ENV, Metrics, PrometheusMetrics
from parley.telemetry.tracing import Tracing


@dataclass(eq=False)
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
    files: FileService
    threads: Threads
    batches: BatchService
    batch_worker: BatchWorker
    background: BackgroundWork
    metrics: Metrics
    tracing: Tracing
    lifecycle: Lifecycle
    _stack: AsyncExitStack

    @property
    def draining(self) -> bool:
        """True once a drain has begun (SIGTERM): /readyz answers 503 so that load
        balancers send new requests elsewhere."""
        return self.lifecycle.draining

    async def drain(self) -> None:
        """Finish background writes (settlements, key use) and write held usage."""
        await self.background.drain()
        await self.usage.flush()

    async def aclose(self) -> None:
        await self._stack.aclose()


async def start_services(
    settings: Settings, *, clock: Clock = time.time, tracing: Tracing | None = None
) -> Services:
    """`tracing`: spans go there instead of to `settings.otlp_endpoint` (tests)."""
    async with AsyncExitStack() as stack:
        metrics = (
            PrometheusMetrics(os.environ.get(SHARED_DIR_ENV) or None)
            if settings.metrics != "off"
            else Metrics()
        )
        if tracing is None:
            tracing = Tracing.from_endpoint(settings.otlp_endpoint)
        # Last to go: spans of the shutdown itself are exported too (off the loop: an
        # unreachable collector makes the final export wait for its timeout).
        stack.push_async_callback(asyncio.to_thread, tracing.shutdown)
        await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
        organization_id = await asyncio.to_thread(_organization_id, settings)
        signer = ThinkingSigner(await asyncio.to_thread(_thinking_key, settings))
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
        limiter = RateLimiter(
            buckets, settings, usage.tokens_since, clock, on_refusal=metrics.rate_limited
        )
        registry = ModelRegistry.from_settings(settings)
        metrics.watch(registry)
        stack.push_async_callback(registry.aclose)
        await registry.start()
        metrics.start()
        stack.push_async_callback(metrics.aclose)
        changes = key_changes(database)
        await changes.start()
        stack.push_async_callback(changes.aclose)
        keys = Keyring(KeyStore(database), changes, clock, background.spawn)
        files = _file_service(settings, database, clock, background.spawn)
        files.start()
        stack.push_async_callback(files.aclose)
        fetcher = _url_fetcher(settings)
        threads = Threads(
            ThreadStore(database), clock, timedelta(days=settings.thread_lifetime_days)
        )
        threads.start()
        stack.push_async_callback(threads.aclose)
        pipeline = MessagePipeline(
            registry,
            limiter,
            usage,
            threads,
            images=fetcher,
            documents=fetcher,
            files=files,
            clock=clock,
            spawn=background.spawn,
            metrics=metrics,
            tracing=tracing,
            signer=signer,
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
            files=files,
            threads=threads,
            batches=batches,
            batch_worker=worker,
            background=background,
            metrics=metrics,
            tracing=tracing,
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


def _thinking_key(settings: Settings) -> bytes:
    """The key that signs thinking blocks: the configured one, else a random key made
    once and kept in the data dir (readable by its owner only). Processes starting
    together agree on one: the file appears whole (a link to a finished temporary
    file) and only the first link wins."""
    if settings.thinking_key is not None:
        return settings.thinking_key.get_secret_value().encode("utf-8")
    path = settings.data_dir / "thinking-key"
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=settings.data_dir, prefix=".thinking-key-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_bytes(32).hex() + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return bytes.fromhex(path.read_text().strip())


def _url_fetcher(settings: Settings) -> ImageFetcher | None:
    """URL image and document sources are fetched only when the configuration allows it."""
    if not settings.image_url_fetch:
        return None
    return ImageFetcher(
        ImageFetchPolicy(
            enabled=True,
            allowed_hosts=tuple(settings.image_url_hosts),
            max_bytes=settings.image_url_max_bytes,
            max_document_bytes=settings.document_url_max_bytes,
            timeout=settings.image_url_timeout,
        )
    )


def _file_service(
    settings: Settings, database: Database, clock: Clock, spawn: Spawn
) -> FileService:
    stores: dict[str, BlobStore] = {
        "directory": DirectoryBlobs(settings.files_directory),
        "database": DatabaseBlobs(database),
    }
    return FileService(
        FileRecordStore(database),
        stores["database" if settings.files_in_database() else "directory"],
        FileLimits(max_bytes=settings.files_max_bytes, quota_bytes=settings.files_quota_bytes),
        clock,
        spawn=spawn,
        stores=stores,
    )
