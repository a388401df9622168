"""The companies screen: admins create, edit and archive; other roles only read."""

from sqlmodel import select

from core.platform.db import get_engine, unit_of_work
from core.platform.models import AuditEvent, Company

PAGE = "pages/companies.py"


def companies_in(db_url: str) -> dict[str, Company]:
    with unit_of_work(get_engine(db_url)) as s:
        return {c.name: c for c in s.exec(select(Company)).all()}


def fill_new(at, **values):
    for field, value in values.items():
        at.text_input(key=f"company_new_{field}").input(value)
    return at


def edit_select(at):
    return next(box for box in at.selectbox if box.label == "Unternehmen auswählen")


def test_viewer_and_operator_see_the_list_read_only(app) -> None:
    for who in ("viewer", "operator"):
        at = app(who, PAGE).run()
        assert not at.exception
        table = at.dataframe[0].value
        assert "Musterfirma GmbH" in set(table["Name"])
        # the Übersicht's state (here: no token yet), not "aktiv" for a company that merely is not archived
        assert dict(zip(table["Name"], table["Status"], strict=True))["Demo Bau AG"] == "fehlt"
        assert len(at.text_input) == 0 and len(at.button) == 0
        assert "Nur Administratoren" in at.caption[0].value


def test_admin_creates_a_company(app, app_db) -> None:
    at = app("admin", PAGE).run()
    fill_new(at, name="Neue Firma GmbH", consultant_number="29098", client_number="17")
    at.button(key="company_new_submit").click().run()
    assert not at.exception
    assert any("„Neue Firma GmbH“ angelegt" in s.value for s in at.success)
    stored = companies_in(app_db)["Neue Firma GmbH"]
    assert (stored.consultant_number, stored.client_number, stored.interface) == (29098, 17, "datev")
    with unit_of_work(get_engine(app_db)) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "company.created",
                                                AuditEvent.entity_id == str(stored.id))).one()
    assert event.actor == "admin@tokendesk.demo"


def test_invalid_input_shows_german_errors_and_stores_nothing(app, app_db) -> None:
    before = companies_in(app_db)
    at = app("admin", PAGE).run()
    fill_new(at, name="Kaputt GmbH", consultant_number="12", client_number="0")
    at.button(key="company_new_submit").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Die Berater-Nr. besteht aus 4 bis 7 Ziffern" in errors
    assert "Die Mandanten-Nr. besteht aus 1 bis 5 Ziffern" in errors
    assert companies_in(app_db).keys() == before.keys()


def test_duplicate_pair_is_refused(app, app_db) -> None:
    at = app("admin", PAGE).run()
    fill_new(at, name="Zwilling GmbH", consultant_number="455148", client_number="1")
    at.button(key="company_new_submit").click().run()
    assert "bereits das Unternehmen „Musterfirma GmbH“" in " ".join(e.value for e in at.error)
    assert "Zwilling GmbH" not in companies_in(app_db)


def test_duplicate_name_is_refused(app, app_db) -> None:
    at = app("admin", PAGE).run()
    fill_new(at, name="musterfirma gmbh", consultant_number="455148", client_number="77")
    at.button(key="company_new_submit").click().run()
    assert not at.exception
    assert "Ein Unternehmen mit diesem Namen gibt es bereits (455148–1)" in " ".join(e.value for e in at.error)
    assert "musterfirma gmbh" not in companies_in(app_db)


def test_admin_edits_and_archives_a_company(app, app_db) -> None:
    target = companies_in(app_db)["Beispiel Handel KG"]
    at = app("admin", PAGE).run()
    edit_select(at).select(target.id).run()
    at.text_input(key=f"company_edit_{target.id}_name").input("Beispiel Handel GmbH & Co. KG")
    at.button(key=f"company_edit_{target.id}_submit").click().run()
    assert not at.exception
    assert "Beispiel Handel GmbH & Co. KG" in companies_in(app_db)

    assert edit_select(at).value == target.id  # the rename did not move the selection
    assert "Archivieren" in [p.proto.popover.label for p in at.get("popover")]  # a confirmation first
    assert at.button(key=f"company_archive_{target.id}").label == "Ja, archivieren"
    at.button(key=f"company_archive_{target.id}").click().run()
    assert not at.exception
    stored = companies_in(app_db)["Beispiel Handel GmbH & Co. KG"]
    assert stored.archived_at is not None
    assert "Beispiel Handel GmbH & Co. KG" not in set(at.dataframe[0].value["Name"])
    at.toggle(key="companies_show_archived").set_value(True).run()
    assert "archiviert" in set(at.dataframe[0].value["Status"])


def test_admin_imports_companies_from_csv_after_a_preview(app, app_db) -> None:
    csv = ("Name;Berater-Nr.;Mandanten-Nr.;Schnittstelle;Automatische Übertragung\n"
           "Import Eins GmbH;455148;20;DATEV;ja\n"
           "Import Zwei GmbH;455148;1;DATEV;nein\n").encode()
    at = app("admin", "pages/companies.py").run()
    at.file_uploader(key="companies_import_file").upload("firmen.csv", csv, "text/csv").run()
    at.button(key="companies_import_check").click().run()
    assert not at.exception, at.exception
    preview = next(f.value for f in at.dataframe if "Ergebnis" in f.value.columns)
    assert list(preview["Ergebnis"]) == ["wird angelegt",
                                         "Berater-Nr. und Mandanten-Nr. gehören schon zu „Musterfirma GmbH“."]
    assert "Import Eins GmbH" not in companies_in(app_db)  # nothing stored before the confirmation
    assert at.button(key="companies_import_confirm").label == "1 Unternehmen anlegen"
    at.button(key="companies_import_confirm").click().run()
    assert not at.exception, at.exception
    assert "1 Unternehmen angelegt." in [s.value for s in at.success]
    assert companies_in(app_db)["Import Eins GmbH"].auto_transfer


def test_only_admins_see_the_import(app, app_db) -> None:
    at = app("operator", "pages/companies.py").run()
    assert len(at.get("file_uploader")) == 0
