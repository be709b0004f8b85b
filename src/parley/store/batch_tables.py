"""What both sides of the batch store share: the states of batches and of their
requests, `BatchRecord`, and the end of a batch.

`batch_records.py` is the API's side (create, read, cancel, delete, results);
`batch_leases.py` is the worker's (claims, results, housekeeping). Both end a
batch once none of its requests is left to run, and both drop a batch whose
create never completed.

Every write is one short transaction that starts by writing, so that SQLite
never has to upgrade a read lock (which fails at once instead of waiting).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.store.schema import batch_requests as _r
from parley.store.schema import message_batches as _b
from parley.store.time import aware

CREATING = "creating"
IN_PROGRESS = "in_progress"
CANCELING = "canceling"
ENDED = "ended"
OPEN = (IN_PROGRESS, CANCELING)

PENDING = "pending"
RUNNING = "running"
UNFINISHED = (PENDING, RUNNING)
FINAL_STATES = ("succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True)
class BatchRecord:
    id: str
    key_id: str
    processing_status: str
    api_version: str
    request_count: int
    counts: dict[str, int]  # final counts by state; all zero until the batch ends
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    cancel_initiated_at: datetime | None
    archived_at: datetime | None


def _optional(value: datetime | None) -> datetime | None:
    return aware(value) if value is not None else None


def batch_record(row: Any) -> BatchRecord:
    """A `message_batches` row as a BatchRecord."""
    return BatchRecord(
        id=row.id,
        key_id=row.key_id,
        processing_status=row.processing_status,
        api_version=row.api_version,
        request_count=row.request_count,
        counts={state: int(getattr(row, state)) for state in FINAL_STATES},
        created_at=aware(row.created_at),
        expires_at=aware(row.expires_at),
        ended_at=_optional(row.ended_at),
        cancel_initiated_at=_optional(row.cancel_initiated_at),
        archived_at=_optional(row.archived_at),
    )


def _count(batch_id: str, state: str) -> Any:
    return (
        select(func.count())
        .select_from(_r)
        .where(_r.c.batch_id == batch_id, _r.c.state == state)
        .scalar_subquery()
    )


class BatchTables:
    """The batch tables of one database, with what both sides do to them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def unfinished(self, batch_id: str) -> bool:
        """Whether any request of the batch is pending or running (a read, cheaper than
        trying `finalize`, which takes SQLite's write lock)."""
        query = select(exists().where(_r.c.batch_id == batch_id, _r.c.state.in_(UNFINISHED)))
        async with self._engine.connect() as conn:
            return bool((await conn.execute(query)).scalar())

    async def finalize(self, batch_id: str, now: datetime) -> bool:
        """End the batch if none of its requests is pending or running; the final counts
        are taken in the same statement."""
        unfinished = exists().where(_r.c.batch_id == batch_id, _r.c.state.in_(UNFINISHED))
        statement = (
            update(_b)
            .where(_b.c.id == batch_id, _b.c.processing_status.in_(OPEN), ~unfinished)
            .values(
                processing_status=ENDED,
                ended_at=now,
                **{state: _count(batch_id, state) for state in FINAL_STATES},
            )
        )
        async with self._engine.begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def discard(self, batch_id: str) -> None:
        """Drop a batch and its requests: one whose create failed, or never completed."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(_r).where(_r.c.batch_id == batch_id))
            await conn.execute(delete(_b).where(_b.c.id == batch_id))
