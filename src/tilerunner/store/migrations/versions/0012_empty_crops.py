"""The crops of a photo job's later stage that gave nothing

A crop item records the detections whose crops found nothing (row ``(group leader, stage)``
of the item, and the detection's key), so a reopened item crops just the detections that
were never cropped.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "empty_crops",
        sa.Column("job_id", sa.String(length=64), primary_key=True),
        sa.Column("image_idx", sa.Integer(), primary_key=True),
        sa.Column("region_idx", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(length=255), primary_key=True),
        sa.ForeignKeyConstraint(
            ["job_id", "image_idx", "region_idx"],
            ["regions.job_id", "regions.image_idx", "regions.idx"],
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("empty_crops")
