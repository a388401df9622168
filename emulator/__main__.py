"""python -m emulator --host 127.0.0.1 --port 8700 [--state-file data/emulator-state.json] [--quiet]"""

from __future__ import annotations

import argparse
import logging

from werkzeug.serving import run_simple

from .app import create_app
from .config import EmulatorConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description="Token Desk DATEV/Lexware emulator")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (keep it on loopback)")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--state-file", default=None, help="JSON file to persist state across restarts")
    parser.add_argument("--quiet", action="store_true",
                        help="no line per request (benchmarks: werkzeug's request log costs CPU on every call)")
    args = parser.parse_args(argv)
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    overrides = {"state_file": args.state_file} if args.state_file else {}
    config = EmulatorConfig.from_env(**overrides)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("WARNING: the emulator's admin API is unauthenticated; never expose it beyond loopback.")
    run_simple(args.host, args.port, create_app(config), threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
