"""Transfer benchmarks, on SQLite and (if reachable) PostgreSQL. Figures only: nothing is asserted.

(1) throughput: the emulator (its own process) sleeps LATENCY_MS on every upload; N approved small
    PDFs across 1 or 4 companies; one `run_pass` with TRANSFER_CONCURRENCY 4 and 8. Reported:
    documents per second and the fraction of the ideal (concurrency ÷ latency). Each pass is
    instrumented (wrappers around the engine's functions, core/ untouched): time per upload in
    claiming, the upload call, the HTTP-log write and recording the outcome, and how busy the
    workers were. A run without latency shows the engine's own ceiling.
(2) reads per upload: `summary.reads / summary.uploads` of the same passes.
(3) idle pass: 10,000 companies and 1,000,000 delivered documents (bulk insert; no content rows),
    and 1,000 / 100,000; `companies_with_work` and `run_pass` with nothing due, 50 runs each:
    median and p95 in ms, and the ratio large ÷ small.

(4) scaling: 1, 2 and 3 scheduler processes (bench.pass_worker, released together) on PostgreSQL drain
    1,200 documents of 12 companies (bench.fleet_emulator adds DATEV clients); documents/s and the CPU
    per upload of the schedulers, the emulator and the database's backends.

Run: `python -m bench.transfers` (all), `--only throughput|idle|scaling`, `--quick` (smaller, for a try),
`--documents N`, `--db sqlite|postgresql`, `--no-profile`, `--out FILE` (for A/B runs of two trees).
Results: bench/results/transfers.json.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import itertools
import json
import os
import platform
import pstats
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests
from sqlalchemy import Engine, func, update
from sqlmodel import col, select

import core.documents.lifecycle
import core.providers.http
import core.transfers.engine
from bench.common import (
    KEY_ENTRY,
    demo_database,
    percentile,
    postgres_database,
    postgres_reachable,
    sqlite_database,
)
from bench.fleet_emulator import extra_client_ids
from core import companies
from core.connections import store as connection_store
from core.connections.access import get_valid_token
from core.documents import intake, lifecycle
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import make_engine, unit_of_work
from core.platform.migrate import upgrade_to_head
from core.platform.models import AppUser, Company, Document, Interface, Provider
from core.providers.datev import upload_datev
from core.providers.http import CallContext, KeepAliveClient
from core.providers.outcome import Outcome
from core.transfers.engine import PassOptions, PassSummary, companies_with_work, run_pass
from core.users import process
from testkit.datev_user import log_in_at_datev
from testkit.rows import id_of, ids_of, present
from testkit.samples import pdf
from testkit.workers import run_together

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "transfers.json"
LATENCY_MS = 50
CLIENTS = ("455148-1", "455148-2", "455148-4", "455148-5")  # "max" has rights; all with Belege online
IDLE_RUNS = 50



# --- databases and the emulator ----------------------------------------------------------------


def databases(label: str, only: str | None = None) -> Iterator[tuple[str, Callable[[], AbstractContextManager[str]]]]:
    if only in (None, "sqlite"):
        yield "sqlite", functools.partial(sqlite_database, f"transfers-{label}")
    if only in (None, "postgresql") and postgres_reachable():
        yield "postgresql", functools.partial(postgres_database, f"transfers-{label}")


@contextmanager
def emulator_process(extra_clients: int = 0) -> Iterator[tuple[str, int]]:
    """The emulator in its own process, so it does not share our GIL (as the real DATEV would not); with
    `extra_clients`, bench.fleet_emulator's (more DATEV clients for the scaling benchmark)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if extra_clients:
        command = ["-m", "bench.fleet_emulator", str(port), str(extra_clients)]
    elif SERVER[0] == "keepalive":
        command = ["-m", "bench.keepalive_emulator", str(port)]
    else:
        command = ["-m", "emulator", "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/_admin/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def admin_post(emulator_url: str, path: str, body: dict | None = None) -> None:
    requests.post(emulator_url + "/_admin" + path, json=body or {}, timeout=10).raise_for_status()


# --- (1) and (2): throughput and reads per upload ----------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Runs in its own process (its CPU is not the engine's): every 50 ms, the CPU seconds of each PostgreSQL process
# whose title names the database (backends: "postgres: user dbname host(port) …"; until 2026-11-29 the
# sampler also counted itself, its command line names the database, and took the CPU of every backend but the
# first from the backend's start instead of the sampler's: pooled backends' earlier passes counted again,
# so "database CPU" grew with every run); on stdin's end it
# prints the CPU they used since it started (backends that ended meanwhile count up to their last sample).
_SAMPLER = """
import os, sys, threading, time
name, tick = " " + sys.argv[1] + " ", os.sysconf("SC_CLK_TCK")
first, last, done, sweep = {}, {}, threading.Event(), 0
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("ready", flush=True)
while True:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(bytes(1), b" ")
            # a backend's title; not this sampler, whose own command line names the database too
            if not title.startswith(b"postgres: ") or name.encode() not in title:
                continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick
        first.setdefault(pid, cpu if sweep == 0 else 0.0)  # running before: from now; new: from its start
        last[pid] = cpu
    sweep += 1
    if done.is_set():
        break
    time.sleep(0.05)
print(sum(last[p] - first.get(p, 0.0) for p in last), flush=True)
"""


@contextmanager
def database_server_cpu(database_url: str) -> Iterator[list[float]]:
    """CPU seconds the PostgreSQL backends of this database used inside the block (sampled in a separate
    process); nothing for SQLite (its work is in the engine's process)."""
    result: list[float] = []
    if not database_url.startswith("postgresql"):
        yield result
        return
    sampler = subprocess.Popen([sys.executable, "-c", _SAMPLER, database_url.rsplit("/", 1)[1]],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sampler.stdin is not None and sampler.stdout is not None
    sampler.stdout.readline()  # "ready"
    try:
        yield result
    finally:
        sampler.stdin.close()
        result.append(float(sampler.stdout.readline() or 0.0))
        sampler.wait(timeout=10)


class Meter:
    """Wall time spent in the engine's steps, summed over worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, module: object, name: str, label: str) -> Callable[[], None]:
        original = getattr(module, name, None)
        if original is None:  # renamed in the engine: that step is simply not timed
            return lambda: None

        @functools.wraps(original)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self.lock:
                    self.totals[label] += time.perf_counter() - started
                    self.calls[label] += 1

        setattr(module, name, timed)
        return lambda: setattr(module, name, original)

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()


# pstats' own table: (file, line, function) → (primitive calls, calls, own time, cumulative time, callers)
ProfileTable = dict[tuple[str, int, str], tuple[int, int, float, float, dict]]


def raw_table(stats: pstats.Stats) -> ProfileTable:
    table: ProfileTable = stats.stats  # type: ignore[attr-defined]  # typeshed's pstats.Stats omits .stats
    return table


class ThreadProfiles:
    """cProfile in every worker thread (cProfile sees only its own thread), merged afterwards. The timer
    is the thread's CPU time, so waiting (sockets, locks, the database server) does not count."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self.lock = threading.Lock()

    def wrap(self, module: object, name: str) -> Callable[[], None]:
        original = getattr(module, name)

        @functools.wraps(original)
        def profiled(*args, **kwargs):
            profile = cProfile.Profile(time.thread_time)
            with self.lock:
                self.profiles.append(profile)
            profile.enable()
            try:
                return original(*args, **kwargs)
            finally:
                profile.disable()

        setattr(module, name, profiled)
        return lambda: setattr(module, name, original)

    def top(self, uploads: int, limit: int = 25) -> list[dict]:
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        rows: list[dict[str, Any]] = []
        for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in raw_table(stats).items():
            short = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
            rows.append({"function": f"{short}:{line}({function})", "calls_per_upload": round(calls / uploads, 1),
                         "own_ms_per_upload": round(tottime / uploads * 1000, 3),
                         "cum_ms_per_upload": round(cumtime / uploads * 1000, 3)})
        return sorted(rows, key=lambda r: r["own_ms_per_upload"], reverse=True)[:limit]

    def cpu_by_package(self, uploads: int) -> dict[str, float]:
        """Own CPU ms per upload, grouped by top-level package (sqlalchemy, requests, urllib3, …)."""
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        groups: dict[str, float] = defaultdict(float)
        for (filename, _line, _function), (_cc, _calls, tottime, _cumtime, _callers) in raw_table(stats).items():
            if "site-packages/" in filename:
                group = filename.split("site-packages/")[1].split("/")[0]
            elif filename.startswith(str(ROOT)):
                group = filename.replace(str(ROOT) + "/", "").split("/")[0]
            elif filename == "~":
                group = "builtins (C)"
            else:
                group = "stdlib"
            groups[group] += tottime
        return {k: round(v / uploads * 1000, 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}


def prepare_fleet(database_url: str, emulator_url: str) -> tuple[Engine, Settings, Keyring, dict[str, int]]:
    engine, settings, keyring = demo_database(database_url, emulator_url)
    for client in ("4", "5"):
        companies.create_company(engine, actor=process("bench"), data=companies.CompanyInput(
            f"Bench {client}", "455148", client, Interface.datev.value, True, "Rechnungseingang"))
    with unit_of_work(engine) as s:
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        ids = {present(c.datev_client_id): id_of(c) for c in s.exec(select(Company)).all()
               if c.datev_client_id in CLIENTS}
        s.exec(update(Company).where(col(Company.id).in_(list(ids.values()))).values(auto_transfer=True))
        s.expunge_all()
    for company_id in ids.values():
        outcome = log_in_at_datev(engine, settings, keyring, company_id=company_id, user=admin, person="max")
        if not outcome.ok:
            raise RuntimeError(outcome.message)
    return engine, settings, keyring, ids


def approve_documents(engine: Engine, company_ids: list[int], total: int, tag: str) -> None:
    for n, company_id in enumerate(company_ids):
        share = total // len(company_ids) + (1 if n < total % len(company_ids) else 0)
        report = intake.intake(engine, company_id=company_id, actor=process("bench"), files=[
            (f"Beleg {tag}-{i}.pdf", pdf(f"{tag}-{company_id}-{i}")) for i in range(share)])
        lifecycle.approve(engine, document_ids=ids_of(report.accepted), actor=process("bench"))
    vacuum(engine)


def vacuum(engine: Engine) -> None:
    """PostgreSQL: VACUUM ANALYZE before a pass, as autovacuum (on by default) would have done between passes
    (the previous passes' dead row versions and index entries cleaned up). The PostgreSQL of the machines this
    project runs on has autovacuum off; without this the claim's index scans and the backends' CPU grew
    with every run of the benchmark."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")


def one_throughput_run(engine: Engine, settings: Settings, keyring: Keyring, company_ids: list[int], *,
                       concurrency: int, latency_ms: int, total: int, emulator_url: str, emulator_pid: int,
                       meter: Meter) -> dict:
    approve_documents(engine, company_ids, total, uuid.uuid4().hex[:8])
    requests.delete(emulator_url + "/_admin/faults", timeout=5).raise_for_status()
    if latency_ms:
        admin_post(emulator_url, "/faults", {"target": "documents", "kind": LATENCY_KIND[0], "latency_ms": latency_ms,
                                             "count": 100_000})
    run_settings = settings.model_copy(update={"transfer_concurrency": concurrency})
    meter.reset()
    with database_server_cpu(engine.url.render_as_string()) as server_cpu:
        cpu_before, emulator_cpu_before = time.process_time(), process_cpu_seconds(emulator_pid)
        started = time.perf_counter()
        summary = run_pass(engine, run_settings, keyring, PassOptions(trigger="manual", actor=process("bench"),
                                                                      company_ids=company_ids))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        emulator_cpu = process_cpu_seconds(emulator_pid) - emulator_cpu_before
    uploads = max(summary.uploads, 1)
    per_upload = {label: round(meter.totals[label] / uploads * 1000, 2) for label in meter.totals}
    upload_call = per_upload.get("upload_call", 0.0) - per_upload.get("http_log_write", 0.0)
    result = {
        "companies": len(company_ids), "concurrency": concurrency, "latency_ms": latency_ms,
        "documents": total, "delivered": summary.delivered, "uploads": summary.uploads, "reads": summary.reads,
        "wall_s": round(wall, 3), "docs_per_s": round(summary.delivered / wall, 1),
        "reads_per_upload": round(summary.reads / uploads, 4),
        "ms_per_upload": {"claim": per_upload.get("claim", 0.0), "upload_http": round(upload_call, 2),
                          "http_log_write": per_upload.get("http_log_write", 0.0),
                          "record": per_upload.get("record", 0.0), "prepare_company": per_upload.get("prepare", 0.0)},
        "worker_busy_share": round(meter.totals["drain"] / (concurrency * wall), 3) if wall else 0.0,
        "cpu_ms_per_upload": {"engine_process": round(cpu / uploads * 1000, 2),
                              "emulator_process": round(emulator_cpu / uploads * 1000, 2),
                              "database_server": (round(server_cpu[0] / uploads * 1000, 2) if server_cpu else None)},
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if latency_ms:
        ideal = concurrency / (latency_ms / 1000)
        result["ideal_docs_per_s"] = ideal
        result["fraction_of_ideal"] = round(summary.delivered / wall / ideal, 3)
    return result


def emulator_ceiling(engine: Engine, settings: Settings, keyring: Keyring, company_id: int, *, concurrency: int,
                     total: int, emulator_url: str, emulator_pid: int) -> dict:
    """The emulator alone, without latency: `total` uploads by `concurrency` threads that do nothing but upload
    (`KeepAliveClient`, no database, no claims), so the pass without latency has a ceiling to be read
    against: what this machine's emulator answers when only a bare client calls it."""
    requests.delete(emulator_url + "/_admin/faults", timeout=5).raise_for_status()
    connection = connection_store.find(engine, company_id, Provider.datev, connection_store.LONG_TERM_SLOT)
    assert connection is not None and connection.id is not None
    token = get_valid_token(engine, connection.id, settings=settings, keyring=keyring).value
    with unit_of_work(engine) as s:
        client_id = present(present(s.get(Company, company_id)).datev_client_id)
    contents = [pdf(f"ceiling-{uuid.uuid4().hex}-{n}") for n in range(total)]
    next_one = itertools.count()
    failures: list[str] = []

    def upload_until_done() -> None:
        with KeepAliveClient(settings.datev_documents_base, settings) as http:
            while (n := next(next_one)) < total:
                document = SimpleNamespace(guid=str(uuid.uuid4()), file_name=f"Beleg {n}.pdf",
                                           media_type="application/pdf", document_type=None, note=None)
                result = upload_datev(engine, CallContext(provider="datev", purpose="upload", sink=[]), settings,
                                      access_token=token, client_id=client_id, document=document,
                                      content=contents[n], client=http)
                if result.outcome != Outcome.delivered:
                    failures.append(result.message)

    emulator_cpu_before, cpu_before, started = process_cpu_seconds(emulator_pid), time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=upload_until_done) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu, emulator_cpu = time.process_time() - cpu_before, process_cpu_seconds(emulator_pid) - emulator_cpu_before
    if failures:
        raise RuntimeError(f"the emulator refused {len(failures)} uploads: {failures[0]}")
    return {"concurrency": concurrency, "uploads": total, "docs_per_s": round(total / wall, 1),
            "client_cpu_ms_per_upload": round(cpu / total * 1000, 2),
            "emulator_cpu_ms_per_upload": round(emulator_cpu / total * 1000, 2),
            "emulator_cpu_share": round(emulator_cpu / wall, 2)}


def bench_throughput(quick: bool, *, documents: int | None = None, only_db: str | None = None,
                     profile: bool = True) -> tuple[dict, dict]:
    total = documents or (120 if quick else 400)
    plans = [(1, 4), (4, 4), (4, 8)] if not quick else [(4, 4)]
    meter = Meter()
    engine_pass = core.transfers.engine._Pass
    undo = [meter.wrap(core.documents.lifecycle, "claim", "claim"), meter.wrap(engine_pass, "record", "record"),
            meter.wrap(core.transfers.engine, "upload_datev", "upload_call"),
            meter.wrap(core.providers.http, "_write", "http_log_write"), meter.wrap(engine_pass, "prepare", "prepare"),
            meter.wrap(engine_pass, "drain", "drain")]
    results: dict[str, list[dict]] = {}
    profiles: dict[str, dict] = {}
    try:
        with emulator_process() as (emulator_url, emulator_pid):
            for db, database in databases("throughput", only_db):
                with database() as url:
                    engine, settings, keyring, ids = prepare_fleet(url, emulator_url)
                    runs = []
                    for companies_n, concurrency in plans:
                        chosen = [ids[c] for c in CLIENTS[:companies_n]]
                        for latency in (LATENCY_MS, 0):
                            if latency == 0 and (companies_n, concurrency) != (4, 4):
                                continue
                            run = one_throughput_run(engine, settings, keyring, chosen, concurrency=concurrency,
                                                     latency_ms=latency, total=total, emulator_url=emulator_url,
                                                     emulator_pid=emulator_pid, meter=meter)
                            if latency == 0:
                                ceiling = emulator_ceiling(engine, settings, keyring, chosen[0],
                                                           concurrency=concurrency, total=total,
                                                           emulator_url=emulator_url, emulator_pid=emulator_pid)
                                run["emulator_alone"] = ceiling
                                run["share_of_emulator_alone"] = round(run["docs_per_s"] / ceiling["docs_per_s"], 3)
                                print(f"  {db:<11} the emulator alone, concurrency={concurrency}: "
                                      f"{ceiling['docs_per_s']} docs/s (its CPU {ceiling['emulator_cpu_share']} of one)")
                            runs.append(run)
                            print(f"  {db:<11} companies={companies_n} concurrency={concurrency} latency={latency}ms: "
                                  f"{run['docs_per_s']} docs/s" + (f", {run['fraction_of_ideal']:.0%} of ideal"
                                                                   if latency else ""))
                    results[db] = runs
                    if not profile:
                        engine.dispose()
                        continue
                    # Where the time goes: the 4-company, concurrency-4 pass again, profiled per worker thread.
                    threads = ThreadProfiles()
                    unprofile = threads.wrap(core.transfers.engine._Pass, "drain")
                    try:
                        run = one_throughput_run(engine, settings, keyring, [ids[c] for c in CLIENTS], concurrency=4,
                                                 latency_ms=LATENCY_MS, total=total, emulator_url=emulator_url,
                                                 emulator_pid=emulator_pid, meter=meter)
                    finally:
                        unprofile()
                    profiles[db] = {"run_under_profiler": {k: run[k] for k in ("docs_per_s", "fraction_of_ideal")},
                                    "cpu_ms_per_upload_by_package": threads.cpu_by_package(max(run["uploads"], 1)),
                                    "top_own_time": threads.top(max(run["uploads"], 1))}
                    engine.dispose()
    finally:
        for restore in undo:
            restore()
    return results, profiles


# --- (4) scaling: 1, 2 and 3 scheduler processes on PostgreSQL ------------------------------------


SCALING_COMPANIES = 12
SCALING_DOCUMENTS = 1200
SCALING_PROCESSES = (1, 2, 3)
SCALING_CONCURRENCY = 4  # TRANSFER_CONCURRENCY's default


def prepare_scaling_fleet(database_url: str, emulator_url: str, n_companies: int) -> tuple[Engine, list[int]]:
    """The demo database with `n_companies` DATEV companies (automatic transfer on), each with a Langzeittoken."""
    engine, settings, keyring = demo_database(database_url, emulator_url)
    clients = [*CLIENTS, *extra_client_ids(n_companies - len(CLIENTS))]
    for client_id in clients[2:]:  # 455148-1 and -2 are demo companies already
        number = client_id.split("-")[1]
        companies.create_company(engine, actor=process("bench"), data=companies.CompanyInput(
            f"Bench {number}", "455148", number, Interface.datev.value, True, "Rechnungseingang"))
    with unit_of_work(engine) as s:
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        ids = [id_of(c) for c in s.exec(select(Company)).all() if c.datev_client_id in clients]
        s.exec(update(Company).values(auto_transfer=False))
        s.exec(update(Company).where(col(Company.id).in_(ids)).values(auto_transfer=True))
        s.expunge_all()
    for company_id in ids:
        outcome = log_in_at_datev(engine, settings, keyring, company_id=company_id, user=admin, person="max")
        if not outcome.ok:
            raise RuntimeError(outcome.message)
    return engine, ids


def bench_scaling(processes: tuple[int, ...] = SCALING_PROCESSES, total: int = SCALING_DOCUMENTS) -> dict:
    """N scheduler processes (bench.pass_worker, released together) drain the same due documents of 12
    companies; documents/s from the first start to the last end; CPU per upload of the schedulers
    together, of the emulator and of the database's backends."""
    if not postgres_reachable():
        return {}
    runs = []
    with emulator_process(extra_clients=SCALING_COMPANIES - len(CLIENTS)) as (emulator_url, emulator_pid), \
            postgres_database("scaling") as url:
        engine, ids = prepare_scaling_fleet(url, emulator_url, SCALING_COMPANIES)
        for n in processes:
            approve_documents(engine, ids, total, uuid.uuid4().hex[:8])
            requests.delete(emulator_url + "/_admin/faults", timeout=5).raise_for_status()
            admin_post(emulator_url, "/faults", {"target": "documents", "kind": LATENCY_KIND[0], "latency_ms": LATENCY_MS,
                                                 "count": 100_000})
            with database_server_cpu(url) as server_cpu:
                emulator_before = process_cpu_seconds(emulator_pid)
                results = run_together("bench.pass_worker",
                                       [[url, emulator_url, str(SCALING_CONCURRENCY), f"bench-{n}-{i}"] for i in range(n)],
                                       timeout=900, env={"ENCRYPTION_KEYS": KEY_ENTRY})
                emulator_cpu = process_cpu_seconds(emulator_pid) - emulator_before
            for result in results:
                if result.returncode != 0:
                    raise RuntimeError(f"a pass worker failed: {result.stderr[-2000:]}")
            passes = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
            with unit_of_work(engine) as s:
                left = s.exec(select(func.count()).select_from(Document).where(
                    col(Document.status).in_(["approved", "transferring"]))).one()
            wall = max(p["end"] for p in passes) - min(p["start"] for p in passes)
            delivered, uploads = sum(p["delivered"] for p in passes), max(sum(p["uploads"] for p in passes), 1)
            ideal = n * SCALING_CONCURRENCY / (LATENCY_MS / 1000)
            run = {"processes": n, "companies": len(ids), "documents": total, "delivered": delivered, "left": left,
                   "uploads_per_process": [p["uploads"] for p in passes], "wall_s": round(wall, 2),
                   "docs_per_s": round(delivered / wall, 1), "ideal_docs_per_s": ideal,
                   "fraction_of_ideal": round(delivered / wall / ideal, 3),
                   "cpu_ms_per_upload": {"schedulers": round(sum(p["cpu_s"] for p in passes) / uploads * 1000, 2),
                                         "emulator_process": round(emulator_cpu / uploads * 1000, 2),
                                         "database_server": round(server_cpu[0] / uploads * 1000, 2)},
                   "cpu_share_of_machine": round((sum(p["cpu_s"] for p in passes) + emulator_cpu + server_cpu[0])
                                                 / wall / (os.cpu_count() or 1), 2),
                   "load_average_1min": round(os.getloadavg()[0], 2)}
            runs.append(run)
            print(f"  postgresql  processes={n}: {run['docs_per_s']} docs/s ({run['fraction_of_ideal']:.0%} of "
                  f"{ideal:.0f}), left {left}")
        engine.dispose()
    return {"postgresql": runs}


# --- (3) the idle pass at scale -----------------------------------------------------------------


DOC_COLUMNS = ("company_id", "guid", "status", "file_name", "original_name", "size", "sha256", "media_type",
               "source", "uploaded_at", "uploaded_by", "attempts", "delivered_at", "updated_at", "remote_id")


def _stamp(days_ago: int, sqlite: bool) -> datetime | str:
    """SQLModel stores UTC datetimes on SQLite as naive text; PostgreSQL takes aware values."""
    value = datetime.now(UTC) - timedelta(days=days_ago)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else value


def _document_rows(n_companies: int, n_documents: int, first_company_id: int, sqlite: bool) -> Iterator[tuple]:
    stamp = _stamp(30, sqlite)
    for i in range(n_documents):
        company_id = first_company_id + i % n_companies
        guid = str(uuid.UUID(int=i + 1))
        yield (company_id, guid, "delivered", f"Beleg {i}.pdf", f"Beleg {i}.pdf", 1234, f"{i:064x}",
               "application/pdf", "upload", stamp, "bench", 1, stamp, stamp, guid.upper())


def _company_rows(n_companies: int, sqlite: bool) -> Iterator[tuple]:
    stamp = _stamp(400, sqlite)
    for i in range(n_companies):
        yield (f"Firma {i}", 1000 + i // 99_999, 1 + i % 99_999, "datev", True, "", stamp, stamp)


COMPANY_COLUMNS = ("name", "consultant_number", "client_number", "interface", "auto_transfer", "alarm_recipients",
                   "created_at", "updated_at")


def load_sqlite(database_url: str, n_companies: int, n_documents: int) -> None:
    path = database_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        with conn:
            conn.executemany(f"INSERT INTO company ({', '.join(COMPANY_COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(COMPANY_COLUMNS))})", _company_rows(n_companies, True))
            first = conn.execute("SELECT min(id) FROM company").fetchone()[0]
            conn.executemany(f"INSERT INTO document ({', '.join(DOC_COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(DOC_COLUMNS))})", _document_rows(n_companies, n_documents, first, True))
    finally:
        conn.close()


def load_postgres(engine: Engine, n_companies: int, n_documents: int) -> None:
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None  # an open pool connection has its psycopg connection
        with driver.cursor() as cur:
            with cur.copy(f"COPY company ({', '.join(COMPANY_COLUMNS)}) FROM STDIN") as copy:
                for row in _company_rows(n_companies, False):
                    copy.write_row(row)
            cur.execute("SELECT min(id) FROM company")
            first = cur.fetchone()[0]
            with cur.copy(f"COPY document ({', '.join(DOC_COLUMNS)}) FROM STDIN") as copy:
                for row in _document_rows(n_companies, n_documents, first, False):
                    copy.write_row(row)
        driver.commit()
        with driver.cursor() as cur:
            cur.execute("ANALYZE")  # what autovacuum does after a bulk load
        driver.commit()
    finally:
        raw.close()


def query_plan(engine: Engine) -> list[str]:
    query = select(Document.company_id).where(lifecycle.due(datetime.now(UTC)))  # what a claim looks for
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    sql = str(compiled)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return [str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()]
        return [r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql).all()]


def time_idle(engine: Engine, settings: Settings, keyring: Keyring) -> dict:
    options = PassOptions(trigger="scheduler", actor=process("bench"), only_auto_transfer=True)
    results = {}
    for label, call in (("companies_with_work", lambda: companies_with_work(engine, options, datetime.now(UTC))),
                        ("run_pass", lambda: run_pass(engine, settings, keyring, options))):
        for _ in range(5):
            call()
        samples = []
        for _ in range(IDLE_RUNS):
            started = time.perf_counter()
            outcome = call()
            samples.append((time.perf_counter() - started) * 1000)
            if label == "companies_with_work":
                assert not outcome
            else:
                assert isinstance(outcome, PassSummary) and outcome.uploads == 0
        results[label] = {"median_ms": round(statistics.median(samples), 2),
                          "p95_ms": round(percentile(samples, 0.95), 2)}
    return results


def bench_idle(quick: bool) -> dict:
    sizes = [(100, 10_000), (1_000, 100_000)] if quick else [(1_000, 100_000), (10_000, 1_000_000)]
    results: dict[str, dict] = {}
    keyring = Keyring.parse(KEY_ENTRY)
    for db, database in databases("idle"):
        per_size = {}
        for n_companies, n_documents in sizes:
            with database() as url:
                engine = make_engine(url)
                upgrade_to_head(engine)
                started = time.perf_counter()
                if db == "sqlite":
                    load_sqlite(url, n_companies, n_documents)
                else:
                    load_postgres(engine, n_companies, n_documents)
                load_s = time.perf_counter() - started
                settings = Settings(_env_file=None, app_env="test", database_url=url, encryption_keys=KEY_ENTRY)
                timing = time_idle(engine, settings, keyring)
                per_size[f"{n_companies}x{n_documents}"] = {
                    "companies": n_companies, "documents": n_documents, "load_s": round(load_s, 1), **timing,
                    "plan": query_plan(engine)}
                print(f"  {db:<11} {n_companies:>6} companies {n_documents:>8} documents: "
                      f"run_pass median {timing['run_pass']['median_ms']} ms, p95 {timing['run_pass']['p95_ms']} ms")
                engine.dispose()
        small, large = (per_size[f"{c}x{d}"] for c, d in sizes)
        per_size["ratio_large_to_small"] = {
            label: round(large[label]["median_ms"] / small[label]["median_ms"], 2)
            for label in ("companies_with_work", "run_pass")}
        results[db] = per_size
    return results


# --- report -------------------------------------------------------------------------------------


def print_table(results: dict) -> None:
    if "throughput" in results:
        print("\n(1)+(2) throughput, one pass, emulator latency per upload (ideal = concurrency ÷ latency)")
        print(f"{'database':<11}{'comp.':>6}{'conc.':>6}{'lat ms':>7}{'docs':>6}{'docs/s':>8}{'ideal':>7}{'share':>7}"
              f"{'reads/up':>9}{'claim':>7}{'http':>7}{'log':>7}{'record':>7}{'busy':>6}{'cpu':>6}{'emu cpu':>8}{'db cpu':>7}"
              f"{'load':>6}")
        for db, runs in results["throughput"].items():
            for r in runs:
                ms = r["ms_per_upload"]
                share = f"{r['fraction_of_ideal']:.2f}" if "fraction_of_ideal" in r else "-"
                ideal = f"{r['ideal_docs_per_s']:.0f}" if "ideal_docs_per_s" in r else "-"
                print(f"{db:<11}{r['companies']:>6}{r['concurrency']:>6}{r['latency_ms']:>7}{r['delivered']:>6}"
                      f"{r['docs_per_s']:>8}{ideal:>7}{share:>7}{r['reads_per_upload']:>9}{ms['claim']:>7}"
                      f"{ms['upload_http']:>7}{ms['http_log_write']:>7}{ms['record']:>7}{r['worker_busy_share']:>6}"
                      f"{r['cpu_ms_per_upload']['engine_process']:>6}{r['cpu_ms_per_upload']['emulator_process']:>8}"
                      f"{r['cpu_ms_per_upload'].get('database_server') or '-':>7}{r.get('load_average_1min', '-'):>6}")
        for db, runs in results["throughput"].items():
            for r in runs:
                if "emulator_alone" in r:
                    alone = r["emulator_alone"]
                    print(f"{db:<11} without latency: the pass {r['docs_per_s']} docs/s = {r['share_of_emulator_alone']:.2f} "
                          f"of the emulator alone ({alone['docs_per_s']} docs/s with a bare client, the emulator's CPU "
                          f"{alone['emulator_cpu_share']} of one, {alone['emulator_cpu_ms_per_upload']} ms per upload)")
        print("  (claim/http/log/record: wall ms per upload in each step, per worker; cpu, emu cpu, db cpu: CPU ms per\n"
              "   upload of the engine process, the emulator process and the PostgreSQL backends of the run's database;\n"
              "   load: the machine's 1-minute load average after the pass)")
        for db, profile in results.get("throughput_profile", {}).items():
            print(f"\n  {db}: own CPU time per upload in the worker threads, under the profiler (top 12)")
            print("    by package: " + ", ".join(f"{k} {v}" for k, v in
                                             list(profile["cpu_ms_per_upload_by_package"].items())[:8]))
            for row in profile["top_own_time"][:12]:
                print(f"    {row['own_ms_per_upload']:>7} ms  {row['calls_per_upload']:>6}×  {row['function'][:90]}")
    if results.get("scaling"):
        first = next(iter(results["scaling"].values()))[0]
        print(f"\n(4) scaling: scheduler processes over {first['documents']} documents of {first['companies']} companies, "
              f"TRANSFER_CONCURRENCY {SCALING_CONCURRENCY} each, {LATENCY_MS} ms latency")
        print(f"{'database':<11}{'procs':>6}{'docs/s':>8}{'ideal':>7}{'share':>7}{'sched cpu':>10}{'emu cpu':>8}"
              f"{'db cpu':>7}{'machine':>8}{'load':>6}")
        for db, runs in results["scaling"].items():
            for r in runs:
                c = r["cpu_ms_per_upload"]
                print(f"{db:<11}{r['processes']:>6}{r['docs_per_s']:>8}{r['ideal_docs_per_s']:>7.0f}"
                      f"{r['fraction_of_ideal']:>7.2f}{c['schedulers']:>10}{c['emulator_process']:>8}"
                      f"{c['database_server']:>7}{r['cpu_share_of_machine']:>8}{r['load_average_1min']:>6}")
        print("  (cpu: ms per upload; machine: CPU of schedulers + emulator + database ÷ (wall × CPUs))")
    if "idle" in results:
        print(f"\n(3) pass with nothing to do, {IDLE_RUNS} runs (ms)")
        print(f"{'database':<11}{'size':>18}{'cww median':>11}{'cww p95':>9}{'pass median':>12}{'pass p95':>9}"
              f"{'load s':>8}")
        for db, sizes in results["idle"].items():
            for key, r in sizes.items():
                if key == "ratio_large_to_small":
                    continue
                print(f"{db:<11}{key:>18}{r['companies_with_work']['median_ms']:>11}"
                      f"{r['companies_with_work']['p95_ms']:>9}{r['run_pass']['median_ms']:>12}"
                      f"{r['run_pass']['p95_ms']:>9}{r['load_s']:>8}")
            ratio = sizes["ratio_large_to_small"]
            print(f"{db:<11}{'ratio 10x size':>18}{ratio['companies_with_work']:>11}{'':>9}{ratio['run_pass']:>12}")


# How the emulator spends the latency (emulator/faults.py): "latency" sleeps, then does its work (an answer
# takes latency + the emulator's own time); "answer_after" answers latency after the request arrived, its
# work included, so the ideal (concurrency ÷ latency) is reachable and only the engine's overhead is missing.
LATENCY_KIND = ["answer_after"]  # the default since 2026-11-29 (issue #11's figures from its third look on used it)
# The emulator's HTTP server (throughput only): "werkzeug" (python -m emulator: a new TCP connection per
# call) or "keepalive" (bench.keepalive_emulator: HTTP/1.1 keep-alive, as DATEV's servers).
SERVER = ["werkzeug"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transfers", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("throughput", "idle", "scaling"))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a try run")
    parser.add_argument("--documents", type=int, help="documents per throughput pass (default 400)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), help="one database only")
    parser.add_argument("--no-profile", action="store_true", help="leave out the profiled pass")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes (default: %(default)s)")
    parser.add_argument("--latency-kind", choices=("latency", "answer_after"), default="answer_after",
                        help="latency: sleep, then the emulator's work; answer_after: the answer leaves LATENCY after "
                             "the request arrived, the emulator's work included (default: %(default)s)")
    parser.add_argument("--server", choices=("werkzeug", "keepalive"), default="werkzeug",
                        help="the emulator's HTTP server for the throughput passes (default: %(default)s)")
    args = parser.parse_args(argv)
    LATENCY_KIND[0] = args.latency_kind
    SERVER[0] = args.server
    results: dict[str, object] = {}
    if args.only in (None, "throughput"):
        print("throughput …")
        results["throughput"], results["throughput_profile"] = bench_throughput(
            args.quick, documents=args.documents, only_db=args.db, profile=not args.no_profile)
    if args.only in (None, "idle"):
        print("idle pass at scale …")
        results["idle"] = bench_idle(args.quick)
    if args.only in (None, "scaling"):
        print("scaling: scheduler processes on PostgreSQL …")
        results["scaling"] = bench_scaling(total=args.documents or SCALING_DOCUMENTS)
    print_table(results)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() and args.only else {}
    out.write_text(json.dumps({
        **previous, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "latency_ms": LATENCY_MS, "latency_kind": args.latency_kind, "server": args.server, **results}, indent=2) + "\n")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
