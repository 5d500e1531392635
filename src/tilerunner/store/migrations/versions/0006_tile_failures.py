"""Tiles that failed alone: a tile that could not be read, or that the model rejected

A region completes with the features of its other tiles and one row here per failed tile (its
read window, the error's code and message), written in the completion's transaction.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tile_failures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("image_idx", sa.Integer(), nullable=False),
        sa.Column("region_idx", sa.Integer(), nullable=False),
        sa.Column("col_off", sa.Integer(), nullable=False),
        sa.Column("row_off", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id", "image_idx", "region_idx"],
            ["regions.job_id", "regions.image_idx", "regions.idx"],
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_tile_failures_region", "tile_failures", ["job_id", "image_idx", "region_idx"]
    )


def downgrade() -> None:
    op.drop_index("ix_tile_failures_region", table_name="tile_failures")
    op.drop_table("tile_failures")
