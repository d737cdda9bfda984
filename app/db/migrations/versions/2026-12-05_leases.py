"""lease: which gateway replica follows each InvokeAI server (GATEWAY_CLUSTER)

Revision ID: 7d2f4b6a8c31
Revises: 5c1e7a9b3d20
Create Date: 2026-12-05 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app.db.tables


revision: str = '7d2f4b6a8c31'
down_revision: str | None = '5c1e7a9b3d20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('lease',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('expires_at', app.db.tables.UTCDateTime(), nullable=False),
    sa.Column('healthy', sa.Boolean(), nullable=False),
    sa.Column('unfinished', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_lease'))
    )


def downgrade() -> None:
    op.drop_table('lease')
