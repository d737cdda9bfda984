"""openai mapping: how a workflow is served by the /v1 images API

Revision ID: 8e4f2a6c1d90
Revises: 5c1d0e9a7b3f
Create Date: 2026-12-05 00:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app.db.tables


revision: str = '8e4f2a6c1d90'
down_revision: str | None = '5c1d0e9a7b3f'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('openaimapping',
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('updated_at', app.db.tables.UTCDateTime(), nullable=False),
    sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('exposed', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['workflow_id'], ['workflow.id'], name=op.f('fk_openaimapping_workflow_id_workflow')),
    sa.PrimaryKeyConstraint('workflow_id', name=op.f('pk_openaimapping'))
    )


def downgrade() -> None:
    op.drop_table('openaimapping')
