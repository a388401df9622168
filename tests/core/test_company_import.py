"""core.company_import on both databases: preview with German verdicts per row, nothing stored before the
confirmation, then the valid rows in one transaction with their audit events; admins only."""

from __future__ import annotations

import pytest
from sqlmodel import select

from core import company_import
from core.companies import CompanyInput
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import AuditEvent, Company
from core.users import Actor, PermissionDenied
from tests.support.world import World

CSV = """Name;Berater-Nr.;Mandanten-Nr.;Schnittstelle;Automatische Übertragung
Neue Firma GmbH;455148;10;DATEV;ja
Zweite Firma KG;455148;11;datev;nein
;455148;12;DATEV;ja
Doppelt AG;455148;10;DATEV;ja
Alt GmbH;455148;1;DATEV;nein
Lexware Neu GmbH;;;Lexware;nein
Falsch GmbH;455148;13;SAP;vielleicht
musterfirma  GMBH;455148;20;DATEV;nein
neue firma gmbh;455148;21;DATEV;nein
""".encode("cp1252")


def names(world: World) -> set[str]:
    with unit_of_work(world.engine) as s:
        return {c.name for c in s.exec(select(Company)).all()}


def test_preview_then_import(world: World) -> None:
    admin = Actor.of(world.admin)
    before = names(world)
    rows = company_import.preview(world.engine, world.settings, CSV, actor=admin)
    assert names(world) == before  # the preview stores nothing
    verdicts = {r.line: r.errors for r in rows}
    assert [r.line for r in rows if r.ok] == [2, 3, 7]
    assert any(e.startswith("Name:") for e in verdicts[4])
    assert verdicts[5] == ("Berater-Nr. und Mandanten-Nr. stehen schon in Zeile 2.",)
    assert verdicts[6] == ("Berater-Nr. und Mandanten-Nr. gehören schon zu „Musterfirma GmbH“.",)
    assert "Schnittstelle „SAP“ unbekannt (DATEV, Lexware oder keine)." in verdicts[8]
    assert "Automatische Übertragung „vielleicht“: bitte ja oder nein." in verdicts[8]
    assert verdicts[9] == ("Ein Unternehmen „musterfirma GMBH“ gibt es bereits.",)  # case and spaces aside
    assert verdicts[10] == ("Der Name „neue firma gmbh“ steht schon in Zeile 2.",)
    assert company_import.import_rows(world.engine, rows, actor=admin) == 3
    assert names(world) == before | {"Neue Firma GmbH", "Zweite Firma KG", "Lexware Neu GmbH"}
    with unit_of_work(world.engine) as s:
        created = s.exec(select(Company).where(Company.name == "Neue Firma GmbH")).one()
        assert created.auto_transfer and created.client_number == 10
        assert len(s.exec(select(AuditEvent).where(AuditEvent.action == "company.created")).all()) == len(before) + 3


def test_unreadable_files_and_other_roles(world: World) -> None:
    admin = Actor.of(world.admin)
    with pytest.raises(UserFacingError, match="Es fehlen Spalten"):
        company_import.preview(world.engine, world.settings, b"Firma,Nummer\nA,1\n", actor=admin)
    with pytest.raises(UserFacingError, match="leer"):
        company_import.preview(world.engine, world.settings, b"", actor=admin)
    with pytest.raises(PermissionDenied):
        company_import.preview(world.engine, world.settings, CSV, actor=Actor.of(world.operator))
    rows = company_import.preview(world.engine, world.settings, CSV, actor=admin)
    with pytest.raises(PermissionDenied):
        company_import.import_rows(world.engine, rows, actor=Actor.of(world.operator))


def test_a_name_twice_in_one_import_stores_nothing_even_past_the_preview(world: World) -> None:
    """The transaction checks each name against the companies it created before (one read of the names per
    import, kept current as it goes), so two rows of one name never both land, whatever the preview said."""
    before = names(world)
    rows = [company_import.ImportRow(2, CompanyInput("Neu GmbH", "455148", "30", "datev"), ()),
            company_import.ImportRow(3, CompanyInput("neu  GMBH", "455148", "31", "datev"), ())]
    with pytest.raises(ValidationFailed) as info:
        company_import.import_rows(world.engine, rows, actor=Actor.of(world.admin))
    assert "gibt es bereits (455148–30)" in info.value.field_errors["name"]
    assert names(world) == before
