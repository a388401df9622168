"""One scheduler process of the scaling benchmark (bench/transfers.py --only scaling): connect, say
ready, wait for go, run one scheduler pass (it drains every due document it can claim), then print one
JSON line: uploads, delivered, the pass's CPU seconds in this process, wall-clock start and end
(time.time(), comparable across processes on one machine). ENCRYPTION_KEYS comes from the environment.

    python -m bench.pass_worker DATABASE_URL EMULATOR_URL CONCURRENCY INSTANCE
"""

from __future__ import annotations

import json
import sys
import time

from core.platform.config import Settings
from core.platform.db import make_engine
from core.platform.secret_store import keyring_from_settings
from core.transfers.engine import PassOptions, run_pass
from core.users import process
from testkit.workers import wait_for_go


def main(database_url: str, emulator_url: str, concurrency: int, instance: str) -> None:
    settings = Settings(_env_file=None, app_env="test", database_url=database_url, emulator_url=emulator_url,
                        transfer_concurrency=concurrency)
    engine = make_engine(database_url)
    keyring = keyring_from_settings(settings)
    with engine.connect():
        pass
    owner = f"scheduler:{instance}"
    wait_for_go()
    started, cpu = time.time(), time.process_time()
    summary = run_pass(engine, settings, keyring, PassOptions(trigger="scheduler", actor=process(owner),
                                                              only_auto_transfer=True, owner=owner))
    print(json.dumps({"uploads": summary.uploads, "delivered": summary.delivered, "reads": summary.reads,
                      "cpu_s": time.process_time() - cpu, "start": started, "end": time.time()}), flush=True)
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
