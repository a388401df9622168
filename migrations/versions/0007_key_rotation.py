"""key rotation while processes run: the recorded primary key, and the key set and kind of each process

`key_check.primary_since` marks the primary key (stamped by `rotate-keys`; NULL for every key before
this revision, which means "no primary recorded yet"). `scheduler_heartbeat.kind` tells scheduler and
dashboard rows apart (existing rows are schedulers); `key_ids` is the key set a process holds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('key_check', schema=None) as batch_op:
        batch_op.add_column(sa.Column('primary_since', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('scheduler_heartbeat', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=20), nullable=False, server_default='scheduler'))
        batch_op.add_column(sa.Column('key_ids', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scheduler_heartbeat', schema=None) as batch_op:
        batch_op.drop_column('key_ids')
        batch_op.drop_column('kind')

    with op.batch_alter_table('key_check', schema=None) as batch_op:
        batch_op.drop_column('primary_since')
