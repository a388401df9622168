"""Inbox confinement (issue 9, "an inbox folder can be any directory" and "symlinks inside an inbox are
followed"), on SQLite and PostgreSQL.

A company's inbox folder must lie inside INBOX_ROOT (real path, no links, no `~`, no `..`); without
INBOX_ROOT none is read. Inside an inbox nothing is followed: a `rejected`, `processed` or
`.tokendesk.lock` link, or a file that is a link, never makes the scheduler create, move or read
anything outside the inbox. Each test builds an "outside" directory next to INBOX_ROOT (a stand-in for
/etc or another company's files) and asserts that it is exactly as before.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from core import companies, jobs
from core.companies import CompanyInput
from core.demo import seed_demo
from core.documents.inbox import InboxError, import_all
from core.platform.config import Settings, get_settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import ValidationFailed
from core.platform.models import Company, Document
from testkit.samples import pdf


def drop(folder: Path, name: str, content: bytes) -> Path:
    """A finished scanner file (old enough to be taken)."""
    path = folder / name
    path.write_bytes(content)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Everything below `folder` (links as their target text), to prove nothing changed there."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = path.read_bytes()
        else:
            found[key] = "dir"
    return found


def documents(engine: Engine) -> list[str]:
    with unit_of_work(engine) as session:
        return [d.original_name for d in session.exec(select(Document).order_by(col(Document.id))).all()]


def set_inbox_dir(engine: Engine, inbox_dir: str | None) -> int:
    """Store an inbox folder directly (as an old version's validation let it through)."""
    seed_demo(engine)
    with unit_of_work(engine) as session:
        company = session.exec(select(Company).where(Company.client_number == 1)).one()
        company.inbox_dir = inbox_dir
        session.add(company)
        assert company.id is not None
        return company.id


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(INBOX_ROOT with an empty folder "musterfirma", an outside folder with a config file and a PDF)."""
    root = tmp_path / "eingang"
    (root / "musterfirma").mkdir(parents=True)
    outside = tmp_path / "etc"
    outside.mkdir()
    drop(outside, "app.conf", b"password = geheim\n")
    drop(outside, "passwd", b"root:x:0:0:root:/root:/bin/bash\n")
    drop(outside, "Rechnung.pdf", pdf("draussen"))
    return root, outside


def with_root(root: Path | None) -> Settings:
    return Settings(_env_file=None, app_env="test", inbox_root=root)


# --- validation (saving a company) --------------------------------------------------------------


@pytest.fixture
def process_root(monkeypatch: pytest.MonkeyPatch, layout: tuple[Path, Path]) -> Path:
    """INBOX_ROOT for the process settings that companies.validate uses when saving."""
    root, _outside = layout
    monkeypatch.setenv("INBOX_ROOT", str(root))
    get_settings.cache_clear()
    return root


def company(inbox_dir: str) -> CompanyInput:
    return CompanyInput("Musterfirma GmbH", "455148", "1", "datev", True, "Rechnungseingang", inbox_dir=inbox_dir)


@pytest.mark.parametrize("escape", ["/etc", "~", "~root/.ssh", "~/eingang", "musterfirma/../../etc"])
def test_saving_a_company_refuses_paths_outside_inbox_root(process_root: Path, escape: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        companies.validate(company(escape))
    message = info.value.field_errors["inbox_dir"]
    assert any(word in message for word in ("außerhalb", "„~“", "„..“")), message


def test_saving_a_company_refuses_an_absolute_path_elsewhere(process_root: Path,
                                                             layout: tuple[Path, Path]) -> None:
    _root, outside = layout
    with pytest.raises(ValidationFailed) as info:
        companies.validate(company(str(outside)))
    assert "außerhalb von INBOX_ROOT" in info.value.field_errors["inbox_dir"]


def test_saving_a_company_refuses_a_symlinked_folder(process_root: Path, layout: tuple[Path, Path]) -> None:
    _root, outside = layout
    (process_root / "flucht").symlink_to(outside)  # a real escape
    (process_root / "abkuerzung").symlink_to(process_root / "musterfirma")  # a link, even if it stays inside
    for linked in ("flucht", "abkuerzung", str(process_root / "flucht"), "flucht/unterordner"):
        with pytest.raises(ValidationFailed) as info:
            companies.validate(company(linked))
        assert "symbolischer Link" in info.value.field_errors["inbox_dir"], linked


def test_saving_a_company_accepts_folders_inside_inbox_root(process_root: Path) -> None:
    assert companies.validate(company("musterfirma")).inbox_dir == "musterfirma"
    assert companies.validate(company("neu/noch-nicht-angelegt")).inbox_dir == "neu/noch-nicht-angelegt"
    inside = str(process_root / "musterfirma")
    assert companies.validate(company(inside)).inbox_dir == inside


def test_without_inbox_root_no_inbox_folder_can_be_saved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INBOX_ROOT", raising=False)
    get_settings.cache_clear()
    for inbox_dir in ("musterfirma", str(tmp_path)):
        with pytest.raises(ValidationFailed) as info:
            companies.validate(company(inbox_dir))
        assert "INBOX_ROOT ist nicht gesetzt" in info.value.field_errors["inbox_dir"]
    assert companies.validate(company("")).inbox_dir is None  # no folder: fine


# --- the scheduler's inbox job ------------------------------------------------------------------


def run_job(engine: Engine, keyring: Keyring, settings: Settings) -> object:
    """The scheduler's inbox job, as scheduler.py runs it."""
    return jobs.inbox_import(jobs.JobContext(engine, settings, keyring, "test", threading.Event()))


def test_the_job_refuses_an_absolute_folder_outside_inbox_root(engine: Engine, keyring: Keyring,
                                                               layout: tuple[Path, Path]) -> None:
    root, outside = layout
    before = snapshot(outside)
    set_inbox_dir(engine, str(outside))  # e.g. "/etc", stored before this check existed

    with pytest.raises(InboxError, match="außerhalb von INBOX_ROOT"):
        run_job(engine, keyring, with_root(root))

    assert documents(engine) == []
    assert snapshot(outside) == before  # nothing read into a document, nothing moved to rejected/


def test_the_job_reads_no_inbox_folder_without_inbox_root(engine: Engine, keyring: Keyring,
                                                          layout: tuple[Path, Path]) -> None:
    _root, outside = layout
    before = snapshot(outside)
    set_inbox_dir(engine, str(outside))

    with pytest.raises(InboxError, match="ausgeschaltet"):
        run_job(engine, keyring, with_root(None))

    assert documents(engine) == []
    assert snapshot(outside) == before


def test_the_job_checks_again_when_the_folder_became_a_link(engine: Engine, keyring: Keyring,
                                                            layout: tuple[Path, Path]) -> None:
    """Valid and working at first, swapped for a link to another directory on disk afterwards."""
    root, outside = layout
    settings = with_root(root)
    set_inbox_dir(engine, "musterfirma")
    drop(root / "musterfirma", "Rechnung 1.pdf", pdf("eins"))
    assert run_job(engine, keyring, settings) == {"imported": 1, "rejected": 0, "folders_busy": 0, "file_errors": 0}
    (root / "musterfirma").rename(root / "alt")
    (root / "musterfirma").symlink_to(outside)
    before = snapshot(outside)

    with pytest.raises(InboxError, match="symbolischer Link"):
        run_job(engine, keyring, settings)

    assert documents(engine) == ["Rechnung 1.pdf"]  # only the file from before the swap
    assert snapshot(outside) == before


def test_a_rejected_link_moves_nothing_outside(engine: Engine, keyring: Keyring, layout: tuple[Path, Path]) -> None:
    root, outside = layout
    folder = root / "musterfirma"
    set_inbox_dir(engine, "musterfirma")
    drop(folder, "kaputt.pdf", b"%PDF-1.4 kein echtes PDF")
    (folder / "rejected").symlink_to(outside)
    before = snapshot(outside)

    with pytest.raises(InboxError, match="„rejected“ ist ein symbolischer Link"):
        run_job(engine, keyring, with_root(root))

    assert snapshot(outside) == before
    assert (folder / "kaputt.pdf").is_file()  # left in place, not lost


def test_a_processed_link_moves_and_imports_nothing(engine: Engine, keyring: Keyring,
                                                    layout: tuple[Path, Path]) -> None:
    root, outside = layout
    folder = root / "musterfirma"
    set_inbox_dir(engine, "musterfirma")
    drop(folder, "Rechnung 1.pdf", pdf("eins"))
    (folder / "processed").symlink_to(outside)
    before = snapshot(outside)

    with pytest.raises(InboxError, match="„processed“ ist ein symbolischer Link"):
        run_job(engine, keyring, with_root(root))

    assert snapshot(outside) == before
    assert documents(engine) == []  # refused before anything was imported
    assert (folder / "Rechnung 1.pdf").is_file()


def test_a_lock_file_link_creates_nothing_outside(engine: Engine, keyring: Keyring,
                                                  layout: tuple[Path, Path]) -> None:
    root, outside = layout
    folder = root / "musterfirma"
    set_inbox_dir(engine, "musterfirma")
    drop(folder, "Rechnung 1.pdf", pdf("eins"))
    (folder / ".tokendesk.lock").symlink_to(outside / "neu-angelegt")
    before = snapshot(outside)

    with pytest.raises(InboxError, match="Sperrdatei"):
        run_job(engine, keyring, with_root(root))

    assert not (outside / "neu-angelegt").exists()
    assert snapshot(outside) == before
    assert documents(engine) == []


def test_a_file_link_is_never_read(engine: Engine, keyring: Keyring, layout: tuple[Path, Path]) -> None:
    root, outside = layout
    folder = root / "musterfirma"
    set_inbox_dir(engine, "musterfirma")
    (folder / "passwd.pdf").symlink_to(outside / "Rechnung.pdf")
    (folder / "app.pdf").symlink_to(outside / "app.conf")
    drop(folder, "Rechnung 1.pdf", pdf("eins"))
    before = snapshot(outside)

    summary = run_job(engine, keyring, with_root(root))

    assert summary == {"imported": 1, "rejected": 2, "folders_busy": 0, "file_errors": 0}
    assert documents(engine) == ["Rechnung 1.pdf"]  # the links' targets were not imported
    assert snapshot(outside) == before
    rejected = folder / "rejected"
    assert (rejected / "passwd.pdf").is_symlink() and (rejected / "app.pdf").is_symlink()  # the links themselves
    assert "symbolischer Link" in (rejected / "passwd.pdf.reason.txt").read_text(encoding="utf-8")


def test_an_absolute_folder_inside_inbox_root_still_works(engine: Engine, keyring: Keyring,
                                                          layout: tuple[Path, Path]) -> None:
    root, _outside = layout
    folder = root / "musterfirma"
    set_inbox_dir(engine, str(folder))
    drop(folder, "Rechnung 1.pdf", pdf("eins"))

    assert import_all(engine, with_root(root))["imported"] == 1
    assert sorted(p.name for p in (folder / "processed").iterdir()) == ["Rechnung 1.pdf"]
