"""`make run`: prepare the embedded default and run emulator, dashboard and scheduler together.

Ctrl-C (or SIGTERM) stops every child process and waits for it; a child that dies takes the
others down with it, so nothing is left running half.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.cli import main as cli_main  # noqa: E402
from core.platform import files  # noqa: E402
from core.platform.config import get_settings  # noqa: E402
from core.platform.db import get_engine  # noqa: E402
from core.platform.secret_store import keyring_from_settings  # noqa: E402
from testkit.showcase import build_showcase, showcase_due  # noqa: E402

# The emulator's state (grants, uploads, received alarms); EMULATOR_STATE_FILE moves it (tests).
EMULATOR_STATE = Path(os.environ.get("EMULATOR_STATE_FILE") or ROOT / "data" / "emulator-state.json")


def start(name: str, argv: list[str]) -> subprocess.Popen:
    print(f"starting {name}: {' '.join(argv)}", flush=True)
    return subprocess.Popen(argv, cwd=ROOT, start_new_session=True)


def stop_all(children: dict[str, subprocess.Popen]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for name, proc in children.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", flush=True)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_emulator(url: str, proc: subprocess.Popen, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url.rstrip('/')}/_admin/health", timeout=2).ok:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def showcase() -> None:
    """The first start on an empty database: a token in every state and 30 days of history
    (testkit/showcase.py), built before the dashboard and the scheduler start. A failure leaves the
    plain demo (users, companies, sample Belege) and says so; the product starts anyway."""
    settings = get_settings()
    print("building the demo showcase (first start only, about a minute) …", flush=True)
    try:
        report = build_showcase(get_engine(settings.database_url), settings, keyring_from_settings(settings))
    except Exception as exc:  # noqa: BLE001  (the demo's extras must not keep the product from starting)
        print(f"the demo showcase could not be built ({type(exc).__name__}: {exc}); starting with what it made "
              "so far (`make clean-data`, then `make run`, starts the demo over)", flush=True)
        return
    print(f"showcase: {len(report.states)} companies, {report.documents} Belege in the history, "
          f"{report.alarms_recorded} alarms recorded as demo data (not sent)", flush=True)


def main() -> int:
    if cli_main(["bootstrap"]) != 0:
        return 1
    settings = get_settings()
    first_start = settings.app_env != "production" and showcase_due(get_engine(settings.database_url))
    files.secure_data_dir(EMULATOR_STATE.parent, create=True)  # the emulator's state too: owner-only
    os.umask(0o077)  # whatever the children create (state file, logs) is owner-only as well
    emulator = urlparse(settings.emulator_url)
    if not (settings.alarm_targets or settings.smtp_host):
        # The demo has no mail server: alarms go to the emulator's demo webhook (listed at /alarms).
        demo_alarms = f"json://{emulator.hostname or '127.0.0.1'}:{emulator.port or 8700}/_demo/alarms"
        os.environ["ALARM_TARGETS"] = demo_alarms  # inherited by the dashboard and the scheduler
        print(f"alarms: no ALARM_TARGETS or SMTP_HOST set, sending them to the emulator ({settings.emulator_url}"
              "/alarms)", flush=True)
    # The emulator's DATEV app knows the dashboard's return addresses, also for another PUBLIC_URL.
    os.environ.setdefault("EMULATOR_DATEV_REDIRECT_URIS", f"{settings.datev_callback_uri},{settings.datev_link_callback_uri}")
    dashboard = urlparse(settings.public_url)
    python = sys.executable
    children = {
        "emulator": start("emulator", [python, "-m", "emulator", "--host", emulator.hostname or "127.0.0.1",
                                       "--port", str(emulator.port or 8700),
                                       "--state-file", str(EMULATOR_STATE)]),
    }
    if first_start:
        try:
            if wait_for_emulator(settings.emulator_url, children["emulator"]):
                showcase()
            else:
                print("the emulator did not answer; starting without the demo showcase", flush=True)
        except KeyboardInterrupt:
            stop_all(children)
            print("stopped.", flush=True)
            return 130
    children |= {
        "dashboard": start("dashboard", [python, "-m", "streamlit", "run", "streamlit_app.py",
                                         "--server.port", str(dashboard.port or 8501),
                                         "--server.address", "localhost"]),
        "scheduler": start("scheduler", [python, "scheduler.py", "--instance-id", "local"]),
    }
    print(f"\nToken Desk: {settings.public_url}  (emulator: {settings.emulator_url})\n"
          "Sign in as admin@tokendesk.demo, operator@tokendesk.demo or viewer@tokendesk.demo.\n"
          "Ctrl-C stops everything.\n", flush=True)

    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    exit_code = 0
    while not stopping:
        for name, proc in children.items():
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}; stopping the others", flush=True)
                exit_code, stopping = 1, True
        time.sleep(0.5)
    stop_all(children)
    print("stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
