"""sweeps: a batch of runs asked for in one request

Revision ID: 3a9d6b2e8c47
Revises: 8e4f2a6c1d90
Create Date: 2026-12-05 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app.db.tables


revision: str = '3a9d6b2e8c47'
down_revision: str | None = '8e4f2a6c1d90'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sweep',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('workflow_version', sa.Integer(), nullable=False),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('fixed', sa.JSON(), nullable=False),
    sa.Column('vary', sa.JSON(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('one_batch', sa.Boolean(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', app.db.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['workflow_id'], ['workflow.id'], name=op.f('fk_sweep_workflow_id_workflow')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweep')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_sweep_idempotency_key'))
    )
    op.create_index(op.f('ix_sweep_workflow_id'), 'sweep', ['workflow_id'], unique=False)
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sweep_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('sweep_index', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_run_sweep_id'), ['sweep_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_run_sweep_id_sweep'), 'sweep', ['sweep_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_run_sweep_id_sweep'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_run_sweep_id'))
        batch_op.drop_column('sweep_index')
        batch_op.drop_column('sweep_id')
    op.drop_index(op.f('ix_sweep_workflow_id'), table_name='sweep')
    op.drop_table('sweep')
