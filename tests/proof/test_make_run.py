"""`make run` as a newcomer starts it (scripts/run_local.py, the real processes): the first start on an
empty database builds the showcase (a token in every state, 30 days of history), the dashboard and the
scheduler come up, the scheduler's first token care and transfer pass raise nothing, and no alarm reaches
the demo webhook before anyone has done anything. Ctrl-C (SIGTERM) stops all three.

Runs on SQLite, `make run`'s embedded default; tests/core/test_showcase.py covers PostgreSQL too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import requests

from core.platform.config import Settings
from core.platform.db import get_engine
from testkit.showcase import shown_states
from tests.support.fleet import wait_until
from tests.support.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
EVERY_STATE = {"aktiv", "läuft bald ab", "abgelaufen", "ungültig", "widerrufen", "fehlt", "nicht gebunden", "pausiert"}


def test_the_first_make_run_shows_every_state_and_fires_no_alarm(tmp_path: Path) -> None:
    emulator_port, dashboard_port = free_port(), free_port()
    database_url = f"sqlite:///{tmp_path / 'tokendesk.db'}"
    env = {key: value for key, value in os.environ.items()
           if key not in {"ENCRYPTION_KEYS", "ALARM_TARGETS", "ALARM_EMAILS", "SMTP_HOST", "DATABASE_URL"}}
    env |= {"APP_ENV": "development", "DATABASE_URL": database_url,
            "ENCRYPTION_KEY_FILE": str(tmp_path / "encryption.keys"),
            "EMULATOR_URL": f"http://127.0.0.1:{emulator_port}", "PUBLIC_URL": f"http://localhost:{dashboard_port}",
            "EMULATOR_STATE_FILE": str(tmp_path / "emulator" / "state.json"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "scripts/run_local.py"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def said(text: str) -> bool:
        assert proc.poll() is None, "make run stopped:\n" + "".join(lines[-40:])
        return any(text in line for line in lines)

    try:
        wait_until(lambda: said("scheduler: transfer done"), timeout=240, what="the scheduler's first transfer pass")
        wait_until(lambda: said("Uvicorn server started"), timeout=60, what="the dashboard")
        output = "".join(lines)
        assert "showcase: 10 companies" in output, output[-3000:]
        care = next(line for line in lines if "scheduler: token_care done" in line)
        assert "'alarms': 0" in care, care
        assert requests.get(f"http://127.0.0.1:{emulator_port}/_admin/alarms", timeout=5).json() == []
        assert requests.get(f"http://localhost:{dashboard_port}/_stcore/health", timeout=5).ok
        settings = Settings(_env_file=None, app_env="test", database_url=database_url)
        assert set(shown_states(get_engine(database_url), settings).values()) == EVERY_STATE
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        reader.join(timeout=10)
    assert code == 0, "".join(lines[-40:])
    assert any("stopped." in line for line in lines)
