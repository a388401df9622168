"""Start several OS processes that begin their work at the same moment.

Each worker is `python -m <module> <args>`. When its setup is done (imports, database connection)
it prints "ready" and waits for one line on stdin; the parent releases all of them only after every
worker said ready, so the work really starts together (a barrier, no sleeps). Explicit subprocesses rather than multiprocessing:
Streamlit's AppTest replaces `sys.modules['__main__']`, which `spawn` would re-run in the child.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class WorkerResult:
    returncode: int
    stdout: str
    stderr: str


def run_together(module: str, argv_per_worker: list[list[str]], timeout: float = 180,
                 env: dict[str, str] | None = None) -> list[WorkerResult]:
    procs = [
        subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **(env or {})})
        for argv in argv_per_worker
    ]
    for proc in procs:  # barrier: every worker has finished its setup before any is released
        assert proc.stdin is not None and proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            _out, err = proc.communicate()
            raise RuntimeError(f"worker did not get ready: {line!r} {err[-2000:]}")
    for proc in procs:
        assert proc.stdin is not None  # stdin=PIPE above
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append(WorkerResult(proc.returncode, out, err))
    return results


def wait_for_go() -> None:
    """Called by a worker after its setup: say ready, then block until the parent releases all."""
    print("ready", flush=True)
    sys.stdin.readline()
