"""Files API metadata (api-spec §17): uploads in progress, stored files, pages of a
key's files, its storage in use, and what is left to clean up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, tuple_

from parley.store.database import Database
from parley.store.schema import file_uploads as _u
from parley.store.schema import files as _f
from parley.store.time import aware


@dataclass(frozen=True)
class FileRecord:
    id: str
    key_id: str
    filename: str
    mime_type: str
    size_bytes: int
    storage: str  # where the bytes are: "directory" or "database"
    created_at: datetime
    expires_at: datetime | None = None


def _record(row: Any) -> FileRecord:
    return FileRecord(
        id=row.id,
        key_id=row.key_id,
        filename=row.filename,
        mime_type=row.mime_type,
        size_bytes=int(row.size_bytes),
        storage=row.storage,
        created_at=aware(row.created_at),
        expires_at=aware(row.expires_at) if row.expires_at is not None else None,
    )


class FileRecordStore:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def begin_upload(self, file_id: str, storage: str, started_at: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(_u).values(id=file_id, storage=storage, started_at=started_at)
            )

    async def finish_upload(self, record: FileRecord) -> None:
        """The file appears, and its upload is over, in one transaction."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(_f).values(
                    id=record.id,
                    key_id=record.key_id,
                    filename=record.filename,
                    mime_type=record.mime_type,
                    size_bytes=record.size_bytes,
                    storage=record.storage,
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                )
            )
            await conn.execute(delete(_u).where(_u.c.id == record.id))

    async def end_upload(self, file_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(_u).where(_u.c.id == file_id))

    async def stale_uploads(self, started_before: datetime) -> list[tuple[str, str]]:
        """(id, storage) of uploads begun before then and never finished."""
        query = select(_u.c.id, _u.c.storage).where(_u.c.started_at < started_before)
        async with self._engine.connect() as conn:
            return [(row.id, row.storage) for row in await conn.execute(query)]

    async def get(self, file_id: str) -> FileRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_f).where(_f.c.id == file_id))).first()
        return _record(row) if row is not None else None

    async def page(
        self,
        key_id: str,
        *,
        limit: int,
        after: FileRecord | None = None,
        before: FileRecord | None = None,
    ) -> tuple[list[FileRecord], bool]:
        """One page of a key's files, newest first, and whether more lie beyond it."""
        order = tuple_(_f.c.created_at, _f.c.id)
        query = select(_f).where(_f.c.key_id == key_id)
        if before is not None:
            query = query.where(order > tuple_(before.created_at, before.id))
            query = query.order_by(_f.c.created_at, _f.c.id)
        else:
            if after is not None:
                query = query.where(order < tuple_(after.created_at, after.id))
            query = query.order_by(_f.c.created_at.desc(), _f.c.id.desc())
        async with self._engine.connect() as conn:
            rows = [_record(r) for r in await conn.execute(query.limit(limit + 1))]
        has_more = len(rows) > limit
        rows = rows[:limit]
        if before is not None:
            rows.reverse()
        return rows, has_more

    async def with_ids(self, key_id: str, ids: Sequence[str]) -> list[FileRecord]:
        query = (
            select(_f)
            .where(_f.c.key_id == key_id, _f.c.id.in_(list(ids)))
            .order_by(_f.c.created_at.desc(), _f.c.id.desc())
        )
        async with self._engine.connect() as conn:
            return [_record(r) for r in await conn.execute(query)]

    async def delete(self, file_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(_f).where(_f.c.id == file_id))
        return bool(result.rowcount)

    async def used_bytes(self, key_id: str, now: datetime) -> int:
        """Bytes of a key's files that have not expired (expired ones are freed)."""
        query = select(func.coalesce(func.sum(_f.c.size_bytes), 0)).where(
            _f.c.key_id == key_id, or_(_f.c.expires_at.is_(None), _f.c.expires_at > now)
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def expired(self, now: datetime, *, limit: int = 100) -> list[FileRecord]:
        query = select(_f).where(_f.c.expires_at <= now).limit(limit)
        async with self._engine.connect() as conn:
            return [_record(r) for r in await conn.execute(query)]
