"""Where the bytes of uploaded files live, written and read a chunk at a time so that a
100 MB file never sits in memory whole.

- `DirectoryBlobs` (the default): one file per id under the data directory, written
  under a temporary name and renamed once complete, so a crash never leaves a half
  file under a real name.
- `DatabaseBlobs` (with PostgreSQL): rows of `file_chunks`, about 1 MiB each, which
  every replica reads. A chunk table rather than PostgreSQL large objects: each chunk
  is written in a short transaction of its own (a large object must be written inside
  one transaction that stays open for the whole upload, however slowly the client
  sends), deleting a file is one DELETE (large objects need `lo_unlink`, or they stay
  behind as orphans), and the same SQL runs on SQLite for tests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import delete, insert, select

from parley.store.database import Database
from parley.store.schema import file_chunks as _c

CHUNK_BYTES = 1024 * 1024


class BlobWriter(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None:
        """All bytes are stored, under the file's id."""

    async def abort(self) -> None:
        """Remove whatever was stored."""


class BlobStore(Protocol):
    name: str

    async def writer(self, file_id: str) -> BlobWriter: ...

    def read(self, file_id: str) -> AsyncIterator[bytes]: ...

    async def delete(self, file_id: str) -> None: ...


class _FileWriter:
    def __init__(self, handle: BinaryIO, part: Path, final: Path) -> None:
        self._handle = handle
        self._part = part
        self._final = final

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._handle.write, data)

    async def commit(self) -> None:
        await asyncio.to_thread(self._commit)

    def _commit(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())  # the bytes are on disk before the row says so
        self._handle.close()
        os.replace(self._part, self._final)

    async def abort(self) -> None:
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        self._handle.close()
        self._part.unlink(missing_ok=True)


class DirectoryBlobs:
    name = "directory"

    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, file_id: str) -> Path:
        return self._root / file_id

    def _part(self, file_id: str) -> Path:
        return self._root / f".{file_id}.part"

    async def writer(self, file_id: str) -> BlobWriter:
        def open_part() -> BinaryIO:
            self._root.mkdir(parents=True, exist_ok=True)
            return open(self._part(file_id), "wb")  # closed by the writer

        handle = await asyncio.to_thread(open_part)
        return _FileWriter(handle, self._part(file_id), self._path(file_id))

    async def read(self, file_id: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._path(file_id), "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()

    async def delete(self, file_id: str) -> None:
        def unlink() -> None:
            self._path(file_id).unlink(missing_ok=True)
            self._part(file_id).unlink(missing_ok=True)

        await asyncio.to_thread(unlink)


class _ChunkWriter:
    def __init__(self, engine: Database, file_id: str) -> None:
        self._engine = engine
        self._file_id = file_id
        self._buffer = bytearray()
        self._seq = 0

    async def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= CHUNK_BYTES:
            await self._flush(bytes(self._buffer[:CHUNK_BYTES]))
            del self._buffer[:CHUNK_BYTES]

    async def _flush(self, chunk: bytes) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(_c).values(file_id=self._file_id, seq=self._seq, data=chunk))
        self._seq += 1

    async def commit(self) -> None:
        if self._buffer:
            await self._flush(bytes(self._buffer))
            self._buffer.clear()

    async def abort(self) -> None:
        self._buffer.clear()
        await _delete_chunks(self._engine, self._file_id)


async def _delete_chunks(engine: Database, file_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(_c).where(_c.c.file_id == file_id))


class DatabaseBlobs:
    name = "database"

    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def writer(self, file_id: str) -> BlobWriter:
        return _ChunkWriter(self._engine, file_id)

    async def read(self, file_id: str) -> AsyncIterator[bytes]:
        seq = -1
        while True:
            query = (
                select(_c.c.seq, _c.c.data)
                .where(_c.c.file_id == file_id, _c.c.seq > seq)
                .order_by(_c.c.seq)
                .limit(1)
            )
            async with self._engine.connect() as conn:
                row = (await conn.execute(query)).first()
            if row is None:
                return
            seq = row.seq
            yield bytes(row.data)

    async def delete(self, file_id: str) -> None:
        await _delete_chunks(self._engine, file_id)
