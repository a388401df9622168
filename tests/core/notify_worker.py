"""Worker for the "each alarm once across processes" test: raise one alarm; print whether this
process was the one that sent it."""

import json
import sys

from core.alarms import Alarm
from core.config import Settings
from core.db import make_engine
from core.notify import raise_alarm
from tests.workers import wait_for_go


def main(database_url: str, smtp_port: int, key: str) -> None:
    settings = Settings(_env_file=None, app_env="test", database_url=database_url, smtp_host="127.0.0.1",
                        smtp_port=smtp_port, smtp_tls="none", alarm_emails="buchhaltung@example.com")
    engine = make_engine(database_url)
    with engine.connect():  # connected before the start signal, so the processes race on the insert
        pass
    wait_for_go()
    outcome = raise_alarm(engine, settings, Alarm(key, "Token ungültig: Nord GmbH (DATEV)", "Bitte neu anmelden.",
                                                  "error"), company_id=1, timeout=5)
    print(json.dumps({"sent": outcome is not None, "delivered": bool(outcome and outcome.delivered)}))
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
