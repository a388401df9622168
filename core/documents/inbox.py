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

Confinement (security): an inbox folder is a sub-folder of INBOX_ROOT, given relative to it (or as an
absolute path inside it); without INBOX_ROOT inbox folders are off. `~`, `..`, and a symbolic link
anywhere between INBOX_ROOT and the folder are refused, and the real path must lie inside the real
INBOX_ROOT. The scheduler checks this again at every run (the disk may have changed since the
company was saved), and walks down from INBOX_ROOT with `O_NOFOLLOW` directory handles, so a folder
swapped for a link meanwhile is refused too. Inside the folder nothing is followed: files are opened
with `O_NOFOLLOW` and must be regular files, `processed/`, `rejected/` and the lock file are refused
when they are symbolic links, and every move, reason file and lock works relative to the folder's
handle. A symbolic link dropped into the inbox is moved (the link itself) to `rejected/`, never read.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy import Engine
from sqlmodel import col, select

from core.documents import intake
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Company, Interface
from core.users import process

log = logging.getLogger(__name__)

ACTOR = "system:inbox"
SOURCE = "inbox"
PROCESSED, REJECTED = "processed", "rejected"
LOCK_NAME = ".tokendesk.lock"
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", "~")
SETTLE_SECONDS = 5.0  # a file changed more recently may still be being written
MAX_READ_BYTES = 25 * 1024 * 1024  # larger files are rejected without reading them (DATEV allows 20 MB)
MAX_INBOX_DIR_LENGTH = 500

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO must not block the run


class InboxError(UserFacingError):
    """A company's inbox folder cannot be used (missing, not a folder, outside INBOX_ROOT, a link, INBOX_ROOT unset)."""


@dataclass
class InboxResult:
    company_id: int
    folder: Path | None = None
    imported: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # left in place, tried again next run
    skipped_busy: bool = False  # another process holds the folder's lock


# --- confinement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfinedFolder:
    """An inbox folder as INBOX_ROOT (configured and real) plus the names below it."""

    root: Path  # INBOX_ROOT as configured (for messages and the returned path)
    real_root: Path  # INBOX_ROOT with every link resolved (the operator's choice; trusted)
    parts: tuple[str, ...]  # the folder's names below INBOX_ROOT, none of them a link

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.parts)


def _inbox_root(settings: Settings) -> tuple[Path, Path]:
    if settings.inbox_root is None:
        raise InboxError("Eingangsordner sind ausgeschaltet: INBOX_ROOT ist nicht gesetzt. "
                         "Bitte den Betrieb bitten, INBOX_ROOT einzurichten, oder das Feld leer lassen.")
    root = Path(settings.inbox_root)
    if not root.is_absolute():
        root = Path.cwd() / root
    return root, Path(os.path.realpath(root))


def _relative_parts(text: str, root: Path, real_root: Path) -> tuple[str, ...]:
    """The names of `text` below INBOX_ROOT; refuses `~`, `..`, empty and outside paths (no disk access)."""
    if "\0" in text:
        raise InboxError("Der Eingangsordner enthält ein unzulässiges Zeichen.")
    if text.startswith("~"):
        raise InboxError(f"Eingangsordner „{text}“: „~“ ist nicht erlaubt. Bitte einen Unterordner von "
                         "INBOX_ROOT angeben.")
    raw = PurePosixPath(text.replace("\\", "/"))
    if ".." in raw.parts:
        raise InboxError(f"Eingangsordner „{text}“: „..“ ist nicht erlaubt.")
    if raw.is_absolute():
        for base in (root, real_root):
            try:
                raw = PurePosixPath(raw.relative_to(PurePosixPath(base)))
                break
            except ValueError:
                continue
        else:
            raise InboxError(f"Eingangsordner „{text}“ liegt außerhalb von INBOX_ROOT ({root}). Bitte einen "
                             "Unterordner von INBOX_ROOT angeben (am besten relativ, z. B. „musterfirma“).")
    parts = tuple(p for p in raw.parts if p not in ("", "."))
    if not parts:
        raise InboxError(f"Eingangsordner „{text}“ ist INBOX_ROOT selbst. Bitte einen Unterordner angeben.")
    return parts


