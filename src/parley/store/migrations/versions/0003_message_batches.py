"""Message Batches and their requests (api-spec §11).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "message_batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("processing_status", sa.String(16), nullable=False),
        sa.Column("api_version", sa.String(16), nullable=False),
        sa.Column("request_count", sa.Integer, nullable=False),
        sa.Column("succeeded", sa.Integer, nullable=False),
        sa.Column("errored", sa.Integer, nullable=False),
        sa.Column("canceled", sa.Integer, nullable=False),
        sa.Column("expired", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_initiated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("message_batches_by_key", "message_batches", ["key_id", "created_at"])
    op.create_index(
        "message_batches_by_status", "message_batches", ["processing_status", "created_at"]
    )
    op.create_table(
        "batch_requests",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("custom_id", sa.String(64), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claim_token", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.UniqueConstraint("batch_id", "custom_id", name="batch_requests_custom_id"),
    )
    op.create_index("batch_requests_by_state", "batch_requests", ["batch_id", "state", "position"])


def downgrade() -> None:
    op.drop_index("batch_requests_by_state", "batch_requests")
    op.drop_table("batch_requests")
    op.drop_index("message_batches_by_status", "message_batches")
    op.drop_index("message_batches_by_key", "message_batches")
    op.drop_table("message_batches")
