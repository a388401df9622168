"""Token Desk scheduler: the unattended process next to the dashboard, on the same database.

`schedule` is only the ticker; all state lives in the database (docs/style.md §3.4). Jobs: transfer pass,
token care (health, proactive refresh, reminders and alarms), alarm retries, housekeeping, inbox
import. A failing
job is logged and the loop goes on. SIGTERM/SIGINT: in-flight uploads finish, claims are released,
exit 0. `--once` runs every job once and exits (cron, systemd timers). Several schedulers on one
PostgreSQL database are safe: work is claimed row by row with leases.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import schedule

from core import heartbeat, jobs
from core.documents.lifecycle import release_claims
from core.jobs import JobContext
from core.platform.config import ConfigurationError, get_settings
from core.platform.crypto import KeyConfigurationError
from core.platform.db import get_engine
from core.platform.errors import UserFacingError
from core.platform.secret_store import current_keyring, get_keyring, verify_keyring
from core.transfers.engine import PassSummary

log = logging.getLogger("scheduler")


HEARTBEAT_SECONDS = 10
Job = Callable[[JobContext], PassSummary | dict[str, Any]]  # a job returns its summary for the log


def beat(ctx: JobContext, last_pass: dict | None = None) -> None:
    """One heartbeat, with the key set this process holds now (it follows a rotated key file)."""
    heartbeat.tick(ctx.engine, ctx.instance_id, last_pass, key_ids=current_keyring(ctx.keyring).key_ids)


def keep_beating(ctx: JobContext) -> None:
    """Tick the heartbeat every few seconds while the process lives, also during a long pass."""
    while not ctx.stop.wait(HEARTBEAT_SECONDS):
        try:
            beat(ctx)
        except Exception:
            log.exception("heartbeat failed")


def run_job(ctx: JobContext, name: str, job: Job) -> None:
    """Run one job; an exception is logged and never stops the loop."""
    started = time.monotonic()
    try:
        result = job(ctx)
        summary = result.as_dict() if hasattr(result, "as_dict") else result
        log.info("%s done in %.2fs: %s", name, time.monotonic() - started, summary)
        beat(ctx, {"job": name, **(summary or {})} if name == "transfer" else None)
    except UserFacingError as exc:  # expected (e.g. a misconfigured inbox folder): one line, no traceback
        log.error("%s failed: %s; the scheduler goes on", name, exc.message)
    except Exception:
        log.exception("%s failed; the scheduler goes on", name)
        try:
            beat(ctx)
        except Exception:
            log.exception("heartbeat failed")


JOBS: list[tuple[str, Job]] = [
    ("housekeeping", jobs.housekeeping),
    ("inbox", jobs.inbox_import),
    ("token_care", jobs.token_care),
    ("alarm_retry", jobs.alarm_retry),
    ("transfer", jobs.transfer_pass),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scheduler.py", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="run every job once and exit")
    parser.add_argument("--instance-id", help="name of this scheduler in the heartbeat (default: host-pid-time)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = get_settings()
        engine = get_engine(settings.database_url)
        keyring = get_keyring()
        verify_keyring(engine, keyring)
    except (ConfigurationError, KeyConfigurationError) as exc:
        print(f"scheduler: cannot start: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()
    ctx = JobContext(engine, settings, keyring, args.instance_id or heartbeat.new_instance_id(), stop)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: finishing in-flight work, then exiting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    heartbeat.start(engine, ctx.instance_id, key_ids=keyring.key_ids)
    log.info("scheduler %s started (%s)", ctx.instance_id, "once" if args.once else "loop")
    try:
        if args.once:
            for name, job in JOBS:
                if not stop.is_set():
                    run_job(ctx, name, job)
            return 0
        ticker = schedule.Scheduler()
        intervals = {"transfer": settings.transfer_interval_seconds,
                     "token_care": settings.token_care_interval_minutes * 60,
                     "housekeeping": settings.housekeeping_interval_minutes * 60,
                     "alarm_retry": settings.alarm_retry_interval_minutes * 60,
                     "inbox": settings.transfer_interval_seconds}
        for name, job in JOBS:
            ticker.every(intervals[name]).seconds.do(run_job, ctx, name, job)
        threading.Thread(target=keep_beating, args=(ctx,), name="heartbeat", daemon=True).start()
        ticker.run_all()  # everything once at start, then on the intervals
        while not stop.is_set():
            ticker.run_pending()
            stop.wait(timeout=max(0.2, min(1.0, ticker.idle_seconds or 1.0)))
        return 0
    finally:
        released = release_claims(engine, ctx.owner)
        heartbeat.stop(engine, ctx.instance_id)
        log.info("scheduler %s stopped (released %d claim(s))", ctx.instance_id, released)


if __name__ == "__main__":
    sys.exit(main())
