"""Objects of watched sources: each (watch, key, version) once, with the job it went into

``tilerunner watch`` records an object here when it finds it (``job_id`` empty while it waits
for a rolling job) and sets ``job_id`` in the transaction that inserts the job, so an object is
taken exactly once across restarts of the watcher.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watched_objects",
        sa.Column("watch", sa.String(length=255), primary_key=True),
        sa.Column("key", sa.String(length=1024), primary_key=True),
        sa.Column("version", sa.String(length=128), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger()),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.Column("job_id", sa.String(length=64)),
    )
    op.create_index("ix_watched_objects_job", "watched_objects", ["watch", "job_id"])


def downgrade() -> None:
    op.drop_index("ix_watched_objects_job", table_name="watched_objects")
    op.drop_table("watched_objects")
