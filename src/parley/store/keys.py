"""API keys: a random secret shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from parley.core.records import ApiKey
from parley.store.key_changes import CHANNEL, mark_changed
from parley.store.schema import api_keys
from parley.store.time import aware

SECRET_PREFIX = "sk-parley-"
ADMIN_SECRET_PREFIX = "sk-parley-admin-"
KeyStatus = Literal["active", "inactive", "archived"]


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _hint(secret: str, prefix: str) -> str:
    return f"{secret[: len(prefix) + 4]}...{secret[-4:]}"


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        hint=row.hint,
        tier=row.tier,
        status=row.status,
        is_admin=row.is_admin,
        created_at=aware(row.created_at),
        last_used_at=aware(row.last_used_at) if row.last_used_at else None,
        browser_access=row.browser_access,
    )


class KeyNotFound(LookupError):
    pass


class KeyArchived(ValueError):
    """An archived key cannot be reactivated (the Admin API's statuses: archived is final)."""


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def _changing(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that changes keys. Every process that keeps keys in memory
        hears of it when it commits: a NOTIFY in the transaction (PostgreSQL), or the
        SQLite marker file grown once it has committed (store/key_changes.py)."""
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(select(func.pg_notify(CHANNEL, "")))
            yield conn
        mark_changed(self._engine.url)

    async def create(
        self,
        name: str,
        *,
        tier: str = "default",
        admin: bool = False,
        browser_access: bool = True,
    ) -> CreatedKey:
        prefix = ADMIN_SECRET_PREFIX if admin else SECRET_PREFIX
        secret = prefix + secrets.token_urlsafe(32)
        key = ApiKey(
            id="apikey_01" + secrets.token_hex(11),
            name=name,
            hint=_hint(secret, prefix),
            tier=tier,
            status="active",
            is_admin=admin,
            created_at=datetime.now(UTC),
            browser_access=browser_access,
        )
        async with self._changing() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=key.id,
                    name=key.name,
                    secret_hash=hash_secret(secret),
                    hint=key.hint,
                    tier=key.tier,
                    status=key.status,
                    is_admin=key.is_admin,
                    created_at=key.created_at,
                    browser_access=key.browser_access,
                )
            )
        return CreatedKey(key, secret)

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            result = await conn.execute(select(func.count()).select_from(api_keys))
            return int(result.scalar_one())

    async def find_active(self, secret: str) -> ApiKey | None:
        """The active key with this secret."""
        return await self.find_active_digest(hash_secret(secret))

    async def find_active_digest(self, digest: str) -> ApiKey | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.secret_hash == digest))
            ).first()
        if row is None or not hmac.compare_digest(row.secret_hash, digest):
            return None
        return _key(row) if row.status == "active" else None

    async def list(self) -> list[ApiKey]:
        """All keys, newest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(api_keys).order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
            )
            return [_key(row) for row in rows]

    async def get(self, key_id: str) -> ApiKey:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None:
            raise KeyNotFound(key_id)
        return _key(row)

    async def update(
        self,
        key_id: str,
        *,
        name: str | None = None,
        status: KeyStatus | None = None,
        browser_access: bool | None = None,
    ) -> ApiKey:
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        if status is not None:
            values["status"] = status
        if browser_access is not None:
            values["browser_access"] = browser_access
        statement = update(api_keys).where(api_keys.c.id == key_id)
        if status in ("active", "inactive"):
            # Archived is final; the condition is in the UPDATE itself so that a
            # reactivation racing a revoke on another replica cannot undo it.
            statement = statement.where(api_keys.c.status != "archived")
        async with self._changing() as conn:
            changed = (await conn.execute(statement.values(values))).rowcount if values else 0
            if changed == 0:
                row = (
                    await conn.execute(select(api_keys.c.status).where(api_keys.c.id == key_id))
                ).first()
                if row is None:
                    raise KeyNotFound(key_id)
                if values:
                    raise KeyArchived(f"{key_id}: an archived key cannot be reactivated")
        return await self.get(key_id)

    async def revoke(self, key_id: str) -> ApiKey:
        return await self.update(key_id, status="archived")

    async def touch(self, key_id: str, at: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at)
            )
