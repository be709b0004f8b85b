"""API keys: created with a random secret that is shown once and stored only as a hash."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from parley.store.schema import api_keys, metadata

SECRET_PREFIX = "sk-parley-"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    hint: str
    tier: str
    status: str
    is_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _hint(secret: str) -> str:
    return f"{secret[: len(SECRET_PREFIX) + 4]}...{secret[-4:]}"


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open_sqlite(cls, data_dir: Path) -> KeyStore:
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
        store = cls(create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'parley.db'}"))
        async with store._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        return store

    async def aclose(self) -> None:
        await self._engine.dispose()

    async def create(self, name: str, *, tier: str = "default", admin: bool = False) -> CreatedKey:
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="apikey_01" + secrets.token_hex(11),
            name=name,
            hint=_hint(secret),
            tier=tier,
            status="active",
            is_admin=admin,
            created_at=datetime.now(UTC),
        )
        async with self._engine.begin() as conn:
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
                )
            )
        return CreatedKey(key, secret)

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
            )

    async def find_active(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.secret_hash == digest))
            ).first()
        if row is None or not hmac.compare_digest(row.secret_hash, digest):
            return None
        if row.status != "active":
            return None
        return ApiKey(
            id=row.id,
            name=row.name,
            hint=row.hint,
            tier=row.tier,
            status=row.status,
            is_admin=row.is_admin,
            created_at=row.created_at,
        )
