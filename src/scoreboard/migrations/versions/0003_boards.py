"""Boards and periods: scores keyed by (board, period, user); every existing score and audit
row moves to the board ``global``, period ``all``, with nothing lost.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GLOBAL_BOARDS = json.dumps({"global": "all"}, separators=(",", ":"))


def upgrade() -> None:
    # The audit row no longer points at one score row: an update may feed several boards.
    with op.batch_alter_table("score_updates") as batch:
        batch.drop_constraint("fk_score_updates_user_id_user_scores", type_="foreignkey")
        batch.add_column(sa.Column("value", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("boards", sa.Text(), nullable=False, server_default=GLOBAL_BOARDS)
        )
    with op.batch_alter_table("score_updates") as batch:
        batch.alter_column("boards", server_default=None, existing_type=sa.Text())

    op.drop_index("ix_user_scores_ranking", table_name="user_scores")
    with op.batch_alter_table("user_scores") as batch:
        batch.add_column(
            sa.Column("board_id", sa.String(64), nullable=False, server_default="global")
        )
        batch.add_column(
            sa.Column("period_key", sa.String(64), nullable=False, server_default="all")
        )
        batch.add_column(sa.Column("value_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint("pk_user_scores", type_="primary")
        batch.create_primary_key("pk_user_scores", ["board_id", "period_key", "user_id"])
    with op.batch_alter_table("user_scores") as batch:
        batch.alter_column("board_id", server_default=None, existing_type=sa.String(64))
        batch.alter_column("period_key", server_default=None, existing_type=sa.String(64))
    op.create_index(
        "ix_user_scores_ranking",
        "user_scores",
        ["board_id", "period_key", sa.text("score DESC"), "last_updated", "user_id"],
    )

    op.create_table(
        "boards",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_boards"),
    )
    op.create_table(
        "board_rollovers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("board_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_period", sa.String(64), nullable=False),
        sa.Column("opened_period", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_board_rollovers"),
    )
    op.create_index("ix_board_rollovers_board_id_at", "board_rollovers", ["board_id", "at"])
    periods = op.create_table(
        "board_periods",
        sa.Column("board_id", sa.String(64), nullable=False),
        sa.Column("period_key", sa.String(64), nullable=False),
        sa.Column("first_score_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("board_id", "period_key", name="pk_board_periods"),
    )
    board_revision = op.create_table(
        "board_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_board_revision_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_board_revision"),
    )
    assert periods is not None
    assert board_revision is not None
    op.bulk_insert(board_revision, [{"id": 1, "revision": 1}])
    connection = op.get_bind()
    if connection.scalar(sa.text("SELECT COUNT(*) FROM user_scores")):
        now = datetime.now(UTC)
        first = now.replace(tzinfo=None) if connection.dialect.name == "sqlite" else now
        op.bulk_insert(
            periods, [{"board_id": "global", "period_key": "all", "first_score_at": first}]
        )


def downgrade() -> None:
    # Going back would have to drop every score that is not on the global all-time board and
    # every audit row's record of the boards it fed: refuse rather than lose data.
    raise RuntimeError(
        "migration 0003 (boards) cannot be undone without losing scores; restore a backup"
    )
