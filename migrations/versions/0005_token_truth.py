"""token truth: derived refresh expiry, access-token lifetime, an unclear refresh, the requested scope

Existing connections keep what they have: refresh_expiry_derived false, access_ttl_seconds unknown (the
configured skew applies), no unclear refresh. Pending logins created before this revision carry no scope.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.add_column(sa.Column('access_ttl_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('refresh_expiry_derived', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('refresh_unclear_since', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('pending_authorization', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=1000), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('pending_authorization', schema=None) as batch_op:
        batch_op.drop_column('scope')
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.drop_column('refresh_unclear_since')
        batch_op.drop_column('refresh_expiry_derived')
        batch_op.drop_column('access_ttl_seconds')
