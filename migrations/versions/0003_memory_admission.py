"""memory admission: job estimates and reservations, worker budgets, measured peaks

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_COLUMNS = ("input_pixels", "estimate_mb", "reserved_mb", "machine", "status_text")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("input_pixels", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("estimate_mb", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reserved_mb", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("machine", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("status_text", sa.Text(), nullable=True))
        batch_op.create_index("ix_jobs_state_machine", ["state", "machine"], unique=False)
    op.create_table(
        "worker_budgets",
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("machine", sa.String(length=255), nullable=False),
        sa.Column("limit_mb", sa.Integer(), nullable=False),
        sa.Column("reserve_mb", sa.Integer(), nullable=False),
        sa.Column("budget_mb", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_budgets")),
    )
    with op.batch_alter_table("worker_budgets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_worker_budgets_machine"), ["machine"], unique=False)
    op.create_table(
        "memory_peaks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("machine", sa.String(length=255), nullable=False),
        sa.Column("pixels_class", sa.Integer(), nullable=False),
        sa.Column("duration_class", sa.Integer(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=True),
        sa.Column("peak_mb", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_peaks")),
    )
    with op.batch_alter_table("memory_peaks", schema=None) as batch_op:
        batch_op.create_index("ix_memory_peaks_classes", ["pixels_class", "duration_class", "segments"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("memory_peaks", schema=None) as batch_op:
        batch_op.drop_index("ix_memory_peaks_classes")
    op.drop_table("memory_peaks")
    with op.batch_alter_table("worker_budgets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_worker_budgets_machine"))
    op.drop_table("worker_budgets")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_machine")
        for name in reversed(JOB_COLUMNS):
            batch_op.drop_column(name)
