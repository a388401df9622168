"""Worker for the key-rotation test (tests/security/test_key_rotation.py): a scheduler-like process.

`python -m tests.support.rotation_worker DATABASE_URL INSTANCE_ID refresh|idle`

Loads its keys as scheduler.py does (`get_keyring()` from its environment: ENCRYPTION_KEY_FILE, or
ENCRYPTION_KEYS), starts a heartbeat with its key set, says "ready" and waits for "go". Then, until it
reads "stop" on stdin:
- `refresh`: round after round, forces one refresh of every long-term DATEV token the way the
  scheduler's keepalive does (`get_valid_token(..., stale_version=version)`), then beats with the key
  set it holds now;
- `idle`: beats only (an old process that keeps its key set in memory).
At "stop" it stops its heartbeat and prints one JSON line: rounds, refreshes, errors (type and
message, never a token).
"""

from __future__ import annotations

import json
import sys
import threading

from sqlalchemy import Engine
from sqlmodel import col, select

from core import heartbeat
from core.connections.access import TokenUnavailable, get_valid_token
from core.platform.config import get_settings
from core.platform.db import make_engine, unit_of_work
from core.platform.models import Connection
from core.platform.secret_store import current_keyring, get_keyring, verify_keyring
from testkit.workers import wait_for_go


def connections(engine: Engine) -> list[tuple[int, int]]:
    with unit_of_work(engine) as session:
        rows = session.exec(select(Connection.id, Connection.version).where(
            col(Connection.has_token).is_(True), Connection.slot == "long_term",
            Connection.provider == "datev").order_by(col(Connection.id))).all()
    return [(cid, version) for cid, version in rows if cid is not None]


def main(database_url: str, instance_id: str, mode: str) -> None:
    settings = get_settings()
    engine = make_engine(database_url)
    keyring = get_keyring()
    verify_keyring(engine, keyring)
    heartbeat.start(engine, instance_id, key_ids=keyring.key_ids)
    stop = threading.Event()
    wait_for_go()
    def wait_for_stop() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    rounds = refreshes = 0
    errors: list[str] = []
    while not stop.is_set():
        if mode == "refresh":
            for connection_id, version in connections(engine):
                try:
                    get_valid_token(engine, connection_id, settings=settings, keyring=keyring, stale_version=version)
                    refreshes += 1
                except TokenUnavailable as exc:
                    errors.append(f"TokenUnavailable: {exc.message}")
                    print(errors[-1], file=sys.stderr, flush=True)
                except Exception as exc:  # noqa: BLE001  (reported to the test, which fails on any)
                    errors.append(f"{type(exc).__name__}: {exc}")
                    print(errors[-1], file=sys.stderr, flush=True)
        else:
            stop.wait(0.05)  # idle: only beat, a few times a second
        heartbeat.tick(engine, instance_id, key_ids=current_keyring(keyring).key_ids)
        rounds += 1
    heartbeat.stop(engine, instance_id)
    print(json.dumps({"rounds": rounds, "refreshes": refreshes, "errors": errors}), flush=True)
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
