"""access left at the provider: a deleted token whose access the provider may still hold

Deleting a token erases it here and asks DATEV to revoke the grant. When DATEV does not confirm the
revocation (an error, a timeout: it may or may not have happened), or for a Lexware Office API key (Lexware
has no revocation through its API), the access may still exist there. Until now only the one-time message
and the audit log said so; the card showed "widerrufen". `connection.left_at_provider` keeps what the
person has to do at the provider, for the card, until the row gets a token again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 23:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.add_column(sa.Column('left_at_provider', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.drop_column('left_at_provider')
