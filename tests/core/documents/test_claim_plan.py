"""How a claim reads the documents table (issue #11, migration 0010), on SQLite and PostgreSQL: the
oldest approval first, read from ix_document_claimable alone (never the primary key over the delivered
history, never every due document sorted), whether the statistics are fresh or older than the backlog."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, update
from sqlmodel import select

from core.documents import intake, lifecycle
from core.documents.lifecycle import _claim_statements
from core.platform.db import unit_of_work
from core.platform.models import Company, Document, DocumentStatus, utcnow
from core.users import process
from testkit.samples import pdf

OWNER = "worker-1"
ACTOR = process("o@x.de")


def add_documents(engine: Engine, company_id: int, count: int, tag: str) -> list[int]:
    report = intake.intake(engine, company_id=company_id, actor=ACTOR,
                           files=[(f"{tag}-{n}.pdf", pdf(f"{tag}-{n}")) for n in range(count)])
    assert not report.rejected
    return [document.id for document in report.accepted if document.id is not None]


def analyze(engine: Engine, *, vacuum: bool = False) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if vacuum and conn.dialect.name == "postgresql" else "ANALYZE")


def claim_plan(engine: Engine, company_id: int) -> str:
    """The database's plan for a claim's read, on a transfer worker's connection, as one text."""
    conn = lifecycle.worker_connection(engine)
    try:
        postgres = conn.dialect.name == "postgresql"
        read, move = _claim_statements(postgres, by_ids=False)
        statement = move if postgres else read
        now = utcnow()
        sql, parameters = statement._parameters(conn, {"p_company_id": company_id, "p_owner": OWNER, "p_now": now,
                                                       "p_lease_until": now + timedelta(minutes=5), "p_id": 0})
        driver = conn.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        cursor.execute(("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + sql, parameters)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())
    finally:
        lifecycle.close_worker_connection(conn)


def bulk_documents(engine: Engine, company_id: int, count: int, status: DocumentStatus) -> None:
    """Document rows without content, by Core insert (a plan needs rows, not files)."""
    now = utcnow()
    rows = [{"company_id": company_id, "guid": str(uuid.uuid4()), "status": status.value, "file_name": "x.pdf",
             "original_name": "x.pdf", "size": 1, "sha256": uuid.uuid4().hex, "media_type": "application/pdf",
             "uploaded_by": "o@x.de", "uploaded_at": now, "updated_at": now,
             "approved_at": now if status != DocumentStatus.new else None} for _ in range(count)]
    with engine.begin() as conn:
        conn.execute(insert(Document), rows)


@pytest.mark.parametrize("statistics", ["fresh", "older than the backlog"])
def test_a_claim_reads_only_the_claimable_index(engine: Engine, company_id: int, statistics: str) -> None:
    """2,000 documents delivered, then a backlog of 400. Fresh statistics made PostgreSQL walk the primary key
    from the oldest delivered document (ordered by id); statistics from before the backlog made it read the
    whole backlog through ix_document_company_status and sort it, for every claim (without `enable_sort =
    off` on the worker's connection)."""
    with unit_of_work(engine) as s:
        companies = [c for c in s.exec(select(Company.id)).all() if c is not None][:4]
    for company in companies:
        bulk_documents(engine, company, 500, DocumentStatus.approved)
    with engine.begin() as conn:  # delivered since: the claimable index keeps its pages, without entries
        conn.execute(update(Document).values(status=DocumentStatus.delivered.value))
    if statistics != "fresh":
        analyze(engine, vacuum=True)  # as autovacuum after that pass: the statistics know no due document
    for company in companies:
        bulk_documents(engine, company, 400, DocumentStatus.approved)
    if statistics == "fresh":
        analyze(engine)
    plan = claim_plan(engine, company_id)
    # the claim's read of the documents: PostgreSQL's pick (the UPDATE then finds its row by primary key),
    # SQLite's SELECT (document_content is read by its key)
    reads = [line for line in plan.splitlines()
             if " on document document_1 " in line or re.search(r"\b(SCAN|SEARCH) document\b(?!_)", line)]
    assert reads and all("ix_document_claimable" in line for line in reads), plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def test_the_oldest_approval_is_claimed_first(engine: Engine, company_id: int) -> None:
    first_added, second_added = add_documents(engine, company_id, 2, "order")
    lifecycle.approve(engine, document_ids=[second_added], actor=ACTOR)
    lifecycle.approve(engine, document_ids=[first_added], actor=ACTOR)
    claimed = [lifecycle.claim(engine, company_id, OWNER, 60) for _ in range(2)]
    assert [c.document.id for c in claimed if c is not None] == [second_added, first_added]


def test_a_worker_connection_goes_back_to_the_pool_as_it_came(engine: Engine, company_id: int) -> None:
    conn = lifecycle.worker_connection(engine)
    raw = conn.connection.dbapi_connection
    assert raw is not None
    lifecycle.approve(engine, document_ids=add_documents(engine, company_id, 1, "pool"), actor=ACTOR)
    assert lifecycle.claim(conn, company_id, OWNER, 60) is not None
    lifecycle.close_worker_connection(conn)
    cursor = raw.cursor()
    if engine.dialect.name == "postgresql":  # no autocommit, sorting allowed again
        assert raw.autocommit is False
        cursor.execute("SHOW enable_sort")
        assert cursor.fetchone() == ("on",)
        raw.rollback()
    else:  # no transaction left open (SQLite's write lock)
        assert raw.in_transaction is False
    cursor.close()
