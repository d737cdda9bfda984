"""run.backend: the InvokeAI server a run was sent to, when there are several; the batches
left on a server that stopped answering, to cancel there

Revision ID: 5c1e7a9b3d20
Revises: 3a9d6b2e8c47
Create Date: 2026-12-05 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app.db.tables


revision: str = '5c1e7a9b3d20'
down_revision: str | None = '3a9d6b2e8c47'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backend', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_table('abandoned_batch',
    sa.Column('batch_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('backend', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', app.db.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('batch_id', name=op.f('pk_abandoned_batch'))
    )
    op.create_index(op.f('ix_abandoned_batch_backend'), 'abandoned_batch', ['backend'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_abandoned_batch_backend'), table_name='abandoned_batch')
    op.drop_table('abandoned_batch')
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_column('backend')
