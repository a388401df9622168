"""The emulator behind a server with HTTP/1.1 keep-alive (uvicorn, which Streamlit already brings, with
Starlette's WSGI adapter), for the transfer benchmark's `--server keepalive`: werkzeug's development
server, which `python -m emulator` runs on, closes the connection after every answer, so each upload
opens a new TCP connection; DATEV's and Lexware's HTTPS servers keep it open. Only the benchmark uses
this (the fault kinds that cut sockets need werkzeug's socket and stay with the tests).

    python -m bench.keepalive_emulator PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.middleware.wsgi import WSGIMiddleware

from emulator.app import create_app
from emulator.config import EmulatorConfig


def main(port: int) -> None:
    app = WSGIMiddleware(create_app(EmulatorConfig.from_env()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(int(sys.argv[1]))
