"""claimable index: a claim reads the company's backlog, not its delivered history

`ix_document_claimable` is a partial index on document (company_id, id) over the rows a claim can take
(approved, or transferring with an expired lease). Before it, PostgreSQL planned the claim as a scan of
the primary key that filtered out every delivered document ahead of the due ones, and SQLite read all of
the company's documents; both grew with the history.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 15:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMABLE = "status IN ('approved', 'transferring')"


def upgrade() -> None:
    op.create_index('ix_document_claimable', 'document', ['company_id', 'id'], unique=False,
                    postgresql_where=sa.text(CLAIMABLE), sqlite_where=sa.text(CLAIMABLE))


def downgrade() -> None:
    op.drop_index('ix_document_claimable', table_name='document')
