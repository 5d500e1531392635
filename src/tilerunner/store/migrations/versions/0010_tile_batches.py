"""The XYZ tiles of each work item of a tile job

A tile job's work items are batches of a few hundred tiles of one zoom level; each batch is a
region row (its state, attempts and counts) plus one row here naming its tiles, written at
planning, so the sweeper and the work service can describe an item without the tile list.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tile_batches",
        sa.Column("job_id", sa.String(length=64), primary_key=True),
        sa.Column("image_idx", sa.Integer(), primary_key=True),
        sa.Column("region_idx", sa.Integer(), primary_key=True),
        sa.Column("tiles", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id", "image_idx", "region_idx"],
            ["regions.job_id", "regions.image_idx", "regions.idx"],
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("tile_batches")
