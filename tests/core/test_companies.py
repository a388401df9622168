"""Companies: DATEV number rules, uniqueness, archive, and the audit trail, on both databases."""

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from core import companies
from core.companies import CompanyInput, validate
from core.platform import audit
from core.platform.db import unit_of_work
from core.platform.errors import NotFound, ValidationFailed
from core.platform.models import AuditEvent, Company
from core.users import process
from testkit.rows import id_of, present

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
    company = companies.create_company(engine, actor=process("admin@x.de"), data=GOOD)
    cid = company.id
    assert cid is not None and company.name == "Musterfirma GmbH"  # usable after its transaction
    companies.update_company(engine, actor=process("admin@x.de"), company_id=cid,
                             data=CompanyInput(**{**GOOD.__dict__, "name": "Musterfirma AG"}))
    archived = companies.set_archived(engine, actor=process("admin@x.de"), company_id=cid, archived=True)
    assert archived.archived_at is not None and archived.auto_transfer is False
    assert companies.list_companies(engine) == []
    assert [c.id for c in companies.list_companies(engine, include_archived=True)] == [cid]
    restored = companies.set_archived(engine, actor=process("admin@x.de"), company_id=cid, archived=False)
    assert restored.archived_at is None and companies.get_company(engine, cid).archived_at is None
    with unit_of_work(engine) as s:
        events = s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    assert [e.action for e in events] == ["company.created", "company.updated", "company.archived",
                                          "company.restored"]
    assert events[1].before == {"name": "Musterfirma GmbH"} and events[1].after == {"name": "Musterfirma AG"}
    assert all(e.actor == "admin@x.de" and e.entity_id == str(cid) for e in events)
    newest_first = audit.recent_events(engine, entity_type="company", entity_id=cid)
    assert [e.id for e in newest_first] == [e.id for e in reversed(events)]
    assert audit.recent_events(engine, entity_type="company", entity_id=cid + 1) == []
    assert [e.action for e in audit.recent_events(engine, limit=1)] == ["company.restored"]


def test_unknown_company_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        companies.get_company(engine, 4711)
    with pytest.raises(NotFound):
        companies.update_company(engine, actor=process("a"), company_id=4711, data=GOOD)
    with pytest.raises(NotFound):
        companies.set_archived(engine, actor=process("a"), company_id=4711, archived=True)
    assert audit.recent_events(engine) == []


def test_unchanged_edit_writes_no_audit_event(engine: Engine) -> None:
    cid = id_of(companies.create_company(engine, actor=process("a"), data=GOOD))
    companies.update_company(engine, actor=process("a"), company_id=cid, data=GOOD)
    with unit_of_work(engine) as s:
        assert len(s.exec(select(AuditEvent)).all()) == 1


def test_one_company_per_consultant_client_pair_even_when_archived(engine: Engine) -> None:
    cid = id_of(companies.create_company(engine, actor=process("a"), data=GOOD))
    companies.set_archived(engine, actor=process("a"), company_id=cid, archived=True)
    with pytest.raises(ValidationFailed) as info:
        companies.create_company(engine, actor=process("a"), data=CompanyInput(**{**GOOD.__dict__, "name": "Zwilling"}))
    assert "archiviert" in info.value.field_errors["client_number"]
    with unit_of_work(engine) as s:
        assert len(s.exec(select(Company)).all()) == 1
        assert len(s.exec(select(AuditEvent)).all()) == 2  # created + archived, nothing half-written


def test_editing_into_a_taken_pair_changes_nothing(engine: Engine) -> None:
    companies.create_company(engine, actor=process("a"), data=GOOD)
    other_id = id_of(companies.create_company(engine, actor=process("a"), data=CompanyInput("Zweite", "455148", "2", "datev")))
    with pytest.raises(ValidationFailed):
        companies.update_company(engine, actor=process("a"), company_id=other_id,
                                 data=CompanyInput("Zweite neu", "455148", "1", "datev"))
    with unit_of_work(engine) as s:
        stored = present(s.get(Company, other_id))
        assert (stored.name, stored.client_number) == ("Zweite", 2)
        assert len(s.exec(select(AuditEvent)).all()) == 2  # the two creations only


def test_a_name_is_one_company_case_and_spaces_aside_archived_ones_too(engine: Engine) -> None:
    """Review finding: a second "Musterfirma GmbH" was accepted, and every selector, "Heute zu tun" and the alarms
    name companies by their name alone: a Beleg could go to the wrong one."""
    first = id_of(companies.create_company(engine, actor=process("a"), data=GOOD))
    taken = " ".join(GOOD.name.upper().split()).replace(" ", "  ")
    with pytest.raises(ValidationFailed) as info:
        companies.create_company(engine, actor=process("a"), data=CompanyInput(taken, "455148", "77", "datev"))
    assert info.value.field_errors["name"].startswith("Ein Unternehmen mit diesem Namen gibt es bereits (455148–1)")
    second = id_of(companies.create_company(engine, actor=process("a"), data=CompanyInput("Zweite", "455148", "2",
                                                                                           "datev")))
    with pytest.raises(ValidationFailed):  # nor by renaming another one
        companies.update_company(engine, actor=process("a"), company_id=second,
                                 data=CompanyInput(GOOD.name.lower(), "455148", "2", "datev"))
    companies.update_company(engine, actor=process("a"), company_id=first,  # its own name, newly spelt: fine
                             data=CompanyInput(GOOD.name.upper(), GOOD.consultant_number, GOOD.client_number, "datev"))
    companies.set_archived(engine, actor=process("a"), company_id=first, archived=True)
    with pytest.raises(ValidationFailed) as info:
        companies.create_company(engine, actor=process("a"), data=CompanyInput(GOOD.name, "455148", "78", "datev"))
    assert "archiviert" in info.value.field_errors["name"]
    with unit_of_work(engine) as s:
        assert len(s.exec(select(Company)).all()) == 2
        twin = Company(name="Zweite", consultant_number=455148, client_number=3, interface="datev")  # from before
        s.add(twin)
    companies.update_company(engine, actor=process("a"), company_id=id_of(twin),  # still editable, name kept
                             data=CompanyInput("Zweite", "455148", "3", "datev", False))


def test_lexware_companies_without_numbers_do_not_collide(engine: Engine) -> None:
    companies.create_company(engine, actor=process("a"), data=CompanyInput("Lex 1", "", "", "lexware"))
    companies.create_company(engine, actor=process("a"), data=CompanyInput("Lex 2", "", "", "lexware"))
    assert len(companies.list_companies(engine)) == 2
