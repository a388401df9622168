"""Page benchmark (#10): server time of the dashboard's busiest pages at 1,000 companies, 1,000,000
documents, 100,000 transfer attempts, alarms and audit rows, on SQLite and (if reachable) PostgreSQL.
Figures only: nothing is asserted.

Per page, two figures, median and p95 of RUNS runs:
- data: the page's core data functions alone (what the page asks the database for);
- render: one AppTest run of the page through the router as an admin, in a session that has signed in
  already (router, guard, data, Streamlit, pandas, the tables' serialisation); one warm-up run first, so
  imports and the engine are not counted.
Pages: Übersicht (rows, tiles, "Heute zu tun", three charts), company page, Langzeittoken (filtered list,
10 cards), Belege (first page), Übertragungsprotokoll (first page and count), Audit-Protokoll (200 rows).

The load is a bulk insert (no document content rows, no HTTP log): companies with DATEV long-term
connections whose expiry spreads over the next 26 months (every 50th invalid, every 20th missing),
documents mostly delivered with some approved, failed and unresolved, attempts over the last 30 days.

Run: `python -m bench.pages` (full size), `--quick` (1/100 size, for a try), `--runs N`, `--sqlite-only`.
Results: bench/results/pages.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bench.common import KEY_ENTRY, percentile, postgres_database, postgres_reachable
from core import overview
from core import statistics as charts
from core.connections.health import token_cards
from core.demo import seed_demo
from core.documents import queries
from core.documents.queries import DocumentFilter
from core.logs import AuditFilter, audit_events
from core.platform.config import Settings, get_settings
from core.platform.db import dispose_engines, make_engine
from core.platform.migrate import upgrade_to_head
from core.platform.secret_store import get_keyring
from core.transfers import history, readiness
from core.transfers.history import HistoryFilter

RESULTS = Path(__file__).resolve().parent / "results" / "pages.json"
ROOT = Path(__file__).resolve().parent.parent
FULL = {"companies": 1_000, "documents": 1_000_000, "attempts": 100_000, "alarms": 5_000, "audit": 50_000}


# --- the load -----------------------------------------------------------------------------------------


def _ts(moment: datetime, sqlite: bool) -> datetime | str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else moment


def _rows(size: dict[str, int], first_company: int, first_document: int, sqlite: bool) -> dict[str, Iterator[tuple]]:
    now = datetime.now(UTC)
    n = size["companies"]

    def companies() -> Iterator[tuple]:
        for i in range(n):
            yield (f"Firma {i:04d} GmbH", 2000 + i // 99_999, 1 + i % 99_999, "datev", i % 3 == 0, "",
                   _ts(now - timedelta(days=400), sqlite), _ts(now - timedelta(days=400), sqlite))

    def connections() -> Iterator[tuple]:
        for i in range(n):
            if i % 20 == 0:
                continue  # no token requested yet
            expires = now + timedelta(days=5 + (i * 17) % 790)
            invalid = _ts(now - timedelta(days=1), sqlite) if i % 50 == 1 else None
            yield (first_company + i, "datev", "long_term", "long_term", 1, True, f"{i:016x}"[:16],
                   _ts(expires, sqlite), False, True, "openid offline_access", f"{2000 + i // 99_999}-{1 + i % 99_999}",
                   f"DATEV-Benutzer {i}", invalid, _ts(now - timedelta(days=30), sqlite),
                   _ts(now - timedelta(days=30), sqlite), _ts(now - timedelta(days=30), sqlite))

    def documents() -> Iterator[tuple]:
        for i in range(size["documents"]):
            status = ("approved" if i % 50 == 0 else "failed" if i % 97 == 0 else "unresolved" if i % 499 == 0
                      else "delivered")
            stamp = _ts(now - timedelta(minutes=i % 60_000), sqlite)
            guid = str(uuid.UUID(int=i + 1))
            yield (first_company + i % n, guid, status, f"Beleg {i}.pdf", f"Beleg {i}.pdf", 1234, f"{i:064x}",
                   "application/pdf", "upload", stamp, "bench", 1, stamp if status == "delivered" else None, stamp,
                   "Belegtyp unbekannt" if status == "failed" else None)

    def attempts() -> Iterator[tuple]:
        for i in range(size["attempts"]):
            outcome = "failed" if i % 40 == 0 else "unresolved" if i % 333 == 0 else "delivered"
            started = _ts(now - timedelta(seconds=(i * 26) % (30 * 86_400)), sqlite)
            yield (first_document + (i * 10) % size["documents"], first_company + i % n, "datev", "scheduler",
                   "scheduler:bench", 1, started, started, outcome,
                   f"#DCO0{i % 7}: Belegtyp unbekannt" if outcome == "failed" else None, f"c{i}")

    def alarms() -> Iterator[tuple]:
        for i in range(size["alarms"]):
            yield (f"bench:{i}", first_company + i % n, f"Alarm {i}", "", "error",
                   _ts(now - timedelta(minutes=i), sqlite), True, 1)

    def audit() -> Iterator[tuple]:
        for i in range(size["audit"]):
            yield (_ts(now - timedelta(minutes=i), sqlite), "admin@tokendesk.demo", "company.updated", "company",
                   str(first_company + i % n), None)

    return {"company": companies(), "connection": connections(), "document": documents(),
            "transfer_attempt": attempts(), "alarm_sent": alarms(), "audit_event": audit()}


COLUMNS = {
    "company": ("name", "consultant_number", "client_number", "interface", "auto_transfer", "alarm_recipients",
                "created_at", "updated_at"),
    "connection": ("company_id", "provider", "kind", "slot", "version", "has_token", "token_fingerprint",
                   "refresh_expires_at", "refresh_expiry_derived", "offline_granted", "scopes", "bound_client",
                   "grantor_name", "invalid_at", "requested_at", "created_at", "updated_at"),
    "document": ("company_id", "guid", "status", "file_name", "original_name", "size", "sha256", "media_type",
                 "source", "uploaded_at", "uploaded_by", "attempts", "delivered_at", "updated_at", "last_error"),
    "transfer_attempt": ("document_id", "company_id", "provider", "trigger", "triggered_by", "attempt_no",
                         "started_at", "finished_at", "outcome", "error_text", "correlation_id"),
    "alarm_sent": ("key", "company_id", "title", "body", "severity", "sent_at", "delivered", "attempts"),
    "audit_event": ("at", "actor", "action", "entity_type", "entity_id", "detail"),
}
ORDER = ("company", "connection", "document", "transfer_attempt", "alarm_sent", "audit_event")


def _next_ids(query: Callable[[str], int]) -> tuple[int, int]:
    return query("SELECT coalesce(max(id), 0) + 1 FROM company"), query("SELECT coalesce(max(id), 0) + 1 FROM document")


def load_sqlite(url: str, size: dict[str, int]) -> None:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        first_company, first_document = _next_ids(lambda sql: conn.execute(sql).fetchone()[0])
        rows = _rows(size, first_company, first_document, True)
        with conn:
            for table in ORDER:
                cols = COLUMNS[table]
                conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 rows[table])
        conn.execute("ANALYZE")
    finally:
        conn.close()


def load_postgres(engine: Engine, size: dict[str, int]) -> None:
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None

        def one(sql: str) -> int:
            with driver.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
                assert row is not None
                return int(row[0])

        first_company, first_document = _next_ids(one)
        rows = _rows(size, first_company, first_document, False)
        with driver.cursor() as cur:
            for table in ORDER:
                with cur.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as copy:
                    for row in rows[table]:
                        copy.write_row(row)
        driver.commit()
        # What autovacuum does after a bulk insert (PostgreSQL 13+): statistics, and the visibility map that
        # lets the counts run as index-only scans. Without it the overview's counts read 20,000 heap pages.
        driver.autocommit = True
        with driver.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        raw.close()


# --- the measurements ----------------------------------------------------------------------------------


def data_functions(engine: Engine, settings: Settings) -> dict[str, Callable[[], object]]:
    company_id = overview.company_rows(engine, settings)[1].company_id

    def overview_page() -> object:
        return (overview.overview(engine, settings), charts.renewal_plan(engine), charts.transfers_per_day(engine),
                charts.failure_reasons(engine))

    def company_page() -> object:
        return overview.company_detail(engine, settings, company_id), overview.company_audit(engine, company_id)

    def tokens_page() -> object:
        return overview.filter_cards(token_cards(engine, settings))[:overview.CARDS_PER_PAGE]

    def documents_page() -> object:
        rows, total = queries.list_documents(engine, DocumentFilter(), offset=0, limit=50)
        return total, readiness.waiting_reasons(engine, settings, {d.company_id for d in rows})

    def transfer_log_page() -> object:
        return history.count(engine, HistoryFilter()), history.history_page(engine, HistoryFilter(), page=1)

    def audit_page() -> object:
        return audit_events(engine, AuditFilter(), limit=200)

    return {"Übersicht": overview_page, "Unternehmensseite": company_page, "Langzeittoken": tokens_page,
            "Belege": documents_page, "Übertragungsprotokoll": transfer_log_page, "Audit-Protokoll": audit_page}


PAGE_FILES = {"Übersicht": "pages/overview.py", "Unternehmensseite": "pages/company.py",
              "Langzeittoken": "pages/tokens.py", "Belege": "pages/documents.py",
              "Übertragungsprotokoll": "pages/transfer_log.py", "Audit-Protokoll": "pages/audit_log.py"}
ADMIN = {"is_logged_in": True, "sub": "bench-admin", "email": "admin@tokendesk.demo", "name": "Anna Admin"}


def render(page: str, company_id: int) -> Callable[[], object]:
    """One rerun of the page in a signed-in AppTest session (the router's first run happens once, before)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.user = dict(ADMIN)
    at.query_params["company"] = str(company_id)
    at.run()

    def run() -> object:
        if page != "Übersicht":
            at.switch_page(PAGE_FILES[page])
        at.run()
        if at.exception:
            raise RuntimeError(f"{page}: {at.exception}")
        return at

    return run


def timed(fn: Callable[[], object], runs: int) -> dict[str, float]:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "p95_ms": round(percentile(times, 0.95), 1)}


