"""Message threads (beta): threads and their turns.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "message_threads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("system", sa.Text, nullable=True),
        sa.Column("tools", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("message_threads_by_expiry", "message_threads", ["expires_at"])
    op.create_table(
        "message_thread_turns",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("messages", sa.Text, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("continued_by", sa.String(64), nullable=True),
        sa.Column("claim_token", sa.String(64), nullable=True),
        sa.Column("claim_until", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("thread_id", "position", name="message_thread_turns_position"),
    )


def downgrade() -> None:
    op.drop_table("message_thread_turns")
    op.drop_index("message_threads_by_expiry", "message_threads")
    op.drop_table("message_threads")
