"""The schema, as SQLAlchemy Core tables shared by the repositories and the migrations.

It is the spec's schema, extended: BIGINT scores, a per-user ``version`` so caches can refuse
stale values, the action type, the client's and the server's timestamps, and the client IP.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BOARD_ID_LENGTH = 64
PERIOD_KEY_LENGTH = 64

# A user's score on one board during one period (the spec's user_scores, keyed by board and
# period too). Rows of a new period start empty; closed periods are never rewritten.
user_scores = Table(
    "user_scores",
    metadata,
    Column("board_id", String(BOARD_ID_LENGTH), primary_key=True),
    Column("period_key", String(PERIOD_KEY_LENGTH), primary_key=True),
    Column("user_id", String(36), primary_key=True),
    Column("username", String(255), nullable=False),
    Column("score", BigInteger, nullable=False, server_default="0"),
    Column("version", BigInteger, nullable=False, server_default="0"),
    Column("last_updated", UTCDateTime, nullable=False),
    # Latest boards: when the run whose value the row holds was issued. Completions may
    # arrive in any order; only a value from a later-issued ticket replaces it.
    Column("value_at", UTCDateTime, nullable=True),
    CheckConstraint("score >= 0", name="score_positive"),
)
Index(
    "ix_user_scores_ranking",
    user_scores.c.board_id,
    user_scores.c.period_key,
    user_scores.c.score.desc(),
    user_scores.c.last_updated,
    user_scores.c.user_id,
)

# The audit log: one row per accepted ticket (or admin change), kept for the audit retention.
#
# ``issued_at`` is the ticket's signed issue time (an admin change's own time). On PostgreSQL
# the table is RANGE-partitioned by month on it (migration 0005, scoreboard.audit_partitions)
# and, since a unique index of a partitioned table must hold the partition key, the keys are
# PRIMARY KEY (id, issued_at) and UNIQUE (action_id, issued_at): a replay carries the same
# signed issued_at, so it meets its first copy in the same partition, whatever month it
# arrives in, and a forged issued_at does not pass the ticket's signature. On SQLite (one
# plain table) the keys stay PRIMARY KEY (id) and UNIQUE (action_id), and
# ``ix_score_updates_issued_at`` serves the retention delete. No default for issued_at: a
# writer that forgot it must fail, not file the row under its arrival time (a replay next
# month would then miss it).
score_updates = Table(
    "score_updates",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("action_id", String(36), nullable=False),
    Column("action_type", String(64), nullable=False),
    Column("score_change", BigInteger, nullable=False),
    Column("value", BigInteger, nullable=True),  # for best/latest boards: the ranked value
    Column("boards", Text, nullable=False),  # JSON {board: period} of every board it fed
    Column("timestamp", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("client_ip", String(45), nullable=True),
    Column("issued_at", UTCDateTime, primary_key=True),
    UniqueConstraint("action_id", "issued_at", name="uq_score_updates_action_id"),
)
Index("ix_score_updates_user_recorded", score_updates.c.user_id, score_updates.c.recorded_at)
Index("ix_score_updates_recorded_at", score_updates.c.recorded_at)  # what changed since

# PostgreSQL only, one row at most (migration 0005): the rows written before partitioning got
# their recorded_at as issued_at, not their ticket's. A ticket issued before
# ``issued_before`` (tickets of those days, alive for minutes after the upgrade) is also
# looked up by its action id alone, so its replay is refused too.
score_updates_legacy = Table(
    "score_updates_legacy",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("issued_before", UTCDateTime, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# Boards defined at runtime (``definition`` JSON), and retirements of any board (a file
# board has a row only once retired, with no definition).
boards = Table(
    "boards",
    metadata,
    Column("id", String(BOARD_ID_LENGTH), primary_key=True),
    Column("definition", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime, nullable=True),
)

# Periods an admin closed early: each cuts its board's period at ``at``.
board_rollovers = Table(
    "board_rollovers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("board_id", String(BOARD_ID_LENGTH), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("closed_period", String(PERIOD_KEY_LENGTH), nullable=False),
    Column("opened_period", String(PERIOD_KEY_LENGTH), nullable=False),
)
Index("ix_board_rollovers_board_id_at", board_rollovers.c.board_id, board_rollovers.c.at)

# Every period that holds scores, so pruning finds them without scanning user_scores.
board_periods = Table(
    "board_periods",
    metadata,
    Column("board_id", String(BOARD_ID_LENGTH), primary_key=True),
    Column("period_key", String(PERIOD_KEY_LENGTH), primary_key=True),
    Column("first_score_at", UTCDateTime, nullable=False),
)

# One row: grows with every board change. Score writes read it FOR SHARE and board changes
# update it, so a rollover and the writes around it are ordered by the database.
board_revision = Table(
    "board_revision",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

abuse_flags = Table(
    "abuse_flags",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=True),
    Column("client_ip", String(45), nullable=True),
    Column("rule", String(64), nullable=False),
    Column("policy", String(16), nullable=False),
    Column("evidence", Text, nullable=False),  # JSON
    Column("created_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("resolved_by", String(36), nullable=True),
    Column("resolution", Text, nullable=True),
)
Index("ix_abuse_flags_user_id_created_at", abuse_flags.c.user_id, abuse_flags.c.created_at)
Index("ix_abuse_flags_resolved_at", abuse_flags.c.resolved_at)

suspensions = Table(
    "suspensions",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("suspended_by", String(64), nullable=False),  # an admin id, or "rule:<name>"
    Column("created_at", UTCDateTime, nullable=False),
)

admin_audit = Table(
    "admin_audit",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("admin_id", String(36), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target_user_id", String(36), nullable=True),
    Column("reason", Text, nullable=False),
    Column("details", Text, nullable=False),  # JSON
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_admin_audit_target_user_id", admin_audit.c.target_user_id)
