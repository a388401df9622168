"""Issue 9, "core functions do not check roles (only pages do)": every core function behind a destructive
or privileged action takes the acting user and checks the role as stored now, so a page that forgot its
check still cannot do it, and a role taken away while a browser tab is open counts at the next click.
Both databases; each refused call changes nothing (no row, no audit event, no call to DATEV)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import func, select

from core import companies, users
from core.alarms import views as alarm_views
from core.connections import access, disconnect, lexware_key, request_links, test_call
from core.connections.datev_login import start_login
from core.documents import intake, lifecycle
from core.platform.db import unit_of_work
from core.platform.models import (
    AppUser,
    AuditEvent,
    Company,
    ConnectionKind,
    Document,
    PendingAuthorization,
    Role,
    TransferAttempt,
)
from core.transfers import readiness
from core.transfers.engine import PassOptions, run_pass
from core.users import Actor, PermissionDenied, process
from testkit.rows import id_of
from testkit.samples import pdf
from tests.support.world import World, add_approved

ROOT = Path(__file__).resolve().parents[2]


def audit_count(world: World) -> int:
    with unit_of_work(world.engine) as s:
        return s.exec(select(func.count()).select_from(AuditEvent)).one()


def user_with(world: World, email: str, role: Role | None) -> Actor:
    return Actor.of(users.set_role(world.engine, actor=process("test"), email=email, role=role))


def refused(world: World, call: Callable[[], object]) -> None:
    before = audit_count(world)
    with pytest.raises(PermissionDenied) as denied:
        call()
    assert "Keine Berechtigung" in denied.value.message
    assert audit_count(world) == before


def lexware_company(world: World) -> int:
    with unit_of_work(world.engine) as s:
        return id_of(s.exec(select(Company).where(Company.interface == "lexware")).one())


def test_a_viewer_cannot_do_what_needs_a_bearbeiter(world: World) -> None:
    viewer = user_with(world, "leser@example.de", Role.viewer)
    report = intake.intake(world.engine, company_id=world.company_id, actor=Actor.of(world.operator),
                           files=[("Rechnung neu.pdf", pdf("neu"))])
    [new_id] = [id_of(d) for d in report.accepted]
    [approved_id] = add_approved(world, 1)
    calls_before = world.stats()

    refused(world, lambda: intake.intake(world.engine, company_id=world.company_id, actor=viewer,
                                         files=[("Fremd.pdf", pdf("fremd"))]))
    refused(world, lambda: lifecycle.approve(world.engine, document_ids=[new_id], actor=viewer))
    refused(world, lambda: lifecycle.delete_unapproved(world.engine, document_id=new_id, actor=viewer))
    refused(world, lambda: lifecycle.retry_failed(world.engine, document_id=approved_id, actor=viewer))
    refused(world, lambda: lifecycle.resolve_unresolved(world.engine, document_id=approved_id, actor=viewer,
                                                        decision="delivered", reason="geprüft"))
    refused(world, lambda: readiness.resume(world.engine, world.company_id, viewer))
    refused(world, lambda: run_pass(world.engine, world.settings, world.keyring,
                                    PassOptions(trigger="manual", actor=viewer)))
    refused(world, lambda: start_login(world.engine, world.settings, world.keyring, company_id=world.company_id,
                                       user=world_user(world, viewer), kind=ConnectionKind.one_off))
    with unit_of_work(world.engine) as s:
        statuses = dict(s.exec(select(Document.id, Document.status)).all())
        assert s.exec(select(TransferAttempt)).first() is None and s.exec(select(PendingAuthorization)).first() is None
    assert statuses == {new_id: "new", approved_id: "approved"}
    assert world.stats() == calls_before  # not one request reached the emulator


def world_user(world: World, actor: Actor) -> AppUser:
    with unit_of_work(world.engine) as s:
        user = s.exec(select(AppUser).where(AppUser.id == actor.user_id)).one()
        s.expunge(user)
    return user


def test_a_bearbeiter_cannot_do_what_needs_an_admin(world: World) -> None:
    world.request_token()
    connection_id = id_of(world.connection())
    operator = Actor.of(world.operator)
    link = request_links.create_link(world.engine, world.settings, world.keyring, company_id=world.company_id,
                                     actor=world.admin)
    calls_before = world.stats()

    refused(world, lambda: disconnect.delete_token(world.engine, world.settings, world.keyring,
                                                   connection_id=connection_id, actor=operator))
    refused(world, lambda: test_call.run_test(world.engine, world.settings, world.keyring,
                                              connection_id=connection_id, actor=operator))
    refused(world, lambda: access.retry_unclear_refresh(world.engine, connection_id=connection_id, actor=operator))
    refused(world, lambda: lexware_key.store_lexware_key(world.engine, world.settings, world.keyring,
                                                         company_id=lexware_company(world), api_key="key-1",
                                                         valid_until=None, actor=operator))
    refused(world, lambda: users.set_role(world.engine, actor=operator, email="operator@tokendesk.demo",
                                          role=Role.admin))
    refused(world, lambda: companies.create_company(world.engine, actor=operator, data=companies.CompanyInput(
        "Neue GmbH", "455148", "99", "datev", False, "")))
    refused(world, lambda: companies.set_archived(world.engine, actor=operator, company_id=world.company_id,
                                                  archived=True))
    refused(world, lambda: alarm_views.send_test_alarm(world.engine, world.settings, actor=operator))
    refused(world, lambda: request_links.create_link(world.engine, world.settings, world.keyring,
                                                     company_id=world.company_id, actor=world.operator))
    refused(world, lambda: request_links.withdraw_link(world.engine, link_id=link.link_id, actor=world.operator))
    refused(world, lambda: start_login(world.engine, world.settings, world.keyring, company_id=world.company_id,
                                       user=world.operator, kind=ConnectionKind.long_term))

    assert world.connection().has_token and world.stats() == calls_before  # nothing revoked, nothing called
    with unit_of_work(world.engine) as s:
        assert s.exec(select(AppUser.role).where(AppUser.email == "operator@tokendesk.demo")).one() == "operator"
        assert s.exec(select(Company.archived_at).where(Company.id == world.company_id)).one() is None
        assert s.exec(select(func.count()).select_from(Company).where(Company.name == "Neue GmbH")).one() == 0
    assert request_links.list_links(world.engine)[0].state == "offen"


def test_a_role_taken_away_counts_at_the_next_call(world: World) -> None:
    """The page ran with the admin's row as loaded; the role was removed since (another tab, another admin)."""
    world.request_token()
    second_admin = user_with(world, "zweite@example.de", Role.admin)
    users.set_role(world.engine, actor=Actor.of(world.admin), email="zweite@example.de", role=None)
    refused(world, lambda: disconnect.delete_token(world.engine, world.settings, world.keyring,
                                                   connection_id=id_of(world.connection()), actor=second_admin))
    assert world.connection().has_token
    result = disconnect.delete_token(world.engine, world.settings, world.keyring,
                                     connection_id=id_of(world.connection()), actor=Actor.of(world.admin))
    assert result.revoked and not world.connection().has_token  # the check lets the rightful admin through


def test_pages_and_ui_never_act_as_a_process() -> None:
    """A process actor passes every check; only core code and scripts may create one."""
    offenders = []
    for path in [*ROOT.joinpath("pages").glob("*.py"), *ROOT.joinpath("ui").glob("*.py"), ROOT / "streamlit_app.py"]:
        text = path.read_text()
        if re.search(r"\bprocess\(|\bActor\(|import .*\bprocess\b", text):
            offenders.append(path.name)
    assert offenders == []

