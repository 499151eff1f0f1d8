"""The audit log (score_updates) carries its ticket's issue time; on PostgreSQL it is
partitioned by month on it, so retention drops whole months.

- Every row gets ``issued_at``, the signed issue time of its ticket. Rows written before
  this revision never stored it: they get their ``recorded_at``. That is an upper bound of
  the true issue time (a ticket is issued before it is completed, and ``recorded_at`` is the
  server's clock, while ``timestamp`` is the client's, anywhere within the clock skew), and
  it is within a ticket lifetime of it: such a row is never pruned earlier than its ticket
  would allow, and its ticket, if still alive, is found by ``score_updates_legacy`` below.
- SQLite: the column is added (and indexed for the retention delete); nothing else changes,
  ``action_id`` stays UNIQUE on its own.
- PostgreSQL: a new ``score_updates`` PARTITION BY RANGE (issued_at), one partition per
  month from the oldest row's month to three months ahead, no DEFAULT partition; the rows are
  copied in, the plain table dropped. The keys become PRIMARY KEY (id, issued_at) and UNIQUE
  (action_id, issued_at) (a partitioned table's unique index must hold the partition key); the
  two time indexes are rebuilt (per partition). A replay of a new ticket carries the same
  signed issued_at as its first copy, so the unique key refuses it in whatever month it
  comes. A replay of a ticket completed *before* the upgrade carries its true issue time,
  not the recorded_at its row got: ``score_updates_legacy`` holds the instant before which
  tickets may have such rows, and the writer looks those tickets up by action id alone.
  The audit log is locked while the rows move (score writes wait; leaderboard reads do not
  touch it): stop the old instances first, they would write rows without ``issued_at``.
- Downgrade: back to the plain table (PostgreSQL) or drops the column (SQLite).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from scoreboard import audit_partitions as partitions

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TABLE = "score_updates_0004"  # the plain table, while its rows move


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("action_id", sa.String(36), nullable=False),
        sa.Column("action_type", sa.String(64), nullable=False),
        sa.Column("score_change", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.Column("boards", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_ip", sa.String(45), nullable=True),
    ]


def _time_indexes() -> None:
    op.create_index("ix_score_updates_user_recorded", "score_updates", ["user_id", "recorded_at"])
    op.create_index("ix_score_updates_recorded_at", "score_updates", ["recorded_at"])


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("score_updates") as batch:
            batch.add_column(sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True))
        op.execute("UPDATE score_updates SET issued_at = recorded_at")
        with op.batch_alter_table("score_updates") as batch:
            batch.alter_column(
                "issued_at", existing_type=sa.DateTime(timezone=True), nullable=False
            )
        op.create_index("ix_score_updates_issued_at", "score_updates", ["issued_at"])
        return

    bind = op.get_bind()
    # Nothing reads or writes the audit log until its rows have moved (leaderboard reads do
    # not touch it; score writes wait).
    op.execute("LOCK TABLE score_updates IN ACCESS EXCLUSIVE MODE")
    op.rename_table("score_updates", OLD_TABLE)
    op.create_table(
        "score_updates",
        *_columns(),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        postgresql_partition_by="RANGE (issued_at)",
    )
    oldest, newest, now = bind.execute(
        sa.text("SELECT min(recorded_at), max(recorded_at), now() FROM score_updates_0004")
    ).one()
    ahead = partitions.add_months(partitions.month_start(now), partitions.MONTHS_AHEAD)
    first: datetime = min(oldest or now, now).astimezone(UTC)
    last: datetime = max(newest or now, ahead).astimezone(UTC)
    partitions.create_months(bind, partitions.months_from(first, last))
    op.execute(
        "INSERT INTO score_updates (id, user_id, action_id, action_type, score_change, value, "
        "boards, timestamp, recorded_at, client_ip, issued_at) "
        "SELECT id, user_id, action_id, action_type, score_change, value, "
        "boards, timestamp, recorded_at, client_ip, recorded_at FROM score_updates_0004"
    )

    op.create_table(
        "score_updates_legacy",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("issued_before", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_score_updates_legacy_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_score_updates_legacy"),
    )
    # The horizon: past every old row and every ticket the old instances issued, even by a
    # clock up to the largest skew (an hour) ahead of the database's.
    op.execute(
        "INSERT INTO score_updates_legacy (id, issued_before) "
        "SELECT 1, greatest(now(), max(recorded_at)) + interval '1 hour' "
        "FROM score_updates_0004 HAVING count(*) > 0"
    )
    op.drop_table(OLD_TABLE)  # frees the constraint and index names

    op.create_primary_key("pk_score_updates", "score_updates", ["id", "issued_at"])
    op.create_unique_constraint(
        "uq_score_updates_action_id", "score_updates", ["action_id", "issued_at"]
    )
    _time_indexes()
    op.execute("ANALYZE score_updates")  # autovacuum never analyzes a partitioned parent


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("ix_score_updates_issued_at", table_name="score_updates")
        with op.batch_alter_table("score_updates") as batch:
            batch.drop_column("issued_at")
        return

    op.execute("LOCK TABLE score_updates IN ACCESS EXCLUSIVE MODE")
    op.create_table(OLD_TABLE, *_columns())
    op.execute(
        "INSERT INTO score_updates_0004 (id, user_id, action_id, action_type, score_change, "
        "value, boards, timestamp, recorded_at, client_ip) "
        "SELECT id, user_id, action_id, action_type, score_change, "
        "value, boards, timestamp, recorded_at, client_ip FROM score_updates"
    )
    op.drop_table("score_updates")  # and every partition with it
    op.drop_table("score_updates_legacy")
    op.rename_table(OLD_TABLE, "score_updates")
    op.create_primary_key("pk_score_updates", "score_updates", ["id"])
    # Fails (and nothing changes) if one action id was ever stored under two issue times.
    op.create_unique_constraint("uq_score_updates_action_id", "score_updates", ["action_id"])
    _time_indexes()
