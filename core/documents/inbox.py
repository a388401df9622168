"""Inbox folders: files dropped into a company's folder become documents (status "neu").

Each file goes through `core.documents.intake.intake` (source "inbox") and is then moved into
`processed/` or `rejected/` (with `<name>.reason.txt`, in German), so nothing is imported twice
and nothing is lost:
- a crash after the import but before the move leaves the file in place; the next run finds the
  same content already stored and moves the file to `rejected/` with "bereits vorhanden";
- files still being written are skipped: names starting with "." or ending in ".part", ".tmp",
  ".crdownload", "~", and files changed in the last few seconds;
- several scheduler processes on one host never work on the same folder at once: a non-blocking
  `flock` on `<inbox>/.tokendesk.lock` lets one process through, the others skip the folder.

Relative folders resolve under INBOX_ROOT.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import col, select

from core.documents import intake
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Company, Interface

log = logging.getLogger(__name__)

ACTOR = "system:inbox"
SOURCE = "inbox"
PROCESSED, REJECTED = "processed", "rejected"
LOCK_NAME = ".tokendesk.lock"
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", "~")
SETTLE_SECONDS = 5.0  # a file changed more recently may still be being written
MAX_READ_BYTES = 25 * 1024 * 1024  # larger files are rejected without reading them (DATEV allows 20 MB)


class InboxError(UserFacingError):
    """A company's inbox folder cannot be used (missing, not a folder, INBOX_ROOT unset)."""


@dataclass
class InboxResult:
    company_id: int
    folder: Path | None = None
    imported: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # left in place, tried again next run
    skipped_busy: bool = False  # another process holds the folder's lock


def resolve_folder(settings: Settings, inbox_dir: str) -> Path:
    """Company.inbox_dir as a path: absolute as given, relative under INBOX_ROOT."""
    path = Path(inbox_dir.strip()).expanduser()
    if path.is_absolute():
        return path
    if settings.inbox_root is None:
        raise InboxError(f"Eingangsordner „{inbox_dir}“ ist relativ, aber INBOX_ROOT ist nicht gesetzt.")
    return Path(settings.inbox_root) / path


def is_partial(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


def pending_files(folder: Path, *, settle_seconds: float = SETTLE_SECONDS, now: float | None = None) -> list[Path]:
    """Complete regular files at the top of the folder, in arrival order (oldest first)."""
    now = time.time() if now is None else now
    found: list[tuple[float, str, Path]] = []
    for entry in os.scandir(folder):
        if is_partial(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            changed = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:  # gone meanwhile
            continue
        if now - changed >= settle_seconds:
            found.append((changed, entry.name, Path(entry.path)))
    return [path for _, _, path in sorted(found)]


@contextmanager
def _folder_lock(folder: Path) -> Iterator[bool]:
    """Non-blocking exclusive lock on the folder; yields False if another process holds it."""
    with open(folder / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_name(folder: Path, name: str) -> Path:
    """`name` in `folder`, or `stem (2).ext`, … when taken (a file is never overwritten)."""
    candidate = folder / name
    stem, suffix = os.path.splitext(name)
    number = 2
    while candidate.exists() or (folder / f"{candidate.name}.reason.txt").exists():
        candidate = folder / f"{stem} ({number}){suffix}"
        number += 1
    return candidate


def _move(path: Path, subfolder: str, reason: str | None = None) -> Path:
    target_dir = path.parent / subfolder
    target_dir.mkdir(exist_ok=True)
    target = _free_name(target_dir, path.name)
    if reason is not None:  # the reason first: a rejected file never sits there without one
        (target_dir / f"{target.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")
    os.replace(path, target)
    return target


def import_folder(engine: Engine, settings: Settings, company_id: int, folder: Path, *,
                  settle_seconds: float = SETTLE_SECONDS) -> InboxResult:
    """Import every complete file of one company's inbox folder."""
    result = InboxResult(company_id, folder)
    if not folder.is_dir():
        raise InboxError(f"Eingangsordner „{folder}“ fehlt oder ist kein Ordner.")
    with _folder_lock(folder) as locked:
        if not locked:
            result.skipped_busy = True
            return result
        for path in pending_files(folder, settle_seconds=settle_seconds):
            _import_file(engine, company_id, path, result)
    return result


def _import_file(engine: Engine, company_id: int, path: Path, result: InboxResult) -> None:
    name = path.name
    try:
        size = path.stat().st_size
        if size > MAX_READ_BYTES:
            reason = f"„{name}“ ist zu groß ({size / 1024 / 1024:.1f} MB)."
        else:
            content = path.read_bytes()
            report = intake.intake(engine, company_id=company_id, files=[(name, content)], actor=ACTOR,
                                      source=SOURCE)
            if report.accepted:
                _move(path, PROCESSED)
                result.imported.append(name)
                return
            reason = report.rejected[0].message if report.rejected else "Datei wurde nicht übernommen."
        _move(path, REJECTED, reason)
        result.rejected.append((name, reason))
    except FileNotFoundError:  # taken away meanwhile: nothing to do
        return
    except OSError as exc:  # unreadable or not movable: leave it, report it, try again next time
        log.error("inbox of company %s: %s: %s", company_id, name, exc)
        result.errors.append((name, f"Datei konnte nicht gelesen oder verschoben werden ({exc.strerror or exc})."))


def inbox_companies(engine: Engine) -> list[Company]:
    """Active companies with an interface and an inbox folder."""
    with unit_of_work(engine) as session:
        rows = session.exec(select(Company).where(
            col(Company.archived_at).is_(None), col(Company.inbox_dir).is_not(None),
            Company.interface != Interface.none.value).order_by(col(Company.id))).all()
        session.expunge_all()
    return [c for c in rows if (c.inbox_dir or "").strip()]


def import_all(engine: Engine, settings: Settings, *, settle_seconds: float = SETTLE_SECONDS) -> dict:
    """The scheduler job: every company's inbox. One broken folder does not stop the others; after
    all folders were served, InboxError names the broken ones (so the scheduler logs it)."""
    imported = rejected = busy = 0
    errors: list[str] = []
    problems: list[str] = []
    for company in inbox_companies(engine):
        try:
            assert company.id is not None
            folder = resolve_folder(settings, company.inbox_dir or "")
            result = import_folder(engine, settings, company.id, folder, settle_seconds=settle_seconds)
        except (UserFacingError, OSError) as exc:
            problems.append(f"{company.name} (#{company.id}): {exc}")
            continue
        imported += len(result.imported)
        rejected += len(result.rejected)
        busy += int(result.skipped_busy)
        errors += [f"{company.name} (#{company.id}): {message}" for _, message in result.errors]
    summary = {"imported": imported, "rejected": rejected, "folders_busy": busy, "file_errors": len(errors)}
    if errors:
        log.error("inbox: files left in place: %s", "; ".join(errors))
    if problems:
        raise InboxError(f"Eingangsordner nicht nutzbar ({summary}): " + "; ".join(problems))
    return summary
