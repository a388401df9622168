"""The transfer history (core.transfers.history) on SQLite and PostgreSQL: filters, SQL paging, capped count,
CSV export, attempt detail, and the operator's retry / resolve decisions with their audit events."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col, select

from core.demo import seed_demo
from core.documents import intake, lifecycle
from core.platform.db import unit_of_work
from core.platform.errors import NotFound, UserFacingError, ValidationFailed
from core.platform.models import AuditEvent, Company, Document, DocumentStatus, TransferAttempt
from core.transfers import history
from core.transfers.engine import PassOptions, run_pass
from core.transfers.history import HistoryFilter
from core.users import process
from testkit.rows import id_of, present
from testkit.samples import pdf
from tests.support.world import World

BASE = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)




def company_ids(engine: Engine) -> dict[str, int]:
    seed_demo(engine)
    with unit_of_work(engine) as s:
        return {c.name: id_of(c) for c in s.exec(select(Company)).all()}


def add_document(engine: Engine, company_id: int, name: str) -> int:
    report = intake.intake(engine, company_id=company_id, actor=process("operator@x.de"), files=[(name, pdf(name))])
    assert not report.rejected, report.rejected
    return id_of(report.accepted[0])


def add_attempt(engine: Engine, document_id: int, company_id: int, started: datetime, *, outcome: str = "delivered",
                provider: str = "datev", trigger: str = "scheduler", triggered_by: str = "scheduler:test",
                error_text: str | None = None) -> int:
    with unit_of_work(engine) as s:
        row = TransferAttempt(document_id=document_id, company_id=company_id, provider=provider, trigger=trigger,
                              triggered_by=triggered_by, attempt_no=1, started_at=started,
                              finished_at=started + timedelta(seconds=2), outcome=outcome, error_text=error_text,
                              correlation_id=f"corr-{started.timestamp()}-{document_id}")
        s.add(row)
        s.flush()
        return id_of(row)


@pytest.fixture
def populated(engine: Engine) -> dict:
    """120 attempts over two companies; every 4th failed, every 5th manual; Lexware for the second company."""
    ids = company_ids(engine)
    muster, lex = ids["Musterfirma GmbH"], ids["Lexware Demo GmbH"]
    doc_m = add_document(engine, muster, "Rechnung M.pdf")
    doc_l = add_document(engine, lex, "Rechnung L.pdf")
    expected = []
    for i in range(120):
        company, doc, provider = (lex, doc_l, "lexware") if i % 3 == 0 else (muster, doc_m, "datev")
        outcome = "failed" if i % 4 == 0 else "delivered"
        trigger = "manual" if i % 5 == 0 else "scheduler"
        started = BASE + timedelta(minutes=i)
        attempt_id = add_attempt(engine, doc, company, started, outcome=outcome, provider=provider, trigger=trigger)
        expected.append({"id": attempt_id, "company": company, "outcome": outcome, "provider": provider,
                         "trigger": trigger, "started": started})
    return {"muster": muster, "lex": lex, "rows": expected}


def ids_newest_first(rows: list[dict]) -> list[int]:
    return [r["id"] for r in sorted(rows, key=lambda r: (r["started"], r["id"]), reverse=True)]


def test_pages_are_newest_first_without_overlap(engine: Engine, populated: dict) -> None:
    everything = ids_newest_first(populated["rows"])
    first = history.history_page(engine, HistoryFilter(), page=1, page_size=50)
    third = history.history_page(engine, HistoryFilter(), page=3, page_size=50)
    assert (first.total, first.capped, first.pages) == (120, False, 3)
    assert [r.id for r in first.rows] == everything[:50]
    assert [r.id for r in third.rows] == everything[100:]
    row = first.rows[0]
    assert row.company_name == "Musterfirma GmbH" and row.file_name == "Rechnung M.pdf"
    assert row.document_status == "new"


@pytest.mark.parametrize("name, make_filter, keep", [
    ("company", lambda p: HistoryFilter(company_id=p["lex"]), lambda r, p: r["company"] == p["lex"]),
    ("outcome", lambda p: HistoryFilter(outcomes=("failed",)), lambda r, p: r["outcome"] == "failed"),
    ("provider", lambda p: HistoryFilter(provider="datev"), lambda r, p: r["provider"] == "datev"),
    ("trigger", lambda p: HistoryFilter(trigger="manual"), lambda r, p: r["trigger"] == "manual"),
    ("period", lambda p: HistoryFilter(since=BASE + timedelta(minutes=10), until=BASE + timedelta(minutes=20)),
     lambda r, p: BASE + timedelta(minutes=10) <= r["started"] < BASE + timedelta(minutes=20)),
    ("combined", lambda p: HistoryFilter(company_id=p["muster"], outcomes=("failed",), trigger="manual"),
     lambda r, p: r["company"] == p["muster"] and r["outcome"] == "failed" and r["trigger"] == "manual"),
])
def test_filters(engine: Engine, populated: dict, name: str, make_filter, keep) -> None:
    f = make_filter(populated)
    wanted = ids_newest_first([r for r in populated["rows"] if keep(r, populated)])
    assert wanted, name  # the filter must select something for the test to mean anything
    page = history.history_page(engine, f, page=1, page_size=200)
    assert [r.id for r in page.rows] == wanted
    assert (page.total, page.capped) == (len(wanted), False)


def test_count_is_capped(engine: Engine, populated: dict) -> None:
    assert history.count(engine, HistoryFilter(), cap=100) == (100, True)
    assert history.count(engine, HistoryFilter(), cap=120) == (120, False)
    page = history.history_page(engine, HistoryFilter(), page=1, page_size=50, counted=(100, True))
    assert page.capped and page.pages == 2 and len(page.rows) == 50


def test_keyset_iteration_matches_the_order_also_with_equal_start_times(engine: Engine) -> None:
    ids = company_ids(engine)
    doc = add_document(engine, ids["Musterfirma GmbH"], "gleich.pdf")
    same = [add_attempt(engine, doc, ids["Musterfirma GmbH"], BASE) for _ in range(7)]
    later = add_attempt(engine, doc, ids["Musterfirma GmbH"], BASE + timedelta(hours=1))
    walked = [r.id for r in history.iter_rows(engine, HistoryFilter(), batch=3)]
    assert walked == [later, *sorted(same, reverse=True)]


def test_csv_export_for_german_excel(engine: Engine) -> None:
    ids = company_ids(engine)
    muster, lex = ids["Musterfirma GmbH"], ids["Lexware Demo GmbH"]
    doc = add_document(engine, muster, "-Umsätze; März.pdf")
    other = add_document(engine, lex, "anders.pdf")
    add_attempt(engine, doc, muster, datetime(2026, 7, 1, 10, 5, tzinfo=UTC), outcome="failed",
                triggered_by="=HYPERLINK(1)", error_text='DATEV lehnt ab: "Belegtyp"')
    add_attempt(engine, other, lex, datetime(2026, 7, 1, 11, 0, tzinfo=UTC), provider="lexware")
    data = history.csv_export(engine, HistoryFilter(company_id=muster))
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    assert rows[0] == list(history.CSV_HEADERS) and rows[0][:4] == ["Nr.", "Beginn", "Ende", "Unternehmen"]
    assert len(rows) == 2  # the Lexware row is filtered out
    line = dict(zip(rows[0], rows[1], strict=True))
    assert line["Beginn"] == "01.07.2026 12:05"  # Europe/Berlin, summer time
    assert line["Unternehmen"] == "Musterfirma GmbH" and line["Schnittstelle"] == "DATEV"
    assert line["Datei"] == "'-Umsätze_ März.pdf"  # a leading "-" would start an Excel formula
    assert line["Ausgelöst von"] == "'=HYPERLINK(1)"
    assert line["Ergebnis"] == "fehlgeschlagen" and line["Auslöser"] == "automatisch"
    assert line["Meldung"] == 'DATEV lehnt ab: "Belegtyp"'
    assert b"".join(history.iter_csv(engine, HistoryFilter(company_id=muster))) == data


def test_empty_export_has_the_header_only(engine: Engine) -> None:
    company_ids(engine)
    text = history.csv_export(engine, HistoryFilter()).decode("utf-8-sig")
    assert text == ";".join(history.CSV_HEADERS) + "\r\n"


def set_status(engine: Engine, document_id: int, status: DocumentStatus, **values: object) -> None:
    with unit_of_work(engine) as s:
        s.exec(update(Document).where(col(Document.id) == document_id).values(status=status.value, **values))


def load(engine: Engine, document_id: int) -> Document:
    with unit_of_work(engine) as s:
        doc = present(s.get(Document, document_id))
        s.expunge(doc)
        return doc


def audits(engine: Engine, action: str) -> list[AuditEvent]:
    with unit_of_work(engine) as s:
        rows = list(s.exec(select(AuditEvent).where(AuditEvent.action == action)).all())
        s.expunge_all()
        return rows


def test_retry_failed_goes_back_to_approved_with_audit(engine: Engine) -> None:
    ids = company_ids(engine)
    doc = add_document(engine, ids["Musterfirma GmbH"], "a.pdf")
    set_status(engine, doc, DocumentStatus.failed, attempts=6, next_attempt_at=BASE, last_error="abgelehnt")
    lifecycle.retry_failed(engine, document_id=doc, actor=process("operator@x.de"), reason="Belegtyp korrigiert")
    after = load(engine, doc)
    assert (after.status, after.attempts, after.next_attempt_at) == ("approved", 0, None)
    [event] = audits(engine, "document.retry")
    assert event.actor == "operator@x.de" and event.entity_id == str(doc)
    before = present(event.before)
    assert before["status"] == "failed" and before["attempts"] == 6
    assert event.after == {"status": "approved", "attempts": 0, "reason": "Belegtyp korrigiert"}
    assert event.detail == "Belegtyp korrigiert"

    with pytest.raises(UserFacingError, match="Nur fehlgeschlagene Belege"):  # approved now: not again
        lifecycle.retry_failed(engine, document_id=doc, actor=process("operator@x.de"), reason="")
    assert len(audits(engine, "document.retry")) == 1
    with pytest.raises(NotFound):
        lifecycle.retry_failed(engine, document_id=doc + 999, actor=process("operator@x.de"))


@pytest.mark.parametrize("decision, status", [("delivered", "delivered"), ("send_again", "approved")])
def test_resolve_unresolved(engine: Engine, decision: str, status: str) -> None:
    ids = company_ids(engine)
    doc = add_document(engine, ids["Lexware Demo GmbH"], "b.pdf")
    set_status(engine, doc, DocumentStatus.unresolved, attempts=1, last_error="HTTP 502")
    lifecycle.resolve_unresolved(engine, document_id=doc, actor=process("operator@x.de"), decision=decision,
                               reason="  In Lexware geprüft  ")
    after = load(engine, doc)
    assert after.status == status
    assert (after.delivered_at is not None) == (decision == "delivered")
    if decision == "send_again":
        assert after.attempts == 0 and after.next_attempt_at is None
    [event] = audits(engine, "document.resolved")
    assert event.after == {"status": status, "decision": decision, "reason": "In Lexware geprüft"}
    assert present(event.before)["status"] == "unresolved" and "In Lexware geprüft" in present(event.detail)


def test_resolve_needs_a_reason_and_a_decision(engine: Engine) -> None:
    ids = company_ids(engine)
    doc = add_document(engine, ids["Lexware Demo GmbH"], "c.pdf")
    set_status(engine, doc, DocumentStatus.unresolved)
    with pytest.raises(ValidationFailed) as caught:
        lifecycle.resolve_unresolved(engine, document_id=doc, actor=process("o@x.de"), decision="delivered", reason="   ")
    assert caught.value.field_errors == {"reason": "Bitte geben Sie einen Grund an (er steht im Audit-Protokoll)."}
    with pytest.raises(ValidationFailed) as caught:
        lifecycle.resolve_unresolved(engine, document_id=doc, actor=process("o@x.de"), decision="egal", reason="x" * 401)
    assert set(caught.value.field_errors) == {"decision", "reason"}
    assert "höchstens 400 Zeichen" in caught.value.field_errors["reason"]
    assert load(engine, doc).status == "unresolved" and audits(engine, "document.resolved") == []
    set_status(engine, doc, DocumentStatus.failed)
    with pytest.raises(UserFacingError, match="Nur ungeklärte Belege"):
        lifecycle.resolve_unresolved(engine, document_id=doc, actor=process("o@x.de"), decision="delivered", reason="geprüft")
    assert load(engine, doc).status == "failed"


def test_attempt_detail_has_the_http_lines_of_a_real_upload(world: World) -> None:
    assert world.request_token().ok
    doc = add_document(world.engine, world.company_id, "Rechnung 1.pdf")
    assert lifecycle.approve(world.engine, document_ids=[doc], actor=process("o@x.de")) == 1
    summary = run_pass(world.engine, world.settings, world.keyring,
                       PassOptions(trigger="manual", actor=process("operator@x.de"), document_ids=[doc]))
    assert summary.delivered == 1
    [row] = history.history_page(world.engine, HistoryFilter(trigger="manual")).rows
    detail = history.attempt_detail(world.engine, row.id)
    guid = load(world.engine, doc).guid
    assert detail.row.outcome == "delivered" and detail.row.document_status == "delivered"
    assert detail.row.triggered_by == "operator@x.de"
    assert [(e.method, e.status) for e in detail.http_lines] == [("PUT", 201)]
    assert re.fullmatch(rf".*/clients/455148-1/documents/{guid}", detail.http_lines[0].path)
    with pytest.raises(NotFound):
        history.attempt_detail(world.engine, row.id + 1000)
