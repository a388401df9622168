"""Worker for the rate-limit test: reserve N slots for one key, print them as ISO times."""

import json
import sys

from core.platform.db import make_engine
from core.platform.ratelimit import reserve
from testkit.workers import wait_for_go


def main(url: str, key: str, count: int) -> None:
    engine = make_engine(url)
    with engine.connect():
        pass
    wait_for_go()
    print(json.dumps([reserve(engine, key, 2.0).isoformat() for _ in range(count)]))
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
