"""Token benchmarks against the in-process emulator, on SQLite and (if reachable) PostgreSQL.

(a) fresh: the cost of `get_valid_token` when the access token is still fresh (read the row,
    decrypt, return): N calls, mean/median/p95 in µs and calls per second.
(b) race: 8 processes ask for a token of one expired connection at the same moment (released
    together after all are connected): wall time per race, refresh calls that reached DATEV
    (must be 1) and reuse detections (must be 0).

Run: `make bench` or `python -m bench`. Results: bench/results/tokens.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import Engine, update
from sqlmodel import col, select

from bench.common import (
    KEY_ENTRY,
    demo_database,
    percentile,
    postgres_database,
    postgres_reachable,
    sqlite_database,
)
from core.connections.access import get_valid_token
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.models import AppUser, Company, Connection, utcnow
from emulator.server import EmulatorServer
from testkit.datev_user import log_in_at_datev
from testkit.rows import id_of, present

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "tokens.json"
FRESH_CALLS = 2000
WARMUP_CALLS = 50
RACE_PROCESSES = 8
RACE_REPEATS = 10


def prepare(database_url: str, emulator_url: str) -> tuple[Engine, Settings, Keyring, int]:
    """A migrated, seeded database with one Langzeittoken for Musterfirma GmbH (real login flow)."""
    engine, settings, keyring = demo_database(database_url, emulator_url)
    with unit_of_work(engine) as s:
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        company = s.exec(select(Company).where(Company.client_number == 1)).one()
        s.expunge_all()
    outcome = log_in_at_datev(engine, settings, keyring, company_id=id_of(company), user=admin)
    if not outcome.ok:
        raise RuntimeError(outcome.message)
    with unit_of_work(engine) as s:
        connection_id = present(s.exec(select(Connection.id).where(Connection.company_id == company.id)).one())
    return engine, settings, keyring, connection_id



def bench_fresh(engine: Engine, settings: Settings, keyring: Keyring, connection_id: int) -> dict:
    for _ in range(WARMUP_CALLS):
        get_valid_token(engine, connection_id, settings=settings, keyring=keyring)
    samples = []
    began = time.perf_counter()
    for _ in range(FRESH_CALLS):
        start = time.perf_counter_ns()
        get_valid_token(engine, connection_id, settings=settings, keyring=keyring)
        samples.append((time.perf_counter_ns() - start) / 1000)
    total = time.perf_counter() - began
    return {"calls": FRESH_CALLS, "mean_us": round(statistics.fmean(samples), 1),
            "median_us": round(statistics.median(samples), 1), "p95_us": round(percentile(samples, 0.95), 1),
            "calls_per_s": round(FRESH_CALLS / total)}


def emulator_stats(emulator_url: str) -> dict:
    stats: dict = requests.get(emulator_url + "/_admin/stats", timeout=5).json()
    return stats


def one_race(engine: Engine, database_url: str, emulator_url: str, connection_id: int) -> dict:
    with unit_of_work(engine) as s:
        s.exec(update(Connection).where(col(Connection.id) == connection_id)
               .values(access_expires_at=utcnow() - timedelta(minutes=1)))
    before = emulator_stats(emulator_url)
    env = {**os.environ, "APP_ENV": "test", "ENCRYPTION_KEYS": KEY_ENTRY}
    procs = [subprocess.Popen([sys.executable, "-m", "testkit.refresh_worker", database_url, emulator_url,
                               str(connection_id)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(RACE_PROCESSES)]
    for proc in procs:  # a real barrier: every contender is imported and connected before any starts
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # all PIPE
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"race worker failed to start: {line!r} {proc.stderr.read()[-1500:]}")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"race worker failed: {err[-1500:]}")
        answers.append(json.loads(out.strip().splitlines()[-1]))
    after = emulator_stats(emulator_url)
    return {
        "wall_ms": (max(a["end"] for a in answers) - min(a["start"] for a in answers)) * 1000,
        "first_token_ms": (min(a["end"] for a in answers) - min(a["start"] for a in answers)) * 1000,
        "overlapped": max(a["start"] for a in answers) < min(a["end"] for a in answers),
        "refresh_calls": after["refresh_requests"] - before["refresh_requests"],
        "reuse_detections": after["reuse_detections"] - before["reuse_detections"],
        "distinct_tokens": len({a["fingerprint"] for a in answers}),
    }


def bench_race(engine: Engine, database_url: str, emulator_url: str, connection_id: int) -> dict:
    races = [one_race(engine, database_url, emulator_url, connection_id) for _ in range(RACE_REPEATS)]
    walls = [r["wall_ms"] for r in races]
    return {"processes": RACE_PROCESSES, "races": RACE_REPEATS,
            "wall_ms_median": round(statistics.median(walls), 1), "wall_ms_max": round(max(walls), 1),
            "first_token_ms_median": round(statistics.median(r["first_token_ms"] for r in races), 1),
            "refresh_calls_per_race": sorted({r["refresh_calls"] for r in races}),
            "reuse_detections": sum(r["reuse_detections"] for r in races),
            "distinct_tokens_per_race": sorted({r["distinct_tokens"] for r in races}),
            "races_with_full_overlap": sum(r["overlapped"] for r in races)}


def run_database(label: str, database_url: str, emulator_url: str) -> dict:
    engine, settings, keyring, connection_id = prepare(database_url, emulator_url)
    try:
        return {"fresh": bench_fresh(engine, settings, keyring, connection_id),
                "race": bench_race(engine, database_url, emulator_url, connection_id)}
    finally:
        engine.dispose()


def print_table(results: dict) -> None:
    print("\nget_valid_token, fresh access token")
    print(f"{'database':<12}{'calls':>7}{'mean µs':>10}{'median µs':>11}{'p95 µs':>9}{'calls/s':>9}")
    for db, r in results.items():
        f = r["fresh"]
        print(f"{db:<12}{f['calls']:>7}{f['mean_us']:>10}{f['median_us']:>11}{f['p95_us']:>9}{f['calls_per_s']:>9}")
    print(f"\nrefresh race, {RACE_PROCESSES} processes on one expired token")
    print(f"{'database':<12}{'races':>6}{'wall ms median':>16}{'wall ms max':>13}{'refreshes/race':>16}"
          f"{'reuse det.':>11}{'overlap':>9}{'first token ms':>16}")
    for db, r in results.items():
        x = r["race"]
        refreshes = ",".join(str(v) for v in x["refresh_calls_per_race"])
        print(f"{db:<12}{x['races']:>6}{x['wall_ms_median']:>16}{x['wall_ms_max']:>13}{refreshes:>16}"
              f"{x['reuse_detections']:>11}{x['races_with_full_overlap']:>7}/{x['races']}"
              f"{x['first_token_ms_median']:>16}")


def main() -> None:
    results: dict[str, dict] = {}
    with EmulatorServer() as emulator:
        with sqlite_database("tokens") as url:
            results["sqlite"] = run_database("sqlite", url, emulator.base_url)
        if postgres_reachable():
            with postgres_database("tokens") as url:
                results["postgresql"] = run_database("postgresql", url, emulator.base_url)
    print_table(results)
    ok = all(r["race"]["refresh_calls_per_race"] == [1] and r["race"]["reuse_detections"] == 0
             for r in results.values())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "results": results, "race_invariants_hold": ok,
    }, indent=2) + "\n")
    print(f"\nwritten: {RESULTS.relative_to(ROOT)}")
    if not ok:
        raise SystemExit("refresh race: expected exactly 1 refresh per race and 0 reuse detections")


if __name__ == "__main__":
    main()
