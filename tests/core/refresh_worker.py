"""Worker for the refresh race: ask for an access token once; print its fingerprint (never the value)."""

import json
import sys

from core.config import Settings
from core.crypto import fingerprint
from core.db import make_engine
from core.secrets_store import keyring_from_settings
from core.tokens import get_valid_token
from tests.workers import wait_for_go


def main(database_url: str, emulator_url: str, connection_id: int) -> None:
    settings = Settings(_env_file=None, app_env="test", database_url=database_url, emulator_url=emulator_url)
    engine = make_engine(database_url)
    keyring = keyring_from_settings(settings)
    with engine.connect():
        pass
    wait_for_go()
    token = get_valid_token(engine, connection_id, settings=settings, keyring=keyring)
    print(json.dumps({"fingerprint": fingerprint(token.value), "version": token.version}))
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
