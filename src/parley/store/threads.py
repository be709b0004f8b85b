"""Message threads as kept in the store (what pipeline/threads.py uses): a thread
row, one row per turn, claims on a reply while a turn continues it, and clean-up.

Every replica sees the same rows, so a thread created through one replica is
continued through any other, and a continue in flight through one is refused
through all. A reply is claimed by one UPDATE (no other writer can interleave on
SQLite; on PostgreSQL the row lock orders concurrent claims), and a turn is kept
only while its claim still holds. Each write is one short transaction that starts
by writing, so that SQLite never upgrades a read lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from parley.core.threads import StoredTurn
from parley.store.schema import message_thread_turns as _t
from parley.store.schema import message_threads as _th
from parley.store.time import aware


@dataclass(frozen=True)
class ThreadReply:
    """A kept reply and the thread it belongs to, as a `continue` finds it."""

    message_id: str
    thread_id: str
    position: int
    key_id: str
    fingerprint: str
    system: str | None
    tools: str | None
    expires_at: datetime
    continued_by: str | None
    claim_token: str | None
    claim_until: datetime | None

    def claimed(self, now: datetime) -> bool:
        return self.claim_token is not None and (self.claim_until is None or self.claim_until > now)


@dataclass(frozen=True)
class NewThread:
    id: str
    key_id: str
    fingerprint: str
    system: str | None
    tools: str | None


class _Lost(Exception):
    """The claim a turn was to be kept under no longer holds."""


class ThreadStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self, thread: NewThread, turn: StoredTurn, now: datetime, expires_at: datetime
    ) -> None:
        """Keep a new thread and its first turn, whose reply's id is the thread's."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(_th).values(
                    id=thread.id,
                    key_id=thread.key_id,
                    fingerprint=thread.fingerprint,
                    system=thread.system,
                    tools=thread.tools,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            await conn.execute(
                insert(_t).values(
                    message_id=thread.id,
                    thread_id=thread.id,
                    position=0,
                    messages=turn.messages,
                    reply=turn.reply,
                )
            )

    async def find(self, message_id: str) -> ThreadReply | None:
        async with self._engine.connect() as conn:
            return await self._find(conn, message_id)

    async def load(self, message_id: str) -> tuple[ThreadReply, list[StoredTurn]] | None:
        """A kept reply, and its thread's turns up to and including it, in order (one
        connection, so one checkout)."""
        async with self._engine.connect() as conn:
            reply = await self._find(conn, message_id)
            if reply is None:
                return None
            query = (
                select(_t.c.messages, _t.c.reply)
                .where(_t.c.thread_id == reply.thread_id, _t.c.position <= reply.position)
                .order_by(_t.c.position)
            )
            return reply, [StoredTurn(m, r) for m, r in await conn.execute(query)]

    async def _find(self, conn: AsyncConnection, message_id: str) -> ThreadReply | None:
        query = (
            select(
                _t.c.message_id,
                _t.c.thread_id,
                _t.c.position,
                _th.c.key_id,
                _th.c.fingerprint,
                _th.c.system,
                _th.c.tools,
                _th.c.expires_at,
                _t.c.continued_by,
                _t.c.claim_token,
                _t.c.claim_until,
            )
            .join(_th, _th.c.id == _t.c.thread_id)
            .where(_t.c.message_id == message_id)
        )
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        return ThreadReply(
            message_id=row.message_id,
            thread_id=row.thread_id,
            position=row.position,
            key_id=row.key_id,
            fingerprint=row.fingerprint,
            system=row.system,
            tools=row.tools,
            expires_at=aware(row.expires_at),
            continued_by=row.continued_by,
            claim_token=row.claim_token,
            claim_until=aware(row.claim_until) if row.claim_until is not None else None,
        )

    async def claim(self, message_id: str, token: str, now: datetime, until: datetime) -> bool:
        """Claim a reply for the turn that continues it: only one that nobody has
        continued, and that no other turn holds (a claim past `claim_until` has lapsed:
        its process died)."""
        statement = (
            update(_t)
            .where(
                _t.c.message_id == message_id,
                _t.c.continued_by.is_(None),
                or_(_t.c.claim_token.is_(None), _t.c.claim_until <= now),
            )
            .values(claim_token=token, claim_until=until)
        )
        async with self._engine.begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def release(self, message_id: str, token: str) -> None:
        """Give a claim back: the turn ended without a reply to keep."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_t)
                .where(_t.c.message_id == message_id, _t.c.claim_token == token)
                .values(claim_token=None, claim_until=None)
            )

    async def append(
        self,
        reply: ThreadReply,
        token: str,
        message_id: str,
        turn: StoredTurn,
        expires_at: datetime,
    ) -> bool:
        """Keep the turn that continued `reply` under its own reply's `message_id`, if
        the claim still holds and the thread is still there; returns whether it was kept."""
        try:
            async with self._engine.begin() as conn:
                # The thread row first: on PostgreSQL this orders the write against a
                # clean-up pass deleting the same thread.
                moved = await conn.execute(
                    update(_th).where(_th.c.id == reply.thread_id).values(expires_at=expires_at)
                )
                continued = await conn.execute(
                    update(_t)
                    .where(
                        _t.c.message_id == reply.message_id,
                        _t.c.claim_token == token,
                        _t.c.continued_by.is_(None),
                    )
                    .values(continued_by=message_id, claim_token=None, claim_until=None)
                )
                if not moved.rowcount or not continued.rowcount:
                    raise _Lost()
                await conn.execute(
                    insert(_t).values(
                        message_id=message_id,
                        thread_id=reply.thread_id,
                        position=reply.position + 1,
                        messages=turn.messages,
                        reply=turn.reply,
                    )
                )
        except _Lost:
            return False
        return True

    async def sweep(self, now: datetime) -> int:
        """Delete the threads that expired by `now`, with their turns; returns how many."""
        async with self._engine.begin() as conn:
            gone = list(
                (
                    await conn.execute(
                        delete(_th).where(_th.c.expires_at <= now).returning(_th.c.id)
                    )
                ).scalars()
            )
            for start in range(0, len(gone), 500):
                chunk = gone[start : start + 500]
                await conn.execute(delete(_t).where(_t.c.thread_id.in_(chunk)))
        return len(gone)

    async def count(self) -> tuple[int, int]:
        """Threads and turns kept, for tests and operators."""
        async with self._engine.connect() as conn:
            threads = (await conn.execute(select(func.count()).select_from(_th))).scalar_one()
            turns = (await conn.execute(select(func.count()).select_from(_t))).scalar_one()
        return int(threads), int(turns)
