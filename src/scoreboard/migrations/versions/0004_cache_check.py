"""The cache check reads the audit log by time; user_scores is tuned for constant rewrites.

- ``ix_score_updates_recorded_at``: the check asks which users changed since an instant, at
  a cost that follows the changes (an append-only index: new entries go to its right edge).
- On PostgreSQL, ``user_scores`` rows are rewritten by every update, and the ranking index
  covers the score, so those updates cannot be HOT. The table leaves room in each page
  (``fillfactor``) for the updates that can be (a best or latest board whose value did not
  change) and is vacuumed after 1,000 + 1% dead rows, not 20% of the table, without cost
  throttling, so dead rows never pile up.

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
    "fillfactor": "80",
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
