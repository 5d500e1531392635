"""Image metadata recorded at planning, and a job's results as aggregation wrote them

``images.georef`` keeps what planning read from each header (size, bands, dtype, CRS, affine
transform, RPCs or GCPs), so aggregation never reopens a source; ``results`` keeps the merged,
georeferenced features of a finished job, so reading them needs no merge.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("georef", sa.JSON(), nullable=True))
    op.create_table(
        "results",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("image_idx", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("x0", sa.Float(), nullable=False),
        sa.Column("y0", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "image_idx", "idx"),
    )


def downgrade() -> None:
    op.drop_table("results")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("georef")
