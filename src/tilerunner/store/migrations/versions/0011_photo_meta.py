"""What a photo's source says about it (event or group id, location), kept on every result

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("meta", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("meta")
