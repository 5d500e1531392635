"""When a watched object's job was submitted, for watchers that submit to a remote API

A watcher that submits through ``POST /v1/jobs`` gives the objects their job id first and notes
the submission after the API answered; a job with members not yet noted is submitted again
(with the same ``Idempotency-Key``) after a restart. Jobs made in the store itself are noted in
the transaction that inserts them.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("watched_objects") as batch:
        batch.add_column(sa.Column("submitted_at", sa.Float()))
    op.execute("UPDATE watched_objects SET submitted_at = seen_at WHERE job_id IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("watched_objects") as batch:
        batch.drop_column("submitted_at")
