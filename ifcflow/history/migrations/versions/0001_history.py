"""The history database's first schema: runs, steps, files, edges (lineage), audit.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(200), primary_key=True),
        sa.Column("pipeline", sa.String(200)), sa.Column("pipeline_sha256", sa.String(64)),
        sa.Column("file", sa.Text), sa.Column("actor", sa.String(200)), sa.Column("inputs", sa.Text),
        sa.Column("state", sa.String(40)), sa.Column("created_at", sa.Float), sa.Column("ended_at", sa.Float),
        sa.Column("batch_id", sa.String(200)), sa.Column("schedule", sa.String(200)), sa.Column("out_dir", sa.Text),
        sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_table(
        "steps",
        sa.Column("run_id", sa.String(200), primary_key=True), sa.Column("step_id", sa.String(200), primary_key=True),
        sa.Column("service", sa.String(60)), sa.Column("versions", sa.Text), sa.Column("options_hash", sa.String(64)),
        sa.Column("state", sa.String(40)), sa.Column("worker", sa.String(200)), sa.Column("host", sa.String(200)),
        sa.Column("started_at", sa.Float), sa.Column("ended_at", sa.Float), sa.Column("duration", sa.Float),
        sa.Column("error", sa.Text), sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_table(
        "files",
        sa.Column("id", sa.String(64), primary_key=True), sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False), sa.Column("size", sa.BigInteger),
        sa.Column("first_seen", sa.Float),
    )
    op.create_index("ix_files_sha256", "files", ["sha256"])
    op.create_table(
        "edges",
        sa.Column("run_id", sa.String(200), primary_key=True), sa.Column("step_id", sa.String(200), primary_key=True),
        sa.Column("file_id", sa.String(64), primary_key=True), sa.Column("role", sa.String(10), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False), sa.Column("name", sa.String(200)),
    )
    op.create_index("edges_sha_role", "edges", ["sha256", "role"])
    op.create_table(
        "audit",
        sa.Column("key", sa.String(300), primary_key=True), sa.Column("event", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200)), sa.Column("at", sa.Float, nullable=False),
        sa.Column("run_id", sa.String(200)), sa.Column("batch_id", sa.String(200)),
        sa.Column("schedule", sa.String(200)), sa.Column("detail", sa.Text),
    )
    op.create_index("ix_audit_at", "audit", ["at"])


def downgrade() -> None:
    for table in ("audit", "edges", "files", "steps", "runs"):
        op.drop_table(table)
