"""Owner-only files at rest: the SQLite database (with its -wal and -shm), `data/` and what lies in it.

The database holds documents and the audit trail, `data/` the local key file and the emulator's
state: none of it is for other users of the machine. New files are created 0600 and directories
0700; files and directories found with wider modes are fixed at start, with a warning in the log
(English, path and modes only). Links are never followed or changed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from core.platform.config import DATA_DIR

log = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def tighten(path: Path) -> bool:
    """Take group and other permissions away from a file or directory. True if its mode was changed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode) or not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        return False
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return False
    os.chmod(path, mode & ~0o077)  # not a link (checked above with lstat)
    log.warning("%s was accessible to other users (mode %04o); changed to owner-only (%04o)", path, mode,
                mode & ~0o077)
    return True


def private_dir(path: Path) -> None:
    """Create `path` (0700) if missing, and make it owner-only if it exists with wider modes."""
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        tighten(path)
    except FileNotFoundError:  # its parent is missing: create that normally, this one owner-only
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        tighten(path)


def private_file(path: Path, *, create: bool = False) -> None:
    """Make `path` owner-only (0600); with `create`, create it empty if missing."""
    if create:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             PRIVATE_FILE_MODE))
            return
        except FileExistsError:
            pass
    tighten(path)


def secure_data_dir(data_dir: Path | None = None, *, create: bool = False) -> None:
    """`data/` owner-only (0700), and every regular file directly in it (0600)."""
    data_dir = DATA_DIR if data_dir is None else data_dir
    if create:
        private_dir(data_dir)
    elif not data_dir.is_dir():
        return
    tighten(data_dir)
    with os.scandir(data_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                tighten(Path(entry.path))


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None (another database, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


def protect_sqlite(url: str) -> None:
    """Before SQLite opens the file: create it 0600 if missing (its -wal and -shm inherit the mode),
    fix it and its companions if they are wider, and `data/` when the database lives there."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        return  # nothing to protect yet (SQLite will fail to open it, as before)
    if path.parent.resolve() == DATA_DIR.resolve():
        secure_data_dir(path.parent)
    private_file(path, create=True)
    for suffix in SQLITE_COMPANIONS:
        tighten(path.with_name(path.name + suffix))
