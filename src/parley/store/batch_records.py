"""Message Batches as the API sees them: a create written in chunks, reads, pages,
results, progress, cancel and delete (what batches/service.py uses)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from parley.store.batch_tables import (
    CANCELING,
    CREATING,
    ENDED,
    FINAL_STATES,
    IN_PROGRESS,
    PENDING,
    BatchRecord,
    BatchTables,
    batch_record,
)
from parley.store.schema import batch_requests as _r
from parley.store.schema import message_batches as _b


@dataclass(frozen=True)
class NewRequest:
    position: int
    custom_id: str
    params: str  # JSON text of the request's params


@dataclass(frozen=True)
class ResultRow:
    position: int
    custom_id: str
    state: str
    result: str | None


@dataclass(frozen=True)
class BatchProgress:
    """Batches by processing status, and the requests of batches still open by state."""

    batches: dict[str, int]
    requests: dict[str, int]


class DuplicateCustomId(Exception):
    """A custom_id that the batch already holds."""


class BatchRecordStore(BatchTables):
    # -- creating ---------------------------------------------------------------------

    async def begin(
        self,
        batch_id: str,
        key_id: str,
        api_version: str,
        created_at: datetime,
        expires_at: datetime,
    ) -> None:
        """A batch whose requests are still arriving: invisible until `activate`."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(_b).values(
                    id=batch_id,
                    key_id=key_id,
                    processing_status=CREATING,
                    api_version=api_version,
                    request_count=0,
                    succeeded=0,
                    errored=0,
                    canceled=0,
                    expired=0,
                    created_at=created_at,
                    expires_at=expires_at,
                )
            )

    async def add_requests(self, batch_id: str, requests: Sequence[NewRequest]) -> None:
        rows = [
            {
                "batch_id": batch_id,
                "position": r.position,
                "custom_id": r.custom_id,
                "params": r.params,
                "state": PENDING,
            }
            for r in requests
        ]
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(_r), rows)
        except IntegrityError:
            raise DuplicateCustomId() from None

    async def existing_custom_ids(self, batch_id: str, custom_ids: Sequence[str]) -> set[str]:
        query = select(_r.c.custom_id).where(
            _r.c.batch_id == batch_id, _r.c.custom_id.in_(custom_ids)
        )
        async with self._engine.connect() as conn:
            return set((await conn.execute(query)).scalars())

    async def activate(self, batch_id: str, request_count: int) -> BatchRecord:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_b)
                .where(_b.c.id == batch_id, _b.c.processing_status == CREATING)
                .values(processing_status=IN_PROGRESS, request_count=request_count)
            )
            row = (await conn.execute(select(_b).where(_b.c.id == batch_id))).one()
        return batch_record(row)

    # -- reading ----------------------------------------------------------------------

    async def get(self, batch_id: str) -> BatchRecord | None:
        query = select(_b).where(_b.c.id == batch_id, _b.c.processing_status != CREATING)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return batch_record(row) if row is not None else None

    async def page(
        self,
        key_id: str,
        *,
        limit: int,
        after: BatchRecord | None = None,
        before: BatchRecord | None = None,
    ) -> tuple[list[BatchRecord], bool]:
        """One page of a key's batches, newest first, and whether more lie beyond it
        (after `after`, or before `before`)."""
        order = tuple_(_b.c.created_at, _b.c.id)
        query = select(_b).where(_b.c.key_id == key_id, _b.c.processing_status != CREATING)
        if before is not None:
            query = query.where(order > tuple_(before.created_at, before.id))
            query = query.order_by(_b.c.created_at, _b.c.id)
        else:
            if after is not None:
                query = query.where(order < tuple_(after.created_at, after.id))
            query = query.order_by(_b.c.created_at.desc(), _b.c.id.desc())
        async with self._engine.connect() as conn:
            rows = [batch_record(r) for r in await conn.execute(query.limit(limit + 1))]
        has_more = len(rows) > limit
        rows = rows[:limit]
        if before is not None:
            rows.reverse()
        return rows, has_more

    async def results(self, batch_id: str, *, after: int, limit: int) -> list[ResultRow]:
        query = (
            select(_r.c.position, _r.c.custom_id, _r.c.state, _r.c.result)
            .where(_r.c.batch_id == batch_id, _r.c.position > after)
            .order_by(_r.c.position)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [ResultRow(*row) for row in await conn.execute(query)]

    async def finished_count(self, batch_id: str) -> int:
        query = (
            select(func.count())
            .select_from(_r)
            .where(_r.c.batch_id == batch_id, _r.c.state.in_(FINAL_STATES))
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def state_counts(self, batch_id: str) -> dict[str, int]:
        """Requests per state, for tests and operators."""
        query = (
            select(_r.c.state, func.count()).where(_r.c.batch_id == batch_id).group_by(_r.c.state)
        )
        async with self._engine.connect() as conn:
            return {state: int(n) for state, n in await conn.execute(query)}

    async def progress(self) -> BatchProgress:
        """For metrics: two grouped counts over the status and (batch_id, state) indexes;
        ended batches' requests are not counted again."""
        batches = (
            select(_b.c.processing_status, func.count())
            .where(_b.c.processing_status != CREATING)
            .group_by(_b.c.processing_status)
        )
        requests = (
            select(_r.c.state, func.count())
            .select_from(_r.join(_b, _b.c.id == _r.c.batch_id))
            .where(_b.c.processing_status.in_((IN_PROGRESS, CANCELING)))
            .group_by(_r.c.state)
        )
        async with self._engine.connect() as conn:
            by_status = {status: int(n) for status, n in await conn.execute(batches)}
            by_state = {state: int(n) for state, n in await conn.execute(requests)}
        return BatchProgress(by_status, by_state)

    # -- changing ---------------------------------------------------------------------

    async def cancel(self, batch_id: str, now: datetime) -> None:
        """in_progress -> canceling; requests nobody has started are canceled at once.
        Running ones finish (api-spec §11: "non-interruptible requests may still finish")."""
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                update(_b)
                .where(_b.c.id == batch_id, _b.c.processing_status == IN_PROGRESS)
                .values(processing_status=CANCELING, cancel_initiated_at=now)
            )
            if changed.rowcount:
                await conn.execute(
                    update(_r)
                    .where(_r.c.batch_id == batch_id, _r.c.state == PENDING)
                    .values(state="canceled")
                )

    async def delete_ended(self, batch_id: str) -> bool:
        async with self._engine.begin() as conn:
            gone = await conn.execute(
                delete(_b).where(_b.c.id == batch_id, _b.c.processing_status == ENDED)
            )
            if not gone.rowcount:
                return False
            await conn.execute(delete(_r).where(_r.c.batch_id == batch_id))
        return True
