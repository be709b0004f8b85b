"""Message Batches and their requests: creation in chunks, claims, results, housekeeping.

Work is shared between any number of workers (replicas) through claims: a
worker marks pending rows `running` with its own token and a lease, renews the
lease while it works, and writes a result only where its claim still holds.
On PostgreSQL the claim skips rows another worker is claiming at that moment
(`FOR UPDATE SKIP LOCKED`); SQLite has a single writer, so each claim is one
UPDATE statement that nothing else can interleave with. A claim whose lease
ran out (its worker died) is claimed again; a result, once written, is final.

Every write is one short transaction that starts by writing, so that SQLite
never has to upgrade a read lock (which fails at once instead of waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.store.schema import batch_requests, message_batches
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

_b = message_batches
_r = batch_requests


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


@dataclass(frozen=True)
class NewRequest:
    position: int
    custom_id: str
    params: str  # JSON text of the request's params


@dataclass(frozen=True)
class ClaimedRequest:
    batch_id: str
    key_id: str
    api_version: str
    position: int
    custom_id: str
    params: str


@dataclass(frozen=True)
class Outcome:
    batch_id: str
    position: int
    state: str  # succeeded | errored
    result: str  # JSON text of the result object


@dataclass(frozen=True)
class ResultRow:
    position: int
    custom_id: str
    state: str
    result: str | None


class DuplicateCustomId(Exception):
    """A custom_id that the batch already holds."""


def _optional(value: datetime | None) -> datetime | None:
    return aware(value) if value is not None else None


def _record(row: Any) -> BatchRecord:
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


class BatchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._skip_locked = engine.dialect.name == "postgresql"

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
        return _record(row)

    async def discard(self, batch_id: str) -> None:
        """Drop a batch whose create failed (or that is being deleted)."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(_r).where(_r.c.batch_id == batch_id))
            await conn.execute(delete(_b).where(_b.c.id == batch_id))

    # -- reading ----------------------------------------------------------------------

    async def get(self, batch_id: str) -> BatchRecord | None:
        query = select(_b).where(_b.c.id == batch_id, _b.c.processing_status != CREATING)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _record(row) if row is not None else None

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
            rows = [_record(r) for r in await conn.execute(query.limit(limit + 1))]
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
        query = (
            select(_r.c.state, func.count()).where(_r.c.batch_id == batch_id).group_by(_r.c.state)
        )
        async with self._engine.connect() as conn:
            return {state: int(n) for state, n in await conn.execute(query)}

    async def claimed_by(self, batch_id: str) -> dict[str, int]:
        """Requests per claim token (the worker that ran them), for tests and operators."""
        query = (
            select(_r.c.claim_token, func.count())
            .where(_r.c.batch_id == batch_id, _r.c.claim_token.is_not(None))
            .group_by(_r.c.claim_token)
        )
        async with self._engine.connect() as conn:
            return {token: int(n) for token, n in await conn.execute(query)}

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

    # -- the worker -------------------------------------------------------------------

    async def claimable_batches(self, now: datetime, limit: int = 16) -> list[BatchRecord]:
        """Batches with work to hand out, oldest first."""
        query = (
            select(_b)
            .where(_b.c.processing_status == IN_PROGRESS, _b.c.expires_at > now)
            .order_by(_b.c.created_at, _b.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def claim(
        self, batch: BatchRecord, token: str, limit: int, now: datetime, lease_until: datetime
    ) -> list[ClaimedRequest]:
        """Claim up to `limit` requests of `batch`: first any whose claim lapsed (a worker
        died holding them), then pending ones in order."""

        def lapsed(t: Any) -> Any:
            return and_(t.c.state == RUNNING, t.c.lease_until < now)

        def pending(t: Any) -> Any:
            return t.c.state == PENDING

        claimed: list[ClaimedRequest] = []
        for condition in (lapsed, pending):
            if len(claimed) < limit:
                claimed += await self._claim(
                    batch, condition, token, limit - len(claimed), lease_until
                )
        return claimed

    async def _claim(
        self,
        batch: BatchRecord,
        condition: Callable[[Any], Any],
        token: str,
        limit: int,
        lease_until: datetime,
    ) -> list[ClaimedRequest]:
        candidate = _r.alias("candidate")
        picked = (
            select(candidate.c.position)
            .where(candidate.c.batch_id == batch.id, condition(candidate))
            .order_by(candidate.c.position)
            .limit(limit)
        )
        claim = (
            update(_r)
            .where(
                _r.c.batch_id == batch.id,
                # The batch may have been canceled since it was listed.
                exists().where(_b.c.id == batch.id, _b.c.processing_status == IN_PROGRESS),
            )
            .values(state=RUNNING, claim_token=token, lease_until=lease_until)
            .returning(_r.c.position, _r.c.custom_id, _r.c.params)
        )
        async with self._engine.begin() as conn:
            if self._skip_locked:
                # Two statements: PostgreSQL may run a `LIMIT ... FOR UPDATE SKIP LOCKED`
                # subquery once per outer row, claiming past the limit.
                positions = list(
                    (await conn.execute(picked.with_for_update(skip_locked=True))).scalars()
                )
                if not positions:
                    return []
                claim = claim.where(_r.c.position.in_(positions))
            else:
                # One statement, so SQLite never upgrades a read lock; it runs an
                # uncorrelated IN subquery once.
                claim = claim.where(_r.c.position.in_(picked.scalar_subquery()))
            rows = (await conn.execute(claim)).all()
        return [
            ClaimedRequest(batch.id, batch.key_id, batch.api_version, p, custom_id, params)
            for p, custom_id, params in sorted(rows)
        ]

    async def stopped_claims(self, token: str, now: datetime) -> dict[str, str]:
        """Batches in which this worker still holds requests although the batch was
        canceled or has expired meanwhile, with the state those requests end in."""
        query = (
            select(_r.c.batch_id, _b.c.processing_status, _b.c.expires_at)
            .distinct()
            .join(_b, _b.c.id == _r.c.batch_id)
            .where(
                _r.c.claim_token == token,
                _r.c.state == RUNNING,
                or_(_b.c.processing_status == CANCELING, _b.c.expires_at <= now),
            )
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            batch_id: "expired" if aware(expires_at) <= now else "canceled"
            for batch_id, _status, expires_at in rows
        }

    async def end_claims(self, token: str, batch_id: str, state: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_r)
                .where(
                    _r.c.claim_token == token,
                    _r.c.state == RUNNING,
                    _r.c.batch_id == batch_id,
                )
                .values(state=state)
            )

    async def renew(self, token: str, lease_until: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_r)
                .where(_r.c.claim_token == token, _r.c.state == RUNNING)
                .values(lease_until=lease_until)
            )

    async def release(self, token: str) -> None:
        """Hand back unfinished claims (on a clean shutdown), so they run again at once."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_r)
                .where(_r.c.claim_token == token, _r.c.state == RUNNING)
                .values(state=PENDING, claim_token=None, lease_until=None)
            )

    async def complete(self, token: str, outcomes: Sequence[Outcome]) -> int:
        """Write results where this worker's claim still holds; returns how many were
        written (a claim taken over after a lapsed lease, or a request canceled or
        expired meanwhile, keeps what it has)."""
        statement = (
            update(_r)
            .where(
                _r.c.batch_id == bindparam("b_batch_id"),
                _r.c.position == bindparam("b_position"),
                _r.c.state == RUNNING,
                _r.c.claim_token == token,
            )
            .values(state=bindparam("b_state"), result=bindparam("b_result"), lease_until=None)
        )
        rows = [
            {
                "b_batch_id": o.batch_id,
                "b_position": o.position,
                "b_state": o.state,
                "b_result": o.result,
            }
            for o in outcomes
        ]
        if not rows:
            return 0
        async with self._engine.begin() as conn:
            if self._engine.dialect.supports_sane_multi_rowcount:
                # One executemany: on SQLite each statement is a round trip to its thread.
                return (await conn.execute(statement, rows)).rowcount
            written = 0
            for row in rows:
                written += (await conn.execute(statement, row)).rowcount
            return written

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

    async def open_batches(self) -> list[BatchRecord]:
        query = select(_b).where(_b.c.processing_status.in_(OPEN))
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def settle(self, batch: BatchRecord, now: datetime) -> None:
        """Apply the time and cancel rules to requests no live worker holds: past
        `expires_at` they expire; in a canceling batch they are canceled."""
        if batch.expires_at <= now:
            state = "expired"
        elif batch.processing_status == CANCELING:
            state = "canceled"
        else:
            return
        idle = or_(_r.c.state == PENDING, and_(_r.c.state == RUNNING, _r.c.lease_until < now))
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_r).where(_r.c.batch_id == batch.id, idle).values(state=state)
            )

    async def archive(self, created_by: datetime, now: datetime) -> list[str]:
        """Delete the results of ended batches created at or before `created_by`."""
        query = select(_b.c.id).where(
            _b.c.processing_status == ENDED,
            _b.c.archived_at.is_(None),
            _b.c.created_at <= created_by,
        )
        async with self._engine.connect() as conn:
            ids = list((await conn.execute(query)).scalars())
        for batch_id in ids:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(_b)
                    .where(_b.c.id == batch_id, _b.c.archived_at.is_(None))
                    .values(archived_at=now)
                )
                await conn.execute(delete(_r).where(_r.c.batch_id == batch_id))
        return ids

    async def sweep_unfinished_creates(self, created_before: datetime) -> None:
        """Remove batches whose create never completed (the process died mid-upload)."""
        query = select(_b.c.id).where(
            _b.c.processing_status == CREATING, _b.c.created_at < created_before
        )
        async with self._engine.connect() as conn:
            ids = list((await conn.execute(query)).scalars())
        for batch_id in ids:
            await self.discard(batch_id)
