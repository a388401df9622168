"""request links: the Anforderungslink (hash only), tries per client address, link logins, direct messages

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'request_link',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('company_id', sa.Integer(), nullable=False),
        sa.Column('created_by_user_id', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=254), nullable=False),
        sa.Column('created_by_name', sa.String(length=200), nullable=False),
        sa.Column('recipient', sa.String(length=254), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('succeeded', sa.Boolean(), nullable=True),
        sa.Column('result', sa.String(length=500), nullable=True),
        sa.Column('grantor_name', sa.String(length=200), nullable=True),
        sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('withdrawn_by', sa.String(length=254), nullable=True),
        sa.ForeignKeyConstraint(['company_id'], ['company.id']),
        sa.ForeignKeyConstraint(['created_by_user_id'], ['app_user.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index(op.f('ix_request_link_company_id'), 'request_link', ['company_id'], unique=False)
    op.create_index(op.f('ix_request_link_expires_at'), 'request_link', ['expires_at'], unique=False)
    op.create_table(
        'link_attempt',
        sa.Column('address_hash', sa.String(length=64), nullable=False),
        sa.Column('window_started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('address_hash'),
    )
    with op.batch_alter_table('pending_authorization', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_link_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('browser_hash', sa.String(length=64), nullable=True))
        batch_op.create_foreign_key('fk_pending_authorization_request_link', 'request_link', ['request_link_id'],
                                    ['id'])
    with op.batch_alter_table('alarm_sent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('direct_to', sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column('request_link_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_via', sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.drop_column('requested_via')
    with op.batch_alter_table('alarm_sent', schema=None) as batch_op:
        batch_op.drop_column('request_link_id')
        batch_op.drop_column('direct_to')
    with op.batch_alter_table('pending_authorization', schema=None) as batch_op:
        batch_op.drop_constraint('fk_pending_authorization_request_link', type_='foreignkey')
        batch_op.drop_column('browser_hash')
        batch_op.drop_column('request_link_id')
    op.drop_index(op.f('ix_request_link_expires_at'), table_name='request_link')
    op.drop_index(op.f('ix_request_link_company_id'), table_name='request_link')
    op.drop_table('link_attempt')
    op.drop_table('request_link')
