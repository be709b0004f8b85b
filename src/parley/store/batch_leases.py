"""Batch requests as the worker sees them: claims with leases, results, and the
housekeeping of time rules (what batches/worker.py uses).

Work is shared between any number of workers (replicas) through claims: a
worker marks pending rows `running` with its own token and a lease, renews the
lease while it works, and writes a result only where its claim still holds.
On PostgreSQL the claim skips rows another worker is claiming at that moment
(`FOR UPDATE SKIP LOCKED`); SQLite has a single writer, so each claim is one
UPDATE statement that nothing else can interleave with. A claim whose lease
ran out (its worker died) is claimed again; a result, once written, is final.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.store.batch_tables import (
    CANCELING,
    CREATING,
    ENDED,
    IN_PROGRESS,
    OPEN,
    PENDING,
    RUNNING,
    BatchRecord,
    BatchTables,
    batch_record,
)
from parley.store.schema import batch_requests as _r
from parley.store.schema import message_batches as _b
from parley.store.time import aware


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


class BatchLeaseStore(BatchTables):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._skip_locked = engine.dialect.name == "postgresql"

    # -- claims -----------------------------------------------------------------------

    async def claimable_batches(self, now: datetime, limit: int = 16) -> list[BatchRecord]:
        """Batches with work to hand out, oldest first."""
        query = (
            select(_b)
            .where(_b.c.processing_status == IN_PROGRESS, _b.c.expires_at > now)
            .order_by(_b.c.created_at, _b.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [batch_record(row) for row in await conn.execute(query)]

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

    async def claimed_by(self, batch_id: str) -> dict[str, int]:
        """Requests per claim token (the worker that ran them), for tests and operators."""
        query = (
            select(_r.c.claim_token, func.count())
            .where(_r.c.batch_id == batch_id, _r.c.claim_token.is_not(None))
            .group_by(_r.c.claim_token)
        )
        async with self._engine.connect() as conn:
            return {token: int(n) for token, n in await conn.execute(query)}

    # -- housekeeping -----------------------------------------------------------------

    async def open_batches(self) -> list[BatchRecord]:
        query = select(_b).where(_b.c.processing_status.in_(OPEN))
        async with self._engine.connect() as conn:
            return [batch_record(row) for row in await conn.execute(query)]

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
