"""The first schema: functions, versions, artifacts, instances, assignments, deployments, live requests.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "functions",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("handler", sa.String(256), nullable=False),
        sa.Column("initializer", sa.String(256), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("function", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("artifacts.sha256"), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("token_rotated_at", sa.Float, nullable=False),
        sa.Column("routes", sa.JSON, nullable=False),
        sa.Column("devices", sa.JSON, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=True),
        sa.Column("status", sa.JSON, nullable=True),
        sa.Column("status_at", sa.Float, nullable=True),
        sa.Column("clock_skew_s", sa.Float, nullable=True),
    )
    op.create_table(
        "assignments",
        sa.Column("instance_id", sa.String(32), sa.ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("function", sa.String(64), sa.ForeignKey("functions.name"), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
    )
    op.create_table(
        "deployments",
        sa.Column("instance_id", sa.String(32), sa.ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("traceback", sa.Text, nullable=True),
        sa.Column("manifest", sa.JSON, nullable=False),
        sa.Column("artifacts", sa.JSON, nullable=False),
        sa.Column("versions", sa.JSON, nullable=False),
        sa.Column("stages", sa.JSON, nullable=False),
        sa.Column("rollback_of", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("instance_id", sa.String(32), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("answer", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    for table in ("requests", "deployments", "assignments", "instances", "versions", "artifacts", "functions"):
        op.drop_table(table)
