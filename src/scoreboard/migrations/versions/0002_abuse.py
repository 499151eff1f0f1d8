"""Abuse flags, suspensions and the admin audit trail.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "abuse_flags",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("client_ip", sa.String(45), nullable=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(36), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_abuse_flags"),
    )
    op.create_index("ix_abuse_flags_user_id_created_at", "abuse_flags", ["user_id", "created_at"])
    op.create_index("ix_abuse_flags_resolved_at", "abuse_flags", ["resolved_at"])
    op.create_table(
        "suspensions",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("suspended_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_suspensions"),
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("admin_id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_user_id", sa.String(36), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_audit"),
    )
    op.create_index("ix_admin_audit_target_user_id", "admin_audit", ["target_user_id"])


def downgrade() -> None:
    op.drop_index("ix_admin_audit_target_user_id", table_name="admin_audit")
    op.drop_table("admin_audit")
    op.drop_table("suspensions")
    op.drop_index("ix_abuse_flags_resolved_at", table_name="abuse_flags")
    op.drop_index("ix_abuse_flags_user_id_created_at", table_name="abuse_flags")
    op.drop_table("abuse_flags")
