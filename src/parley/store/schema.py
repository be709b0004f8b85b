"""Tables, as SQLAlchemy Core metadata."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, MetaData, String, Table

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    # sha256 of the secret; secrets are 256-bit random, so a fast hash is enough.
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("hint", String(32), nullable=False),
    Column("tier", String(64), nullable=False, default="default"),
    Column("status", String(16), nullable=False, default="active"),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)
