"""overview navigation: the deep link kept across sign-in, and where a DATEV login continues

`sign_in_return` holds the page a signed-out browser asked for until it has signed in (one row per
browser, minutes long). `pending_authorization.return_to` is the page and selection a login started
from Übertragen returns to.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'sign_in_return',
        sa.Column('browser_hash', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=300), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('browser_hash'),
    )
    with op.batch_alter_table('sign_in_return', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sign_in_return_expires_at'), ['expires_at'], unique=False)

    with op.batch_alter_table('pending_authorization', schema=None) as batch_op:
        batch_op.add_column(sa.Column('return_to', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pending_authorization', schema=None) as batch_op:
        batch_op.drop_column('return_to')

    with op.batch_alter_table('sign_in_return', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sign_in_return_expires_at'))
    op.drop_table('sign_in_return')
