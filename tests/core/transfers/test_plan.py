"""The dry run (core.transfers.plan): what would be sent where, and why a document would wait, without
any HTTP. Tokens come from the emulator through core, as a user would request them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, update
from sqlmodel import col, select

from core.connections.store import find as connection_in_slot
from core.documents import intake as document_intake
from core.documents import lifecycle
from core.platform.db import unit_of_work
from core.platform.models import Company, ConnectionKind, Document, HttpLogEntry, Provider, utcnow
from core.transfers.engine import PassOptions, run_pass
from core.transfers.plan import plan
from core.users import process
from testkit.rows import id_of, ids_of, present
from testkit.samples import pdf
from tests.support.world import World


def intake(world: World, name: str, company_id: int | None = None, **kwargs: str) -> Document:
    report = document_intake.intake(world.engine, company_id=company_id or world.company_id, actor=process("o@x.de"),
                              files=[(name, pdf(name))], **kwargs)
    assert not report.rejected, report.rejected
    return report.accepted[0]


def approve(world: World, *docs: Document) -> None:
    lifecycle.approve(world.engine, document_ids=ids_of(docs), actor=process("o@x.de"))


def http_lines(world: World) -> int:
    with unit_of_work(world.engine) as s:
        return int(s.exec(select(func.count()).select_from(HttpLogEntry)).one())


def lexware_company(world: World) -> int:
    with unit_of_work(world.engine) as s:
        return present(s.exec(select(Company.id).where(Company.name == "Lexware Demo GmbH")).one())


def test_datev_line_names_target_method_path_and_metadata(world: World) -> None:
    assert world.request_token().ok
    doc = intake(world, "Rechnung: März?.pdf", document_type="Rechnungseingang", note="Bitte buchen")
    approve(world, doc)
    before = http_lines(world)
    [line] = plan(world.engine, world.settings, [id_of(doc)])
    assert http_lines(world) == before  # a dry run makes no HTTP call
    assert line.will_send and line.waits is None
    assert (line.company_name, line.provider) == ("Musterfirma GmbH", "DATEV")
    assert line.target == "Mandant 455148-1 (Musterfirma GmbH)"
    assert (line.method, line.path) == ("PUT", f"/clients/455148-1/documents/{doc.guid}")
    assert (line.document_type, line.note) == ("Rechnungseingang", "Bitte buchen")
    assert line.file_name == "Rechnung_ März_.pdf"  # as DATEV stores it
    assert line.size == doc.size and line.media_type == "application/pdf"


def test_the_plan_matches_what_the_transfer_then_does(world: World) -> None:
    assert world.request_token().ok
    doc = intake(world, "Beleg.pdf")
    approve(world, doc)
    [line] = plan(world.engine, world.settings, [id_of(doc)])
    run_pass(world.engine, world.settings, world.keyring,
             PassOptions(trigger="manual", actor=process("o@x.de"), document_ids=[id_of(doc)]))
    with unit_of_work(world.engine) as s:
        paths = [e.path for e in s.exec(select(HttpLogEntry).where(HttpLogEntry.purpose == "upload"))]
    assert len(paths) == 1 and paths[0].endswith(line.path)


def test_waiting_reasons_without_token_for_new_and_for_backoff(world: World) -> None:
    lex = lexware_company(world)
    waiting = intake(world, "a.pdf")
    fresh = intake(world, "b.pdf")
    later = intake(world, "c.pdf")
    lex_doc = intake(world, "d.pdf", company_id=lex)
    approve(world, waiting, later, lex_doc)
    lines = {p.document_id: p for p in plan(world.engine, world.settings,
                                            [id_of(waiting), id_of(fresh), id_of(later), id_of(lex_doc), 999_999])}
    assert set(lines) == {id_of(waiting), id_of(fresh), id_of(later), id_of(lex_doc)}  # unknown ids are left out
    assert lines[id_of(waiting)].waits == "Token fehlt" and not lines[id_of(waiting)].will_send
    assert lines[id_of(fresh)].waits == "nicht freigegeben (Status „neu“)"
    assert lines[id_of(lex_doc)].target == "Lexware Office (Lexware Demo GmbH)"
    assert (lines[id_of(lex_doc)].method, lines[id_of(lex_doc)].path) == ("POST", "/v1/files")
    assert lines[id_of(lex_doc)].provider == "Lexware Office" and lines[id_of(lex_doc)].waits == "API-Schlüssel fehlt"

    assert world.request_token().ok
    with unit_of_work(world.engine) as s:
        s.exec(update(Document).where(col(Document.id) == id_of(later))
               .values(next_attempt_at=utcnow() + timedelta(hours=1)))
    lines = {p.document_id: p for p in plan(world.engine, world.settings, [id_of(waiting), id_of(later)])}
    assert lines[id_of(waiting)].will_send
    assert present(lines[id_of(later)].waits).startswith("nächster Versuch ab ")


def test_paused_company_waits_with_the_reason(world: World) -> None:
    assert world.request_token().ok
    doc = intake(world, "p.pdf")
    approve(world, doc)
    with unit_of_work(world.engine) as s:
        company = present(s.get(Company, world.company_id))
        company.paused_at, company.paused_reason = utcnow() + timedelta(seconds=1), "DATEV verweigert den Zugriff"
        s.add(company)
    [line] = plan(world.engine, world.settings, [id_of(doc)])
    assert line.waits == "pausiert: DATEV verweigert den Zugriff"


def test_one_off_slot_uses_the_users_own_login(world: World) -> None:
    assert world.request_token().ok  # a long-term token exists, but the one-off slot is separate
    doc = intake(world, "o.pdf")
    approve(world, doc)
    slot = f"one_off:{world.operator.id}"
    [line] = plan(world.engine, world.settings, [id_of(doc)], slot)
    assert line.waits == "Token fehlt"
    assert connection_in_slot(world.engine, world.company_id, Provider.datev, slot) is None
    assert world.request_token(world.operator, ConnectionKind.one_off).ok
    [line] = plan(world.engine, world.settings, [id_of(doc)], slot)
    assert line.will_send
    found = connection_in_slot(world.engine, world.company_id, Provider.datev, slot)
    assert found is not None and found.kind == "one_off" and found.owner_user_id == world.operator.id
