"""The Files API's operations (api-spec §17; api-version §19.12), for one key at a time,
and the reading of `file_id` sources for messages.

A file belongs to the key that uploaded it; to any other key it does not exist (404,
the same wording as an id nobody created). An upload streams into storage as it
arrives: the size limit and the key's storage quota are checked on every chunk, and
the file appears only once all of its bytes are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from parley.core.documents import MAX_PDF_BYTES
from parley.core.file_sources import StoredFile
from parley.core.files import (
    ListQuery,
    clean_filename,
    expired,
    file_missing,
    media_type,
    not_downloadable,
    not_found,
    quota_exceeded,
)
from parley.core.ids import file_id as new_file_id
from parley.errors import TOO_LARGE, InvalidRequestError, NotFoundError, RequestTooLargeError
from parley.ratelimit.limiter import Clock
from parley.store.file_blobs import BlobStore, BlobWriter
from parley.store.files import FileRecord, FileRecordStore

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], None]
# Bytes looked at to tell what a file is (PDF and image signatures, UTF-8 text).
_HEAD_BYTES = 8192
# An upload not finished within this long is taken for dead, and its bytes removed.
STALE_UPLOAD = timedelta(days=1)


@dataclass(frozen=True)
class FileLimits:
    max_bytes: int
    quota_bytes: int
    # The most a message reads from one file (the API's request limit, 32 MB): a file
    # larger than any request could have carried is refused before it is read.
    max_read_bytes: int = MAX_PDF_BYTES


class Upload:
    """One upload in progress: `write` its bytes as they arrive, then `finish` (the file
    appears) or `abort` (nothing of it stays)."""

    def __init__(
        self, service: FileService, key_id: str, file_id: str, writer: BlobWriter, used: int
    ) -> None:
        self._service = service
        self._key_id = key_id
        self.file_id = file_id
        self._writer = writer
        self._used = used
        self._head = b""
        self.size = 0
        self._done = False

    async def write(self, data: bytes) -> None:
        limits = self._service.limits
        self.size += len(data)
        if self.size > limits.max_bytes:
            raise RequestTooLargeError(TOO_LARGE)
        if self._used + self.size > limits.quota_bytes:
            raise quota_exceeded(self._used, self.size, limits.quota_bytes)
        if len(self._head) < _HEAD_BYTES:
            self._head += data[: _HEAD_BYTES - len(self._head)]
        await self._writer.write(data)

    async def finish(
        self, filename: str | None, declared_type: str | None, expires_in: int | None
    ) -> FileRecord:
        mime_type = media_type(self._head, declared_type, filename)
        name = clean_filename(filename, mime_type)
        await self._writer.commit()
        service = self._service
        now = service.now()
        # Uploads of one key that ran side by side each passed the quota alone.
        used = await service.records.used_bytes(self._key_id, now)
        if used + self.size > service.limits.quota_bytes:
            raise quota_exceeded(used, self.size, service.limits.quota_bytes)
        record = FileRecord(
            id=self.file_id,
            key_id=self._key_id,
            filename=name,
            mime_type=mime_type,
            size_bytes=self.size,
            storage=service.blobs.name,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in) if expires_in is not None else None,
        )
        await service.records.finish_upload(record)
        self._done = True
        return record

    def abort(self) -> None:
        """Remove what was stored. Spawned: it may run in a cancelled request's
        cleanup, where awaiting is not safe."""
        if not self._done:
            self._done = True
            self._service.spawn(self._service.discard(self.file_id, self._writer))


class FileService:
    def __init__(
        self,
        records: FileRecordStore,
        blobs: BlobStore,
        limits: FileLimits,
        clock: Clock,
        *,
        spawn: Spawn,
        stores: dict[str, BlobStore] | None = None,
        sweep_interval: float = 600.0,
    ) -> None:
        self.records = records
        self.blobs = blobs
        self.limits = limits
        self._clock = clock
        self.spawn = spawn
        # Every store a file may be in (the setting may have changed since it was stored).
        self._stores = stores or {blobs.name: blobs}
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # --- the API ------------------------------------------------------------------

    async def upload(self, key_id: str, declared_size: int | None) -> Upload:
        """Start an upload (`declared_size`: the body's Content-Length, framing
        included, which the edge has already held to the size limit)."""
        used = await self.records.used_bytes(key_id, self.now())
        # A key already at its quota is refused before a byte is read; otherwise `write`
        # checks the file's own size (the body also holds the multipart framing).
        if used >= self.limits.quota_bytes and (declared_size or 0) > 0:
            raise quota_exceeded(used, declared_size or 0, self.limits.quota_bytes)
        upload_id = new_file_id()
        await self.records.begin_upload(upload_id, self.blobs.name, self.now())
        writer = await self.blobs.writer(upload_id)
        return Upload(self, key_id, upload_id, writer, used)

    async def discard(self, file_id: str, writer: BlobWriter) -> None:
        await writer.abort()
        # Refused after its bytes were committed (the quota, checked again at the end):
        # they are under the file's own name by then.
        await self.blobs.delete(file_id)
        await self.records.end_upload(file_id)

    async def get(self, key_id: str, file_id: str) -> FileRecord:
        record = await self.records.get(file_id)
        if record is None or record.key_id != key_id:
            raise not_found(file_id)
        return record

    async def page(self, key_id: str, query: ListQuery) -> tuple[list[FileRecord], bool]:
        if query.ids is not None:
            return await self.records.with_ids(key_id, query.ids), False
        after = await self._cursor(key_id, query.after_id, "after_id")
        before = await self._cursor(key_id, query.before_id, "before_id")
        return await self.records.page(key_id, limit=query.limit, after=after, before=before)

    async def _cursor(self, key_id: str, cursor: str | None, name: str) -> FileRecord | None:
        if cursor is None:
            return None
        record = await self.records.get(cursor)
        if record is None or record.key_id != key_id:
            raise NotFoundError(f"{name}: {cursor} not found")
        return record

    async def delete(self, key_id: str, file_id: str) -> None:
        record = await self.get(key_id, file_id)
        if await self.records.delete(file_id):
            await self._store(record).delete(file_id)

    async def download(self, key_id: str, file_id: str) -> NoReturn:
        """Every file here was uploaded, and uploaded files cannot be downloaded."""
        record = await self.get(key_id, file_id)
        if self._expired(record):
            raise expired(file_id)
        raise not_downloadable(file_id)

    # --- file sources in messages -----------------------------------------------------

    def reader(self, key_id: str) -> KeyFiles:
        return KeyFiles(self, key_id)

    async def read(self, key_id: str, file_id: str, path: str) -> StoredFile:
        record = await self.records.get(file_id)
        if record is None or record.key_id != key_id:
            raise file_missing(file_id, path)
        if self._expired(record):
            raise InvalidRequestError(f"{path}: File {file_id} has expired")
        if record.size_bytes > self.limits.max_read_bytes:
            # The Files guide: a file larger than a request may hold is a 400.
            raise InvalidRequestError(
                f"{path}: File {file_id} is {record.size_bytes} bytes, more than the "
                f"{self.limits.max_read_bytes} bytes a message can read"
            )
        chunks = [c async for c in self._store(record).read(file_id)]
        return StoredFile(record.id, record.mime_type, b"".join(chunks))

    # --- upkeep -------------------------------------------------------------------------

    def _expired(self, record: FileRecord) -> bool:
        return record.expires_at is not None and record.expires_at <= self.now()

    def _store(self, record: FileRecord) -> BlobStore:
        return self._stores.get(record.storage, self.blobs)

    async def sweep(self) -> None:
        """Remove the bytes of uploads that died, and of files that expired."""
        for upload_id, storage in await self.records.stale_uploads(self.now() - STALE_UPLOAD):
            await self._stores.get(storage, self.blobs).delete(upload_id)
            await self.records.end_upload(upload_id)
        for record in await self.records.expired(self.now()):
            if await self.records.delete(record.id):
                await self._store(record).delete(record.id)

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the next round tries again
                log.exception("file sweep failed")
            await asyncio.sleep(self._sweep_interval)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper


@dataclass(frozen=True)
class KeyFiles:
    """One key's files, as `core.conversation` reads `file_id` sources (`FileRead`)."""

    service: FileService
    key_id: str

    async def read(self, file_id: str, path: str) -> StoredFile:
        return await self.service.read(self.key_id, file_id, path)
