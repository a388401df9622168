"""Worker for the lost-update test: N read-modify-write rounds on company 1."""

import sys

from core.platform.db import make_engine, unit_of_work
from core.platform.models import Company
from testkit.rows import present
from testkit.workers import wait_for_go


def main(url: str, rounds: int) -> None:
    engine = make_engine(url)
    with engine.connect():
        pass  # connect (and set the pragmas) before the start signal
    wait_for_go()
    for _ in range(rounds):
        with unit_of_work(engine) as s:
            company = present(s.get(Company, 1))
            company.client_number = present(company.client_number) + 1
            s.add(company)
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
