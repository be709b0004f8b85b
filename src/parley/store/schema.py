"""Tables, as SQLAlchemy Core metadata. Changes go with a migration in migrations/versions."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    true,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    # sha256 of the secret; secrets are 256-bit random, so a fast hash is enough.
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("hint", String(32), nullable=False),
    Column("tier", String(64), nullable=False),
    # active | inactive | archived (the Admin API's statuses; archived is final).
    Column("status", String(16), nullable=False),
    Column("is_admin", Boolean, nullable=False),
    # False: requests from a browser (with an Origin) are refused for this key.
    Column("browser_access", Boolean, nullable=False, server_default=true()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

usage = Table(
    "usage",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("model", String(256), primary_key=True),
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_creation_input_tokens", BigInteger, nullable=False),
    Column("cache_read_input_tokens", BigInteger, nullable=False),
    Index("usage_by_minute", "minute"),
)
