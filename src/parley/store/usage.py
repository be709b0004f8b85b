"""Usage per key, model and minute: requests and token counts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.core.calendar import minute_of, utc
from parley.core.records import UsageRecord
from parley.store.schema import usage
from parley.store.time import aware

_COUNTERS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


@dataclass
class UsageRow:
    key_id: str
    model: str
    minute: datetime
    counts: dict[str, int] = field(default_factory=dict)


class UsageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, record: UsageRecord) -> None:
        await self.add_all([record])

    async def add_all(self, records: Iterable[UsageRecord]) -> None:
        """Add each record to its (key, model, minute) row, in one transaction; each
        row is one statement, so concurrent writers from any number of replicas never
        lose an update."""
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        async with self._engine.begin() as conn:
            for record in records:
                values = {name: getattr(record, name) for name in _COUNTERS}
                statement = dialect.insert(usage).values(
                    key_id=record.key_id, model=record.model, minute=minute_of(record.at), **values
                )
                statement = statement.on_conflict_do_update(
                    index_elements=["key_id", "model", "minute"],
                    set_={name: usage.c[name] + statement.excluded[name] for name in _COUNTERS},
                )
                await conn.execute(statement)

    async def tokens_since(self, key_id: str, since: datetime) -> int:
        """Input plus output tokens (cached input included) since `since`."""
        total = func.coalesce(
            func.sum(
                usage.c.input_tokens
                + usage.c.output_tokens
                + usage.c.cache_creation_input_tokens
                + usage.c.cache_read_input_tokens
            ),
            0,
        )
        query = select(total).where(usage.c.key_id == key_id, usage.c.minute >= minute_of(since))
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def rows(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        key_ids: list[str] | None = None,
        models: list[str] | None = None,
    ) -> list[UsageRow]:
        conditions: list[ColumnElement[bool]] = []
        if since is not None:
            conditions.append(usage.c.minute >= minute_of(since))
        if until is not None:
            conditions.append(usage.c.minute < utc(until))
        if key_ids:
            conditions.append(usage.c.key_id.in_(key_ids))
        if models:
            conditions.append(usage.c.model.in_(models))
        query = select(usage).where(*conditions).order_by(usage.c.minute, usage.c.key_id)
        async with self._engine.connect() as conn:
            result = await conn.execute(query)
            return [_row(r) for r in result]


def _row(r: Any) -> UsageRow:
    return UsageRow(r.key_id, r.model, aware(r.minute), {n: int(getattr(r, n)) for n in _COUNTERS})
