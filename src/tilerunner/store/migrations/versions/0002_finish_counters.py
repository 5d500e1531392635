"""Counters of finished regions per image and finished images per job

Completing a region then costs one counter update instead of a count over the job's regions.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(
            sa.Column("regions_finished", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("images_finished", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE images SET regions_finished = (SELECT count(*) FROM regions r "
        "WHERE r.job_id = images.job_id AND r.image_idx = images.idx AND r.state <> 'pending')"
    )
    op.execute(
        "UPDATE jobs SET images_finished = (SELECT count(*) FROM images i "
        "WHERE i.job_id = jobs.id AND i.state <> 'pending')"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("images_finished")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("regions_finished")