def confine(settings: Settings, inbox_dir: str | Path, *, must_exist: bool = True) -> ConfinedFolder:
    """Check a company's inbox folder against INBOX_ROOT (see the module docstring).

    With `must_exist=False` (validation when a company is saved) a folder that does not exist yet is
    accepted as long as no existing part of it is a link and what exists lies inside INBOX_ROOT.
    """
    root, real_root = _inbox_root(settings)
    text = str(inbox_dir).strip()
    parts = _relative_parts(text, root, real_root)
    current = real_root
    for depth, name in enumerate(parts):
        current = current / name
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            if must_exist:
                raise InboxError(f"Eingangsordner „{text}“ fehlt oder ist kein Ordner.") from None
            break
        except OSError as exc:
            raise InboxError(f"Eingangsordner „{text}“ ist nicht lesbar ({exc.strerror or exc}).") from None
        if stat.S_ISLNK(info.st_mode):
            shown = "/".join(parts[: depth + 1])
            raise InboxError(f"Eingangsordner „{text}“: „{shown}“ ist ein symbolischer Link. Links werden "
                             "nicht verfolgt; bitte einen echten Unterordner von INBOX_ROOT angeben.")
        if not stat.S_ISDIR(info.st_mode):
            raise InboxError(f"Eingangsordner „{text}“ fehlt oder ist kein Ordner.")
    else:  # every part exists: its real path must be inside the real INBOX_ROOT (belt and braces)
        real = Path(os.path.realpath(real_root.joinpath(*parts)))
        if real != real_root and real_root not in real.parents:
            raise InboxError(f"Eingangsordner „{text}“ liegt außerhalb von INBOX_ROOT ({root}).")
    return ConfinedFolder(root, real_root, parts)


def check_inbox_dir(settings: Settings, inbox_dir: str) -> str | None:
    """For company validation: None if `inbox_dir` may be saved, else the German reason."""
    try:
        confine(settings, inbox_dir, must_exist=False)
    except InboxError as exc:
        return exc.message
    return None


def resolve_folder(settings: Settings, inbox_dir: str) -> Path:
    """Company.inbox_dir as a path under INBOX_ROOT, after the confinement check (raises InboxError)."""
    return confine(settings, inbox_dir).path


