"""What a worker says about itself: software version, GPU, and the models it serves

``model_info`` maps each model name to its task, classes, backend and spec, so the API can say
what a model does without loading it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("version", sa.String(64)))
        batch.add_column(sa.Column("gpu", sa.String(255)))
        batch.add_column(sa.Column("model_info", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("model_info")
        batch.drop_column("gpu")
        batch.drop_column("version")