def measure(url: str, size: dict[str, int], runs: int, render_runs: int, label: str) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade_to_head(engine)
    seed_demo(engine)
    started = time.perf_counter()
    if url.startswith("sqlite"):
        load_sqlite(url, size)
    else:
        load_postgres(engine, size)
    load_s = round(time.perf_counter() - started, 1)
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    get_keyring.cache_clear()
    settings = get_settings()
    functions = data_functions(engine, settings)
    company_id = overview.company_rows(engine, settings)[1].company_id
    result: dict[str, Any] = {"database": label, "load_seconds": load_s, "pages": {}}
    for page, fn in functions.items():
        entry = {"data": timed(fn, runs)}
        if render_runs:
            entry["render"] = timed(render(page, company_id), render_runs)
        result["pages"][page] = entry
        print(f"{label:10} {page:24} data {entry['data']['median_ms']:8.1f} ms"
              + (f"   render {entry['render']['median_ms']:8.1f} ms" if "render" in entry else ""), flush=True)
    engine.dispose()
    dispose_engines()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1/100 of the full size")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--render-runs", type=int, default=20)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args(argv)
    size = {k: max(10, v // 100) for k, v in FULL.items()} if args.quick else dict(FULL)
    os.environ.setdefault("APP_ENV", "test")
    os.environ.setdefault("ENCRYPTION_KEYS", KEY_ENTRY)
    os.environ["STREAMLIT_SECRETS_FILE"] = os.devnull
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        results.append(measure(f"sqlite:///{Path(tmp) / 'bench.db'}", size, args.runs, args.render_runs, "sqlite"))
    if not args.sqlite_only and postgres_reachable():
        with postgres_database("pages") as url:
            results.append(measure(url, size, args.runs, args.render_runs, "postgresql"))
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "size": size, "runs": args.runs,
              "render_runs": args.render_runs, "machine": {"python": platform.python_version(),
                                                           "cpus": os.cpu_count(),
                                                           "load_average_before": round(load_before, 2),
                                                           "load_average_after": round(os.getloadavg()[0], 2)},
              "results": results}
    if not args.quick:
        RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report["machine"]))


if __name__ == "__main__":
    main()
