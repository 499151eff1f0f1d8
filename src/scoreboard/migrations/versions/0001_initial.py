"""The spec's user_scores and score_updates tables, extended.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_scores",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("score", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("score >= 0", name="ck_user_scores_score_positive"),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_scores"),
    )
    op.create_index(
        "ix_user_scores_ranking",
        "user_scores",
        [sa.text("score DESC"), "last_updated", "user_id"],
    )
    op.create_table(
        "score_updates",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("action_id", sa.String(36), nullable=False),
        sa.Column("action_type", sa.String(64), nullable=False),
        sa.Column("score_change", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_ip", sa.String(45), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_scores.user_id"],
            name="fk_score_updates_user_id_user_scores",
            deferrable=True,
            initially="DEFERRED",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_score_updates"),
        sa.UniqueConstraint("action_id", name="uq_score_updates_action_id"),
    )
    op.create_index("ix_score_updates_user_recorded", "score_updates", ["user_id", "recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_score_updates_user_recorded", table_name="score_updates")
    op.drop_table("score_updates")
    op.drop_index("ix_user_scores_ranking", table_name="user_scores")
    op.drop_table("user_scores")
