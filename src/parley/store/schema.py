"""Tables, as SQLAlchemy Core metadata. Changes go with a migration in migrations/versions."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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

# Message Batches (api-spec §11). processing_status is the wire value, plus
# `creating` while the create body is still being read (never shown to clients).
message_batches = Table(
    "message_batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("processing_status", String(16), nullable=False),
    # The anthropic-version of the create call: each request is validated by its rules.
    Column("api_version", String(16), nullable=False),
    Column("request_count", Integer, nullable=False),
    # Final counts, written once when the batch ends (until then all are `processing`).
    Column("succeeded", Integer, nullable=False),
    Column("errored", Integer, nullable=False),
    Column("canceled", Integer, nullable=False),
    Column("expired", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("cancel_initiated_at", DateTime(timezone=True), nullable=True),
    Column("archived_at", DateTime(timezone=True), nullable=True),
    Index("message_batches_by_key", "key_id", "created_at"),
    Index("message_batches_by_status", "processing_status", "created_at"),
)

# One row per request of a batch, and later its result. state: pending | running |
# succeeded | errored | canceled | expired. A running row belongs to the worker whose
# claim_token it carries until lease_until; its result is written only by that claim.
batch_requests = Table(
    "batch_requests",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("custom_id", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("claim_token", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    # The JSON of the `result` object, for succeeded and errored requests.
    Column("result", Text, nullable=True),
    UniqueConstraint("batch_id", "custom_id", name="batch_requests_custom_id"),
    Index("batch_requests_by_state", "batch_id", "state", "position"),
)

# Files API (api-spec §17). A row appears only once its bytes are stored, so a file is
# never listed half-written; `storage` says where the bytes are (`directory`: one file
# per id under the data dir; `database`: rows of file_chunks), so a change of setting
# does not lose the files stored before it.
files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("filename", String(1024), nullable=False),
    Column("mime_type", String(255), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("storage", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Index("files_by_key", "key_id", "created_at"),
)

# Uploads in progress: their bytes may be partly stored. A process that dies mid-upload
# leaves a row here, by which its bytes are found and removed later.
file_uploads = Table(
    "file_uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("storage", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
)

# The bytes of files stored in the database (a PostgreSQL every replica reads), in
# chunks of about 1 MiB written and read one at a time.
file_chunks = Table(
    "file_chunks",
    metadata,
    Column("file_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# Message threads (beta, message-threads doc §1.3): a conversation kept under each of
# its replies' ids. The thread row holds what every turn shares; it belongs to the key
# that created it and is gone after `expires_at` (moved on by each turn).
message_threads = Table(
    "message_threads",
    metadata,
    Column("id", String(64), primary_key=True),  # the id of its first reply
    Column("key_id", String(64), nullable=False),
    # JSON: the fields fixed for the thread's lifetime (model, tool_choice, ...).
    Column("fingerprint", Text, nullable=False),
    # JSON of the create turn's `system` and `tools`, as sent (null: not sent).
    Column("system", Text, nullable=True),
    Column("tools", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("message_threads_by_expiry", "expires_at"),
)

# One row per turn, keyed by its reply's id: the turn's own messages and the reply's
# content (JSON), in order. A reply is continued once (`continued_by`); while a turn
# continuing it runs, it is claimed (`claim_token` until `claim_until`), which any
# replica sees.
message_thread_turns = Table(
    "message_thread_turns",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("thread_id", String(64), nullable=False),
    Column("position", Integer, nullable=False),
    Column("messages", Text, nullable=False),
    Column("reply", Text, nullable=False),
    Column("continued_by", String(64), nullable=True),
    Column("claim_token", String(64), nullable=True),
    Column("claim_until", DateTime(timezone=True), nullable=True),
    UniqueConstraint("thread_id", "position", name="message_thread_turns_position"),
)
