"""The cache check reads the audit log by time; user_scores is tuned for constant rewrites.

- ``ix_score_updates_recorded_at``: the check asks which users changed since an instant, at
  a cost that follows the changes (an append-only index: new entries go to its right edge).
- On PostgreSQL, ``user_scores`` rows are rewritten by every update, and the ranking index
  covers the score, so those updates cannot be HOT: every one leaves a dead row. The table
  is vacuumed after 1,000 + 1% dead rows rather than 50 + 20% of the table (200,000 dead
  rows at a million users), without cost throttling. (A lower fillfactor would only make
  the table bigger: measured with ``bench/table_churn.py``.)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER_SCORES_STORAGE = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_analyze_scale_factor": "0.02",
    "autovacuum_vacuum_cost_delay": "0",
}


def upgrade() -> None:
    op.create_index("ix_score_updates_recorded_at", "score_updates", ["recorded_at"])
    if op.get_bind().dialect.name == "postgresql":
        settings = ", ".join(f"{name} = {value}" for name, value in USER_SCORES_STORAGE.items())
        op.execute(f"ALTER TABLE user_scores SET ({settings})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE user_scores RESET ({', '.join(USER_SCORES_STORAGE)})")
    op.drop_index("ix_score_updates_recorded_at", table_name="score_updates")
