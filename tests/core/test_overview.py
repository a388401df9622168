"""core.overview on both databases: the companies' rows, the states on the tiles, "Heute zu tun" with the
engine's own reason, the company detail, and the pure ranking and filters."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from core.connections import store
from core.connections.health import Health
from core.documents import intake, lifecycle
from core.overview import (
    Action,
    CompanyRow,
    State,
    _refusal,
    company_audit,
    company_detail,
    company_rows,
    filter_rows,
    overview,
    todo,
    todo_item,
)
from core.platform.models import utcnow
from core.transfers.engine import PassOptions, run_pass
from core.transfers.readiness import pause, waiting_reasons
from core.users import process
from testkit.rows import ids_of
from testkit.samples import pdf
from tests.support.world import World, add_approved


def deliver(world: World) -> None:
    run_pass(world.engine, world.settings, world.keyring,
             PassOptions(trigger="scheduler", actor=process("scheduler:test"), only_auto_transfer=True))


def test_rows_carry_health_binding_counts_and_last_delivery(world: World) -> None:
    world.request_token()
    add_approved(world, 2)
    deliver(world)
    report = intake.intake(world.engine, company_id=world.company_id, actor=process("operator@x.de"),
                           files=[("später.pdf", pdf("later"))])
    lifecycle.approve(world.engine, document_ids=ids_of(report.accepted), actor=process("operator@x.de"))
    rows = {r.name: r for r in company_rows(world.engine, world.settings)}
    assert list(rows) == ["Beispiel Handel KG", "Demo Bau AG", "Lexware Demo GmbH", "Musterfirma GmbH"]
    muster = rows["Musterfirma GmbH"]
    assert muster.state == State.active and muster.bound_data_set == "455148–1"
    assert muster.grantor_name == "Max Mustermann" and muster.days_left is not None and muster.days_left > 700
    assert muster.waiting == 1 and muster.failed == 0 and muster.reason is None and muster.can_transfer == "ja"
    assert muster.last_delivered_at is not None and utcnow() - muster.last_delivered_at < timedelta(minutes=5)
    assert rows["Demo Bau AG"].state == State.missing and rows["Demo Bau AG"].reason == "Token fehlt"
    assert rows["Lexware Demo GmbH"].interface == "Lexware Office"


def test_todo_uses_the_engines_reason_and_puts_held_documents_first(world: World) -> None:
    world.request_token()
    add_approved(world, 3)
    row = world.connection()
    assert row.id is not None
    store.mark_invalid(world.engine, row.id, expected_version=row.version, reason="invalid_grant")
    data = overview(world.engine, world.settings)
    first = data.todo[0]
    assert first.company_id == world.company_id and first.action == Action.request_token
    # the very text readiness.waiting_reason gives the transfer engine
    assert first.reason == waiting_reasons(world.engine, world.settings, [world.company_id])[world.company_id]
    assert first.reason == "Token ungültig" and "3 Belege warten" in first.explanation
    assert data.tiles[State.invalid] == 1 and data.tiles[State.missing] == 3 and data.waiting == 3
    # The companies without a token follow (no documents wait for them); Lexware's fix is a new key.
    by_name = {item.name: item for item in data.todo}
    assert by_name["Lexware Demo GmbH"].action == Action.store_key  # none stored yet: "hinterlegen", not "ersetzen"
    assert [i.name for i in data.todo][1:] == ["Beispiel Handel KG", "Demo Bau AG", "Lexware Demo GmbH"]


def test_paused_company_with_a_good_token_is_paused(world: World) -> None:
    world.request_token()
    add_approved(world, 1)
    pause(world.engine, world.company_id, "DATEV 403: Belege online fehlt", "system:test")
    data = overview(world.engine, world.settings)
    row = next(r for r in data.rows if r.company_id == world.company_id)
    assert row.state == State.paused and row.reason == "pausiert: DATEV 403: Belege online fehlt"
    assert data.todo[0].company_id == world.company_id and data.todo[0].action == Action.resume


def test_company_detail_lists_open_documents_with_reasons_and_attempts(world: World) -> None:
    add_approved(world, 2)
    detail = company_detail(world.engine, world.settings, world.company_id)
    assert detail.row is not None and detail.open_total == 2
    assert {d.hint for d in detail.open_documents} == {"wartet: Token fehlt"}
    world.request_token()
    deliver(world)
    detail = company_detail(world.engine, world.settings, world.company_id)
    assert detail.open_documents == [] and len(detail.attempts) == 2
    assert {a.outcome for a in detail.attempts} == {"delivered"}
    actions = [line.action for line in company_audit(world.engine, world.company_id)]
    assert "token.requested" in actions and "company.created" in actions


def row(name: str, **facts) -> CompanyRow:
    base = CompanyRow(company_id=hash(name) % 10_000, name=name, interface="DATEV", state=State.active,
                      health=Health.active, bound_data_set="455148–1", grantor_name=None, valid_until=None,
                      days_left=None, last_refresh_at=None, last_delivered_at=None, waiting=0, failed=0, unresolved=0,
                      reason=None, paused_reason=None, invalid_reason=None, refresh_unclear_since=None)
    return replace(base, **facts)


def test_todo_order_most_urgent_first() -> None:
    now = utcnow()
    rows = [
        row("ok"),
        row("unbound", state=State.unbound),
        row("expiring late", state=State.expiring, health=Health.expiring, days_left=20, valid_until=now),
        row("expiring soon", state=State.expiring, health=Health.expiring, days_left=3, valid_until=now),
        row("missing, nothing waits", state=State.missing, health=Health.missing, reason="Token fehlt"),
        row("failed", failed=2),
        row("invalid, 1 waits", state=State.invalid, health=Health.invalid, reason="Token ungültig", waiting=1),
        row("expired, 5 wait", state=State.expired, health=Health.expired, reason="Token abgelaufen", waiting=5),
        row("invalid, nothing waits", state=State.invalid, health=Health.invalid, reason="Token ungültig"),
        row("revoked, nothing waits", state=State.revoked, health=Health.revoked, reason="Token widerrufen"),
        row("no interface, nothing waits", state=State.no_interface, health=None,
            reason="keine Schnittstelle eingerichtet"),
    ]
    # a broken token comes before one that expires soon, even with nothing waiting (review finding)
    assert [i.name for i in todo(rows)] == ["expired, 5 wait", "invalid, 1 waits", "failed", "invalid, nothing waits",
                                            "expiring soon", "expiring late", "missing, nothing waits",
                                            "revoked, nothing waits", "unbound"]


def test_the_last_day_says_today() -> None:
    now = utcnow()
    item = todo_item(row("last day", state=State.expiring, health=Health.expiring, days_left=0, valid_until=now))
    assert item is not None and "(läuft heute ab)" in item.explanation
    item = todo_item(row("one day", state=State.expiring, health=Health.expiring, days_left=1, valid_until=now))
    assert item is not None and "(noch 1 Tag)" in item.explanation


def test_filters() -> None:
    rows = [row("Musterfirma GmbH", client_id="455148-1"),
            row("Demo Bau AG", state=State.invalid, bound_data_set="455148–3", client_id="455148-3"),
            row("Lexware Demo GmbH", interface="Lexware Office", bound_data_set="–"),
            row("Hansewerft Service GmbH", state=State.unbound, bound_data_set="nicht gebunden", client_id="455148-8"),
            row("Nordlicht KG", state=State.missing, bound_data_set="–", client_id="455148-6")]
    assert [r.name for r in filter_rows(rows, search="bau")] == ["Demo Bau AG"]
    for typed in ("455148–3", "455148-3", " 455148 3 ", "455148—3"):  # dash, hyphen, spaces, em dash
        assert [r.name for r in filter_rows(rows, search=typed)] == ["Demo Bau AG"], typed
    # by the company's own number, whatever its token: unbound, missing
    assert [r.name for r in filter_rows(rows, search="455148-8")] == ["Hansewerft Service GmbH"]
    assert [r.name for r in filter_rows(rows, search="455148–6")] == ["Nordlicht KG"]
    assert [r.name for r in filter_rows(rows, search="nicht gebunden")] == []  # a state, not a name or number
    assert [r.name for r in filter_rows(rows, states=[State.invalid])] == ["Demo Bau AG"]
    assert [r.name for r in filter_rows(rows, interfaces=["Lexware Office"])] == ["Lexware Demo GmbH"]
    assert len(filter_rows(rows)) == 5


def test_an_invalid_tokens_reason_is_said_once() -> None:
    """Reviewer finding: "Der Anbieter hat das Token abgelehnt: DATEV hat das Token abgelehnt …..": the
    provider's own sentence stands alone, a bare code gets the sentence around it, one full stop."""
    assert _refusal("DATEV hat das Token abgelehnt: widerrufen, abgelaufen oder bereits verwendet.") == \
        "DATEV hat das Token abgelehnt: widerrufen, abgelaufen oder bereits verwendet."
    assert _refusal("invalid_grant") == "Der Anbieter hat das Token abgelehnt: invalid_grant."
    assert _refusal(None) == "Der Anbieter hat das Token abgelehnt."
