"""Three scheduler processes on one PostgreSQL database plus a manual transfer, all at once: no
document reaches DATEV twice.

The three `scheduler.py` processes start first and finish their first (empty) pass; then all
documents are approved in one go and the manual pass starts in this process at once. Each scheduler
joins at its next tick (at most TRANSFER_INTERVAL_SECONDS = 5 later), and uploads are slowed down at
the emulator so that the run lasts well beyond that: every participant claims documents from the
same companies at the same time. Claims are a conditional UPDATE with `FOR UPDATE SKIP LOCKED` on
PostgreSQL; a document claimed twice would show up as a second upload at the emulator, or as an
attempt answered 409 ("already delivered"). No pass may fail either.
"""

from __future__ import annotations

from collections import Counter
from threading import Barrier, Thread

import pytest
from sqlmodel import col, select

from core.documents import intake, lifecycle
from core.platform.db import unit_of_work
from core.platform.models import Document, DocumentStatus, DocumentTypeCache, SchedulerHeartbeat, TransferAttempt
from core.transfers.document_types import store_document_types
from core.transfers.engine import PassOptions, run_pass
from core.users import process
from testkit.rows import ids_of
from testkit.samples import pdf
from tests.support.fleet import Fleet, stop, wait_until

DOCUMENTS_PER_COMPANY = 60
SCHEDULERS = ("sched-a", "sched-b", "sched-c")
MANUAL_ACTOR = "operator@tokendesk.demo"


def _idle_schedulers(fleet: Fleet) -> int:
    with unit_of_work(fleet.engine) as s:
        rows = s.exec(select(SchedulerHeartbeat)).all()
    return sum(1 for row in rows if row.last_pass is not None)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_three_schedulers_and_a_manual_transfer_deliver_each_document_once(fleet: Fleet) -> None:
    ids: list[int] = []
    for company_id in fleet.companies.values():
        report = intake.intake(fleet.engine, company_id=company_id, actor=process(MANUAL_ACTOR),
                                  files=[(f"Beleg {company_id}-{i}.pdf", pdf(f"race-{company_id}-{i}"))
                                         for i in range(DOCUMENTS_PER_COMPANY)])
        ids += ids_of(report.accepted)
    total = len(ids)
    assert total == DOCUMENTS_PER_COMPANY * len(fleet.companies)
    fleet.fault("documents", "latency", 100_000, latency_ms=400)

    procs = [fleet.start_scheduler(name) for name in SCHEDULERS]
    try:
        wait_until(lambda: _idle_schedulers(fleet) == len(SCHEDULERS), timeout=60,
                   what="three schedulers finished their first pass")
        assert lifecycle.approve(fleet.engine, document_ids=ids, actor=process(MANUAL_ACTOR)) == total
        manual = run_pass(fleet.engine, fleet.world.settings, fleet.world.keyring,
                          PassOptions(trigger="manual", actor=process(MANUAL_ACTOR)))
        wait_until(lambda: fleet.delivered() == total, timeout=120, interval=0.1,
                   what=f"all delivered ({dict(fleet.status_counts())})")
    finally:
        codes = {name: stop(proc) for name, proc in zip(SCHEDULERS, procs, strict=True)}
    logs = {name: fleet.log_tail(name, 400) for name in SCHEDULERS}
    assert codes == dict.fromkeys(SCHEDULERS, 0), logs
    assert [name for name, text in logs.items() if "failed; the scheduler goes on" in text] == [], logs

    assert fleet.status_counts() == {DocumentStatus.delivered.value: total}
    received = fleet.received()
    assert set(received) == fleet.guids()
    assert [guid for guid, n in received.items() if n != 1] == [], "a GUID reached DATEV more than once"
    with unit_of_work(fleet.engine) as s:
        attempts = s.exec(select(TransferAttempt.triggered_by, TransferAttempt.outcome,
                                 TransferAttempt.http_status)).all()
        over_claimed = s.exec(select(Document.id).where(col(Document.attempts) != 1)).all()
    assert over_claimed == [], "a document was claimed more than once"
    assert [a for a in attempts if a[1] != "delivered" or a[2] != 201] == [], "an upload was repeated"
    assert len(attempts) == total
    by_actor = Counter(actor for actor, _, _ in attempts)
    assert manual.delivered == by_actor[MANUAL_ACTOR]
    # Everybody took part, so the claims really competed.
    assert set(by_actor) == {MANUAL_ACTOR, *(f"scheduler:{n}" for n in SCHEDULERS)}, by_actor


def test_passes_preparing_the_same_company_at_once_do_not_fail(fleet: Fleet) -> None:
    """Each pass refreshes the company's cached document types (DELETE + INSERT). Two passes doing
    that at the same moment must not abort one of them (on PostgreSQL the second DELETE does not see
    the first one's new rows, so its INSERT hit the unique constraint and the whole pass failed)."""
    company_id = fleet.companies["455148-1"]
    types = [{"name": name, "category": "invoices_received", "debit_credit_identifier": "debit"}
             for name in ("Rechnungseingang", "Rechnungsausgang", "Kasse", "Sonstige")]
    errors: list[BaseException] = []
    for _ in range(20):
        barrier = Barrier(4)

        def refresh(barrier: Barrier = barrier) -> None:
            barrier.wait()
            try:
                store_document_types(fleet.engine, company_id, types)
            except BaseException as exc:  # noqa: BLE001  (collected and asserted below)
                errors.append(exc)

        threads = [Thread(target=refresh) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    with unit_of_work(fleet.engine) as s:
        names = sorted(s.exec(select(DocumentTypeCache.name).where(DocumentTypeCache.company_id == company_id)).all())
    assert names == sorted(t["name"] for t in types)