@contextmanager
def _open_folder(folder: ConfinedFolder) -> Iterator[int]:
    """A directory handle of the folder, walked down from the real INBOX_ROOT without following any link."""
    fd = os.open(folder.real_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in folder.parts:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise InboxError(f"Eingangsordner „{folder.path}“: „{name}“ ist ein symbolischer Link.") from None
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise InboxError(f"Eingangsordner „{folder.path}“ fehlt oder ist kein Ordner.") from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


# --- inside the folder: nothing is followed ---------------------------------------------------


def is_partial(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _pending(dir_fd: int, *, settle_seconds: float, now: float) -> tuple[list[str], list[str]]:
    """(complete regular files in arrival order, symbolic links) at the top of the folder."""
    found: list[tuple[float, str]] = []
    links: list[str] = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if is_partial(entry.name) or entry.name in (PROCESSED, REJECTED):
                continue
            if entry.is_symlink():
                links.append(entry.name)
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                changed = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:  # gone meanwhile
                continue
            if now - changed >= settle_seconds:
                found.append((changed, entry.name))
    return [name for _, name in sorted(found)], sorted(links)


def pending_files(folder: Path, *, settle_seconds: float = SETTLE_SECONDS, now: float | None = None) -> list[Path]:
    """Complete regular files at the top of the folder, in arrival order (oldest first)."""
    fd = os.open(folder, _DIR_FLAGS)
    try:
        names, _links = _pending(fd, settle_seconds=settle_seconds, now=time.time() if now is None else now)
    finally:
        os.close(fd)
    return [folder / name for name in names]


@contextmanager
def _folder_lock(dir_fd: int, shown: Path) -> Iterator[bool]:
    """Non-blocking exclusive lock on the folder; yields False if another process holds it.

    The lock file is opened with O_NOFOLLOW: a link named `.tokendesk.lock` is refused, so nothing
    outside the inbox is ever created or opened through it."""
    try:
        handle = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InboxError(f"Eingangsordner „{shown}“: die Sperrdatei {LOCK_NAME} ist ein symbolischer Link; "
                             "der Ordner wird nicht gelesen.") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise InboxError(f"Eingangsordner „{shown}“: {LOCK_NAME} ist keine normale Datei.")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


def _subfolder(dir_fd: int, name: str, shown: Path) -> int:
    """A handle of `processed/` or `rejected/`, created if missing; refused if it is a link or no folder."""
    try:
        os.mkdir(name, dir_fd=dir_fd)
    except FileExistsError:
        pass
    if _is_link(dir_fd, name):
        raise InboxError(f"Eingangsordner „{shown}“: „{name}“ ist ein symbolischer Link; es wird nichts "
                         "dorthin verschoben.")
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InboxError(f"Eingangsordner „{shown}“: „{name}“ ist kein Ordner.") from None
        raise


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _free_name(dir_fd: int, name: str) -> str:
    """`name` in the folder, or `stem (2).ext`, … when taken (a file is never overwritten)."""
    candidate = name
    stem, suffix = os.path.splitext(name)
    number = 2
    while _exists(dir_fd, candidate) or _exists(dir_fd, f"{candidate}.reason.txt"):
        candidate = f"{stem} ({number}){suffix}"
        number += 1
    return candidate


class _Folder:
    """The open inbox folder: moves and reason files relative to its handle, links never followed."""

    def __init__(self, dir_fd: int, shown: Path) -> None:
        self.fd, self.shown = dir_fd, shown
        self._subfolders: dict[str, int] = {}

    def close(self) -> None:
        for fd in self._subfolders.values():
            os.close(fd)
        self._subfolders.clear()

    def _sub(self, name: str) -> int:
        if name not in self._subfolders:
            self._subfolders[name] = _subfolder(self.fd, name, self.shown)
        return self._subfolders[name]

    def move(self, name: str, subfolder: str, reason: str | None = None) -> str:
        target_fd = self._sub(subfolder)
        target = _free_name(target_fd, name)
        if reason is not None:  # the reason first: a rejected file never sits there without one
            handle = os.open(f"{target}.reason.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o666, dir_fd=target_fd)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(reason + "\n")
        os.rename(name, target, src_dir_fd=self.fd, dst_dir_fd=target_fd)  # moves a link itself, never its target
        return target

    def read(self, name: str) -> bytes | str:
        """The content of a regular file, or the German reason why it is not read."""
        try:
            handle = os.open(name, _FILE_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"„{name}“ ist ein symbolischer Link und wird nicht gelesen."
            raise
        try:
            info = os.fstat(handle)
            if not stat.S_ISREG(info.st_mode):
                return f"„{name}“ ist keine normale Datei."
            if info.st_size > MAX_READ_BYTES:
                return f"„{name}“ ist zu groß ({info.st_size / 1024 / 1024:.1f} MB)."
            chunks: list[bytes] = []
            remaining = MAX_READ_BYTES + 1
            while remaining > 0:
                chunk = os.read(handle, min(remaining, 1024 * 1024))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            content = b"".join(chunks)
            if len(content) > MAX_READ_BYTES:  # grew after the size check
                return f"„{name}“ ist zu groß ({len(content) / 1024 / 1024:.1f} MB)."
            return content
        finally:
            os.close(handle)


def import_folder(engine: Engine, settings: Settings, company_id: int, folder: Path, *,
                  settle_seconds: float = SETTLE_SECONDS) -> InboxResult:
    """Import every complete file of one company's inbox folder (confinement checked again here)."""
    confined = confine(settings, folder)
    result = InboxResult(company_id, confined.path)
    with _open_folder(confined) as dir_fd, _folder_lock(dir_fd, confined.path) as locked:
        if not locked:
            result.skipped_busy = True
            return result
        for name in (PROCESSED, REJECTED):  # before anything is imported: a link there refuses the folder
            if _is_link(dir_fd, name):
                raise InboxError(f"Eingangsordner „{confined.path}“: „{name}“ ist ein symbolischer Link; "
                                 "der Ordner wird nicht gelesen.")
        names, links = _pending(dir_fd, settle_seconds=settle_seconds, now=time.time())
        inbox = _Folder(dir_fd, confined.path)
        try:
            for name in links:
                _reject(inbox, company_id, name, f"„{name}“ ist ein symbolischer Link und wird nicht gelesen.",
                        result)
            for name in names:
                _import_file(engine, inbox, company_id, name, result)
        finally:
            inbox.close()
    return result


def _reject(inbox: _Folder, company_id: int, name: str, reason: str, result: InboxResult) -> None:
    try:
        inbox.move(name, REJECTED, reason)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.error("inbox of company %s: %s: %s", company_id, name, exc)
        result.errors.append((name, f"Datei konnte nicht verschoben werden ({exc.strerror or exc})."))
        return
    result.rejected.append((name, reason))


def _import_file(engine: Engine, inbox: _Folder, company_id: int, name: str, result: InboxResult) -> None:
    try:
        content = inbox.read(name)
        if isinstance(content, str):
            reason = content
        else:
            report = intake.intake(engine, company_id=company_id, files=[(name, content)], actor=process(ACTOR),
                                   source=SOURCE)
            if report.accepted:
                inbox.move(name, PROCESSED)
                result.imported.append(name)
                return
            reason = report.rejected[0].message if report.rejected else "Datei wurde nicht übernommen."
        inbox.move(name, REJECTED, reason)
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
    folders = inbox_companies(engine)
    if folders and settings.inbox_root is None:  # inbox folders are off: flag the ones still set, read none
        raise InboxError("Eingangsordner sind ausgeschaltet (INBOX_ROOT ist nicht gesetzt); nicht gelesen: "
                         + "; ".join(f"{c.name} (#{c.id})" for c in folders))
    for company in folders:
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
