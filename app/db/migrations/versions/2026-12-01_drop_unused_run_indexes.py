"""drop the unused run indexes on batch_id and item_id

No query looks a run up by its batch or queue item id (those are looked up on InvokeAI, or
in the follower's memory), and each index cost every run submission's two writes a page more.

Revision ID: 5c1d0e9a7b3f
Revises: 2b7c91e4f0a1
Create Date: 2026-12-01 22:40:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '5c1d0e9a7b3f'
down_revision: str | None = '2b7c91e4f0a1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_item_id'))
        batch_op.drop_index(batch_op.f('ix_run_batch_id'))


def downgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_item_id'), ['item_id'], unique=False)
