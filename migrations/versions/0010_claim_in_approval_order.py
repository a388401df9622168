"""claim in approval order: the claimable index is the only one that gives a claim's order

A claim took the company's first due document by id. PostgreSQL could read that order from two indexes,
the primary key and `ix_document_claimable (company_id, id)`, and with fresh statistics it chose the
primary key: a scan from the oldest document of the whole table, filtering out every delivered one
ahead of the due ones (EXPLAIN ANALYZE: 520 buffers for one claim after 1,600 documents; it grows with
the history); with stale statistics it read every due document of the company and sorted them (a claim
per document: quadratic in the backlog). A claim now takes the oldest approval first (`approved_at`,
then `id`), an order only this index gives, so a claim reads one index entry whatever the statistics say.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 20:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMABLE = "status IN ('approved', 'transferring')"


def upgrade() -> None:
    op.drop_index('ix_document_claimable', table_name='document')
    op.create_index('ix_document_claimable', 'document', ['company_id', 'approved_at', 'id'], unique=False,
                    postgresql_where=sa.text(CLAIMABLE), sqlite_where=sa.text(CLAIMABLE))


def downgrade() -> None:
    op.drop_index('ix_document_claimable', table_name='document')
    op.create_index('ix_document_claimable', 'document', ['company_id', 'id'], unique=False,
                    postgresql_where=sa.text(CLAIMABLE), sqlite_where=sa.text(CLAIMABLE))
