"""An image's features read in their stable order straight from an index

Aggregation reads every feature of one image ordered by region, then insertion (``id``); the
index on ``(job_id, image_idx)`` found the rows but left them to be sorted, all of them at once,
in a temporary B-tree. ``(job_id, image_idx, region_idx, id)`` yields them in that order, and
serves every lookup the old index served (its first two columns), so it replaces it.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_features_job_image_region", "features", ["job_id", "image_idx", "region_idx", "id"]
    )
    op.drop_index("ix_features_job_image", table_name="features")


def downgrade() -> None:
    op.create_index("ix_features_job_image", "features", ["job_id", "image_idx"])
    op.drop_index("ix_features_job_image_region", table_name="features")
