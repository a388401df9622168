"""Worker for the cross-process alarm tests. `raise <db> <smtp port> <key>`: raise one alarm and
print whether this process was the one that sent it. `retry <db> <smtp port> <iso now>`: retry the
due alarms at that moment and print how many this process resent."""

import json
import sys
from datetime import datetime

from core.alarms.messages import Alarm
from core.alarms.outbox import raise_alarm, retry_due_alarms
from core.platform.config import Settings
from core.platform.db import make_engine
from testkit.workers import wait_for_go


def main(mode: str, database_url: str, smtp_port: int, argument: str) -> None:
    settings = Settings(_env_file=None, app_env="test", database_url=database_url, smtp_host="127.0.0.1",
                        smtp_port=smtp_port, smtp_tls="none", alarm_emails="buchhaltung@example.com")
    engine = make_engine(database_url)
    with engine.connect():  # connected before the start signal, so the processes race on the insert/claim
        pass
    wait_for_go()
    if mode == "raise":
        outcome = raise_alarm(engine, settings, Alarm(argument, "Token ungültig: Nord GmbH (DATEV)",
                                                      "Bitte neu anmelden.", "error"), company_id=1, timeout=5)
        print(json.dumps({"sent": outcome is not None, "delivered": bool(outcome and outcome.delivered)}))
    else:
        print(retry_due_alarms(engine, settings, now=datetime.fromisoformat(argument), timeout=5), flush=True)
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
