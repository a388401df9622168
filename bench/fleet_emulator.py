"""The emulator for the scaling benchmark, in its own process: the demo data plus more DATEV clients of
consultant 455148 (Belege online, rights for "max"), so a pass can serve more companies than the demo has.

    python -m bench.fleet_emulator PORT EXTRA_CLIENTS   (clients 455148-6 … 455148-(5+EXTRA_CLIENTS))
"""

from __future__ import annotations

import logging
import sys

from werkzeug.serving import run_simple

from emulator.app import create_app
from emulator.config import EmulatorConfig
from emulator.demo_data import DEFAULT_DOCUMENT_TYPES

FIRST_EXTRA = 6


def extra_client_ids(count: int) -> list[str]:
    return [f"455148-{n}" for n in range(FIRST_EXTRA, FIRST_EXTRA + count)]


def main(port: int, extra: int) -> None:
    app = create_app(EmulatorConfig.from_env())
    state = app.extensions["token_desk_emulator"]
    with state.lock:
        for client_id in extra_client_ids(extra):
            number = int(client_id.split("-")[1])
            state.data["companies"][client_id] = {
                "id": client_id, "consultant_number": 455148, "client_number": number, "name": f"Bench {number}",
                "belege_online": True, "document_types": [dict(t) for t in DEFAULT_DOCUMENT_TYPES]}
            state.data["persons"]["max"]["rights"].append(client_id)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # as `python -m emulator --quiet`: no line per request
    run_simple("127.0.0.1", port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
