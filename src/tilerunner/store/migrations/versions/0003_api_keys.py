"""API keys, and the project each job belongs to

Keys are stored as hashes with their project and scopes; every existing job joins the
``default`` project.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("hash", name="uq_api_keys_hash"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("project", sa.String(length=64), nullable=False, server_default="default")
        )
        batch.create_index("ix_jobs_project_created", ["project", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_project_created")
        batch.drop_column("project")
    op.drop_table("api_keys")
