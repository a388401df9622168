"""Worker: verify the keyring at start, as every process does (several start at once)."""

import sys

from core.platform.crypto import Keyring
from core.platform.db import make_engine
from core.platform.secret_store import verify_keyring
from testkit.workers import wait_for_go
from tests.support import TEST_KEY_ENTRY

if __name__ == "__main__":
    engine = make_engine(sys.argv[1])
    with engine.connect():
        pass
    wait_for_go()
    verify_keyring(engine, Keyring.parse(TEST_KEY_ENTRY))
    engine.dispose()
