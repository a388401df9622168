"""core.statistics on both databases: the renewal plan by Berlin month, transfers per Berlin day, failure
reasons. Attempt rows are written directly (a read model over the history; the engine's own tests cover
how attempts come about)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.connections import store
from core.platform.db import unit_of_work
from core.platform.models import Connection, TransferAttempt
from core.statistics import day_labels, failure_reasons, month_label, plan_months, renewal_plan, transfers_per_day
from tests.support.world import World, add_approved

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def attempt(world: World, document_id: int, outcome: str, started_at: datetime, text: str | None = None) -> None:
    with unit_of_work(world.engine) as s:
        s.add(TransferAttempt(document_id=document_id, company_id=world.company_id, provider="datev",
                              trigger="scheduler", triggered_by="scheduler:test", attempt_no=1,
                              started_at=started_at, finished_at=started_at, outcome=outcome, error_text=text,
                              correlation_id="c"))


def test_renewal_plan_by_berlin_month_with_the_companies(world: World) -> None:
    world.request_token()
    row = world.connection()
    # 31 Dec 2027 23:30 UTC is already 1 January 2028 in Berlin
    with unit_of_work(world.engine) as s:
        stored = s.get(Connection, row.id)
        assert stored is not None
        stored.refresh_expires_at = datetime(2027, 12, 31, 23, 30, tzinfo=UTC)
        s.add(stored)
    [bar] = renewal_plan(world.engine, now=NOW)
    assert (bar.label, bar.interface, bar.count, bar.companies) == ("Jan. 2028", "DATEV", 1, ("Musterfirma GmbH",))
    months = plan_months(now=NOW)
    assert len(months) == 25 and months[0] == "Nov. 2026" and months[-1] == "Nov. 2028"
    assert month_label(bar.month) in months
    # out of the plan: expired already, or invalid
    assert renewal_plan(world.engine, now=datetime(2028, 2, 1, tzinfo=UTC)) == []
    assert store.mark_invalid(world.engine, row.id or 0, expected_version=row.version, reason="x")
    assert renewal_plan(world.engine, now=NOW) == []


def test_transfers_per_berlin_day_and_failure_reasons(world: World) -> None:
    first, second, third = add_approved(world, 3)
    today = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    attempt(world, first, "delivered", today)
    attempt(world, second, "failed", today, "Belegtyp unbekannt")
    attempt(world, third, "waiting", today - timedelta(days=1), "Belegtyp unbekannt")
    attempt(world, third, "retry", today)  # not an end state: not counted
    attempt(world, third, "unresolved", datetime(2026, 11, 27, 23, 30, tzinfo=UTC))  # 28 Nov in Berlin
    attempt(world, third, "failed", today - timedelta(days=40), "zu alt")
    days = transfers_per_day(world.engine, now=NOW)
    assert {(d.label, d.outcome, d.count) for d in days} == {
        ("29.11.", "übertragen", 1), ("29.11.", "fehlgeschlagen", 1), ("28.11.", "fehlgeschlagen", 1),
        ("28.11.", "ungeklärt", 1)}
    assert [(r.reason, r.count) for r in failure_reasons(world.engine, now=NOW)] == [("Belegtyp unbekannt", 2)]
    # the chart's axis: all 30 days, the empty ones too (weekends without transfers stay visible gaps)
    labels = day_labels(now=NOW)
    assert len(labels) == 30 and labels[-1] == "29.11." and labels[0] == "31.10." and "28.11." in labels
