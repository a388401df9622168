"""Worker for the refresh race (tests/core/test_refresh_race.py and bench/tokens.py): connect, say
ready, wait for go, ask for an access token once.

Prints one JSON line: the token's fingerprint (never the value), its version, and wall-clock
start/end (time.time(), comparable across processes on one machine; the benchmark reads them).
"""

import json
import sys
import time

from core.connections.access import get_valid_token
from core.platform.config import Settings
from core.platform.crypto import fingerprint
from core.platform.db import make_engine
from core.platform.secret_store import keyring_from_settings
from testkit.workers import wait_for_go


def main(database_url: str, emulator_url: str, connection_id: int) -> None:
    settings = Settings(_env_file=None, app_env="test", database_url=database_url, emulator_url=emulator_url)
    engine = make_engine(database_url)
    keyring = keyring_from_settings(settings)
    with engine.connect():
        pass
    wait_for_go()
    started = time.time()
    token = get_valid_token(engine, connection_id, settings=settings, keyring=keyring)
    ended = time.time()
    print(json.dumps({"fingerprint": fingerprint(token.value), "version": token.version,
                      "start": started, "end": ended}), flush=True)
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
