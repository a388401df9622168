"""Crash safety: the real scheduler process is SIGKILLed at many random moments while it delivers a
few hundred documents for four companies, and restarted each time. In the end every document is
delivered and DATEV (the emulator) has received each GUID exactly once.

A kill leaves claims behind (no SIGTERM handler runs): their lease (2 s here) runs out, another
run takes the document over and repeats the `PUT …/documents/{guid}`; when the first PUT had
arrived, DATEV answers 409 #DCO01012 and the document counts as delivered, never as a second copy.
The second variant adds uploads that the emulator accepts and then answers by dropping the
connection (every fifth upload request), on top of the kills.

Over real HTTP, on SQLite and PostgreSQL. Kill delays come from a seeded random.Random (they are the
experiment); every wait for a condition polls the database with a deadline.
"""

from __future__ import annotations

import random
import time

import pytest
from sqlmodel import col, func, select

from core.platform.db import unit_of_work
from core.platform.models import Document, DocumentStatus, TransferAttempt
from tests.support.fleet import Fleet, kill, stop, wait_until

DOCUMENTS_PER_COMPANY = 60  # 4 companies: 240 documents
MAX_KILLS = 12
MIN_KILLS = 12
LATENCY_MS = 100


def _progress_since(fleet: Fleet, baseline: int, total: int):
    def check() -> bool:
        counts = fleet.status_counts()
        broken = counts[DocumentStatus.failed.value] + counts[DocumentStatus.unresolved.value]
        assert broken == 0, f"documents gave up during the crash loop: {dict(counts)}"
        delivered = counts[DocumentStatus.delivered.value]
        return delivered > baseline or delivered == total
    return check


def _inject(fleet: Fleet, variant: str) -> None:
    if variant == "kill":
        fleet.fault("documents", "latency", 100_000, latency_ms=LATENCY_MS)
        return
    # Faults are consumed in the order they were added: every fifth upload request is accepted and
    # stored, and then the connection is dropped before the answer; the others are slowed down.
    for _ in range(150):
        fleet.fault("documents", "accept_then_drop", 1)
        fleet.fault("documents", "latency", 4, latency_ms=LATENCY_MS)
    fleet.fault("documents", "latency", 100_000, latency_ms=LATENCY_MS)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["kill", "kill+accept_then_drop"])
def test_sigkill_at_random_moments_delivers_every_document_exactly_once(fleet: Fleet, variant: str) -> None:
    for company_id in fleet.companies.values():
        fleet.add_approved(company_id, DOCUMENTS_PER_COMPANY)
    total = DOCUMENTS_PER_COMPANY * len(fleet.companies)
    _inject(fleet, variant)
    # Generous attempt budget: a document can be claimed by several runs that are all killed; the
    # point here is no duplicates and eventual delivery, not the give-up policy.
    env = {"TRANSFER_MAX_ATTEMPTS": 50}
    rng = random.Random(f"crash-safety/{variant}")

    kills = 0
    while kills < MAX_KILLS and fleet.delivered() < total:
        baseline = fleet.delivered()
        proc = fleet.start_scheduler(f"crash-{kills}", **env)
        try:
            wait_until(_progress_since(fleet, baseline, total), timeout=90, interval=0.02,
                       what=f"progress after restart {kills}: {fleet.log_tail(f'crash-{kills}')}")
            time.sleep(rng.uniform(0.0, 0.5))  # the random moment of the kill (the experiment itself)
        finally:
            kill(proc)
        kills += 1
    assert kills >= MIN_KILLS, f"the run finished after only {kills} kills: the experiment needs more work"

    fleet.clear_faults()  # the experiment is over: the last run only drains what is left
    final = fleet.start_scheduler("final", **env)
    try:
        wait_until(lambda: fleet.delivered() == total, timeout=180, interval=0.1,
                   what=f"every document delivered after the crash loop ({dict(fleet.status_counts())}): "
                        f"{fleet.log_tail('final')}")
    finally:
        assert stop(final) == 0, fleet.log_tail("final")

    assert fleet.status_counts() == {DocumentStatus.delivered.value: total}
    received = fleet.received()
    assert set(received) == fleet.guids()
    assert [guid for guid, n in received.items() if n != 1] == [], "a GUID reached DATEV more than once"
    assert sum(received.values()) == total
    with unit_of_work(fleet.engine) as s:
        taken_over = s.exec(select(func.count()).select_from(Document).where(col(Document.attempts) > 1)).one()
        dropped = s.exec(select(func.count()).select_from(TransferAttempt).where(
            col(TransferAttempt.outcome) == "retry", col(TransferAttempt.http_status).is_(None))).one()
    assert taken_over > 0, "no kill hit a claimed document: the experiment did not exercise take-over"
    if variant != "kill":
        assert dropped > 0, "no upload answer was lost: the accept_then_drop faults did not fire"
