"""Worker for the short-token test (tests/core/connections/test_refresh_race.py): THREADS threads use one
connection's token for SECONDS seconds, each call a real DATEV API call; a 401 renews once for all
(stale_version), as the transfer engine does.

Prints one JSON line: calls made, 401s seen, other errors.
"""

import json
import sys
import threading
import time

from core.connections.access import TokenUnavailable, get_valid_token
from core.platform.config import Settings
from core.platform.db import make_engine
from core.platform.secret_store import keyring_from_settings
from core.providers.datev import DatevApiError, get_client
from core.providers.http import CallContext
from testkit.workers import wait_for_go

PACE_SECONDS = 0.02  # between two calls of one thread: a steady load, not a synchronisation


def main(database_url: str, emulator_url: str, connection_id: int, threads: int, seconds: float) -> None:
    settings = Settings(_env_file=None, app_env="test", database_url=database_url, emulator_url=emulator_url)
    engine = make_engine(database_url)
    keyring = keyring_from_settings(settings)
    with engine.connect():
        pass
    counts = {"calls": 0, "refused": 0}
    errors: list[str] = []
    lock = threading.Lock()
    wait_for_go()
    end = time.monotonic() + seconds

    def use() -> None:
        ctx = CallContext(provider="datev", purpose="busy", connection_id=connection_id)
        while time.monotonic() < end:
            try:
                token = get_valid_token(engine, connection_id, settings=settings, keyring=keyring)
                try:
                    get_client(engine, ctx, settings, token.value, "455148-1")
                    with lock:
                        counts["calls"] += 1
                except DatevApiError as exc:
                    if exc.status != 401:
                        raise
                    with lock:
                        counts["refused"] += 1
                    get_valid_token(engine, connection_id, settings=settings, keyring=keyring,
                                    stale_version=token.version)
            except (TokenUnavailable, DatevApiError) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(PACE_SECONDS)

    workers = [threading.Thread(target=use) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({**counts, "errors": errors[:20]}), flush=True)
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
