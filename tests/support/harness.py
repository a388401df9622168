"""Real servers for browser tests: the dashboard (`streamlit run`) with its own database and key."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_auth_secrets(path: Path, dashboard_port: int, emulator_url: str) -> None:
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "http://localhost:{dashboard_port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        'client_id = "token-desk-dashboard"\n'
        'client_secret = "demo-dashboard-secret"\n'
        f'server_metadata_url = "{emulator_url}/idp/.well-known/openid-configuration"\n'
    )


class DashboardServer:
    """`streamlit run streamlit_app.py` on a free port; the log is printed if the test fails."""

    def __init__(self, workdir: Path, database_url: str, emulator_url: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / f"dashboard-{self.port}.log"
        secrets_path = workdir / f"secrets-{self.port}.toml"
        write_auth_secrets(secrets_path, self.port, emulator_url)
        self.env = {
            **os.environ, "APP_ENV": "test", "DATABASE_URL": database_url, "EMULATOR_URL": emulator_url,
            "PUBLIC_URL": self.url, **(env or {}),
        }
        self.argv = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
                     "--server.port", str(self.port), "--server.address", "localhost",
                     "--server.headless", "true", "--browser.gatherUsageStats", "false",
                     "--server.fileWatcherType", "none", "--secrets.files", str(secrets_path)]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> DashboardServer:
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dashboard exited early:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/_stcore/health", timeout=1).text == "ok":
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)  # polling a health endpoint, not synchronising test steps
        raise RuntimeError(f"dashboard did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def __exit__(self, *exc_info: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def require_chromium() -> Path:
    found = CHROMIUM if CHROMIUM.exists() else (Path(p) if (p := shutil.which("chromium")) else None)
    if found is None:
        raise RuntimeError("Debian's chromium is required for browser tests: apt-get install chromium")
    return found


@contextmanager
def evidence_on_failure(page: Page, server: DashboardServer, folder: Path) -> Iterator[None]:
    """A failing browser step leaves a screenshot (failure.png in `folder`) and prints the server log."""
    try:
        yield
    except Exception:
        page.screenshot(path=str(folder / "failure.png"))
        print(server.log())
        raise
