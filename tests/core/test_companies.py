"""Companies: DATEV number rules, uniqueness, archive, and the audit trail, on both databases."""

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from core import companies
from core.companies import CompanyInput, validate
from core.platform.db import unit_of_work
from core.platform.errors import ValidationFailed
from core.platform.models import AuditEvent, Company

GOOD = CompanyInput("Musterfirma GmbH", "455148", "1", "datev", True, "Rechnungseingang")


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"name": "   "}, "name", "Namen eingeben"),
        ({"name": "x" * 101}, "name", "höchstens 100"),
        ({"consultant_number": "123"}, "consultant_number", "4 bis 7 Ziffern"),
        ({"consultant_number": "12345678"}, "consultant_number", "4 bis 7 Ziffern"),
        ({"consultant_number": "0455148"}, "consultant_number", "ohne führende Null"),
        ({"consultant_number": "45514a"}, "consultant_number", "Ziffern"),
        ({"client_number": "0"}, "client_number", "1 bis 99999"),
        ({"client_number": "100000"}, "client_number", "1 bis 99999"),
        ({"client_number": ""}, "client_number", "Für DATEV ist die Mandanten-Nr. erforderlich"),
        ({"consultant_number": ""}, "consultant_number", "Für DATEV ist die Berater-Nr. erforderlich"),
        ({"interface": "ftp"}, "interface", "Schnittstelle"),
        ({"interface": "none", "auto_transfer": True}, "auto_transfer", "braucht eine Schnittstelle"),
        ({"interface": "lexware", "client_number": ""}, "client_number", "nur zusammen"),
        ({"default_document_type": "x" * 31}, "default_document_type", "höchstens 30"),
        ({"alarm_recipients": "buchhaltung@x.de, kaputt"}, "alarm_recipients", "kaputt"),
        ({"inbox_dir": "../etc"}, "inbox_dir", "„..“"),
    ],
)
def test_invalid_input_names_the_field_in_german(changes: dict, field: str, fragment: str) -> None:
    data = CompanyInput(**{**GOOD.__dict__, **changes})
    with pytest.raises(ValidationFailed) as info:
        validate(data)
    assert field in info.value.field_errors
    assert fragment in info.value.field_errors[field]


def test_alarm_recipients_are_normalised() -> None:
    valid = validate(CompanyInput(**{**GOOD.__dict__, "alarm_recipients": "A@x.de; b@y.de  c@z.de"}))
    assert valid.alarm_recipients == "a@x.de, b@y.de, c@z.de"


def test_valid_input_is_normalised() -> None:
    valid = validate(CompanyInput("  Muster   GmbH ", " 455148 ", "42", "datev", False, " Kasse "))
    assert (valid.name, valid.consultant_number, valid.client_number) == ("Muster GmbH", 455148, 42)
    assert valid.default_document_type == "Kasse"
    lex = validate(CompanyInput("Lex GmbH", "", "", "lexware", True, ""))
    assert lex.consultant_number is None and lex.client_number is None


def test_create_edit_archive_restore_with_audit(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        company = companies.create_company(s, actor="admin@x.de", data=GOOD)
        cid = company.id
    with unit_of_work(engine) as s:
        companies.update_company(s, actor="admin@x.de", company_id=cid,
                                 data=CompanyInput(**{**GOOD.__dict__, "name": "Musterfirma AG"}))
    with unit_of_work(engine) as s:
        archived = companies.set_archived(s, actor="admin@x.de", company_id=cid, archived=True)
        assert archived.archived_at is not None and archived.auto_transfer is False
    with unit_of_work(engine) as s:
        assert companies.list_companies(s) == []
        assert [c.id for c in companies.list_companies(s, include_archived=True)] == [cid]
        companies.set_archived(s, actor="admin@x.de", company_id=cid, archived=False)
    with unit_of_work(engine) as s:
        events = s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [e.action for e in events] == ["company.created", "company.updated", "company.archived",
                                          "company.restored"]
    assert events[1].before == {"name": "Musterfirma GmbH"} and events[1].after == {"name": "Musterfirma AG"}
    assert all(e.actor == "admin@x.de" and e.entity_id == str(cid) for e in events)


def test_unchanged_edit_writes_no_audit_event(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        cid = companies.create_company(s, actor="a", data=GOOD).id
    with unit_of_work(engine) as s:
        companies.update_company(s, actor="a", company_id=cid, data=GOOD)
    with unit_of_work(engine) as s:
        assert len(s.exec(select(AuditEvent)).all()) == 1


def test_one_company_per_consultant_client_pair_even_when_archived(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        cid = companies.create_company(s, actor="a", data=GOOD).id
        companies.set_archived(s, actor="a", company_id=cid, archived=True)
    with pytest.raises(ValidationFailed) as info:
        with unit_of_work(engine) as s:
            companies.create_company(s, actor="a", data=CompanyInput(**{**GOOD.__dict__, "name": "Zwilling"}))
    assert "archiviert" in info.value.field_errors["client_number"]
    with unit_of_work(engine) as s:
        assert len(s.exec(select(Company)).all()) == 1
        assert len(s.exec(select(AuditEvent)).all()) == 2  # created + archived, nothing half-written


def test_editing_into_a_taken_pair_changes_nothing(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        companies.create_company(s, actor="a", data=GOOD)
        other = companies.create_company(s, actor="a", data=CompanyInput("Zweite", "455148", "2", "datev"))
        other_id = other.id
    with pytest.raises(ValidationFailed):
        with unit_of_work(engine) as s:
            companies.update_company(s, actor="a", company_id=other_id,
                                     data=CompanyInput("Zweite neu", "455148", "1", "datev"))
    with unit_of_work(engine) as s:
        stored = s.get(Company, other_id)
        assert (stored.name, stored.client_number) == ("Zweite", 2)


def test_lexware_companies_without_numbers_do_not_collide(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        companies.create_company(s, actor="a", data=CompanyInput("Lex 1", "", "", "lexware"))
        companies.create_company(s, actor="a", data=CompanyInput("Lex 2", "", "", "lexware"))
    with unit_of_work(engine) as s:
        assert len(companies.list_companies(s)) == 2
