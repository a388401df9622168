"""Inbox folders (core.documents.inbox) on SQLite and PostgreSQL: files become documents once, and every file
ends up in processed/ or rejected/ (with a German reason); partial files are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from core.demo import seed_demo
from core.documents.inbox import ACTOR, InboxError, import_all, import_folder, resolve_folder
from core.platform.config import Settings
from core.platform.db import make_engine, unit_of_work
from core.platform.models import AuditEvent, Company, Document, DocumentStatus
from testkit.rows import id_of
from testkit.samples import pdf
from testkit.workers import ROOT
from tests.support import TEST_KEY_ENTRY


def drop(folder: Path, name: str, content: bytes, *, age_seconds: float = 60) -> Path:
    """Put a file into the inbox as a scanner would, finished `age_seconds` ago."""
    path = folder / name
    path.write_bytes(content)
    past = time.time() - age_seconds
    os.utime(path, (past, past))
    return path


def company_with_inbox(engine: Engine, inbox_dir: str | None) -> int:
    seed_demo(engine)
    with unit_of_work(engine) as session:
        company = session.exec(select(Company).where(Company.client_number == 1)).one()
        company.inbox_dir = inbox_dir
        session.add(company)
        return id_of(company)


def stored(engine: Engine) -> list[Document]:
    with unit_of_work(engine) as session:
        rows = list(session.exec(select(Document).order_by(col(Document.id))).all())
        session.expunge_all()
        return rows


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def inbox_root(tmp_path: Path) -> Path:
    root = tmp_path / "eingang"
    (root / "musterfirma").mkdir(parents=True)
    return root


def settings_with(root: Path) -> Settings:
    return Settings(_env_file=None, app_env="test", inbox_root=root)


def test_good_bad_duplicate_and_partial_files(engine: Engine, inbox_root: Path) -> None:
    company_id = company_with_inbox(engine, "musterfirma")
    folder = inbox_root / "musterfirma"
    drop(folder, "Rechnung 1.pdf", pdf("eins"), age_seconds=120)
    drop(folder, "Kopie von Rechnung 1.pdf", pdf("eins"))  # same content, arrived later
    drop(folder, "kaputt.pdf", b"%PDF-1.4 kein echtes PDF")
    drop(folder, "scan.pdf.part", pdf("halb"))
    drop(folder, ".versteckt.pdf", pdf("versteckt"))
    drop(folder, "laeuft-noch.pdf", pdf("frisch"), age_seconds=0)  # still being written

    summary = import_all(engine, settings_with(inbox_root))

    assert summary == {"imported": 1, "rejected": 2, "folders_busy": 0, "file_errors": 0}
    [document] = stored(engine)
    assert (document.original_name, document.source, document.uploaded_by, document.status, document.company_id) == (
        "Rechnung 1.pdf", "inbox", ACTOR, DocumentStatus.new.value, company_id)
    assert names(folder / "processed") == ["Rechnung 1.pdf"]
    assert names(folder / "rejected") == ["Kopie von Rechnung 1.pdf", "Kopie von Rechnung 1.pdf.reason.txt",
                                          "kaputt.pdf", "kaputt.pdf.reason.txt"]
    duplicate_reason = (folder / "rejected" / "Kopie von Rechnung 1.pdf.reason.txt").read_text(encoding="utf-8")
    assert "bereits vorhanden" in duplicate_reason
    assert "beschädigt oder nicht lesbar" in (folder / "rejected" / "kaputt.pdf.reason.txt").read_text(encoding="utf-8")
    # untouched: partial, hidden and still-changing files
    assert [n for n in names(folder) if not n.startswith(".tokendesk")] == [
        ".versteckt.pdf", "laeuft-noch.pdf", "processed", "rejected", "scan.pdf.part"]
    with unit_of_work(engine) as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "document.added")).all()
        assert [e.actor for e in events] == [ACTOR]


def test_a_second_run_imports_nothing_again_and_a_finished_file_follows(engine: Engine, inbox_root: Path) -> None:
    company_with_inbox(engine, "musterfirma")
    folder = inbox_root / "musterfirma"
    drop(folder, "Rechnung.pdf", pdf("eins"))
    config = settings_with(inbox_root)
    assert import_all(engine, config)["imported"] == 1

    assert import_all(engine, config) == {"imported": 0, "rejected": 0, "folders_busy": 0, "file_errors": 0}
    assert len(stored(engine)) == 1

    (folder / "zwei.pdf.part").write_bytes(pdf("zwei"))
    assert import_all(engine, config)["imported"] == 0
    os.replace(folder / "zwei.pdf.part", folder / "zwei.pdf")  # the scanner finishes and renames
    past = time.time() - 60
    os.utime(folder / "zwei.pdf", (past, past))
    assert import_all(engine, config)["imported"] == 1
    assert [d.original_name for d in stored(engine)] == ["Rechnung.pdf", "zwei.pdf"]
    assert names(folder / "processed") == ["Rechnung.pdf", "zwei.pdf"]


def test_a_file_left_behind_by_a_crash_is_not_imported_twice(engine: Engine, inbox_root: Path) -> None:
    """Import done, move not (crash): the next run keeps the one document and parks the file."""
    company_id = company_with_inbox(engine, "musterfirma")
    folder = inbox_root / "musterfirma"
    drop(folder, "Rechnung.pdf", pdf("eins"))
    import_folder(engine, settings_with(inbox_root), company_id, folder)
    os.replace(folder / "processed" / "Rechnung.pdf", folder / "Rechnung.pdf")  # as if never moved

    result = import_folder(engine, settings_with(inbox_root), company_id, folder)

    assert result.imported == [] and [n for n, _ in result.rejected] == ["Rechnung.pdf"]
    assert len(stored(engine)) == 1
    assert names(folder / "rejected") == ["Rechnung.pdf", "Rechnung.pdf.reason.txt"]


def test_same_name_twice_never_overwrites(engine: Engine, inbox_root: Path) -> None:
    company_id = company_with_inbox(engine, "musterfirma")
    folder = inbox_root / "musterfirma"
    config = settings_with(inbox_root)
    drop(folder, "scan.pdf", pdf("eins"))
    import_folder(engine, config, company_id, folder)
    drop(folder, "scan.pdf", pdf("zwei"))
    import_folder(engine, config, company_id, folder)
    assert names(folder / "processed") == ["scan (2).pdf", "scan.pdf"]
    assert len(stored(engine)) == 2


def test_broken_folders_are_reported_after_the_others_were_served(engine: Engine, inbox_root: Path,
                                                                  tmp_path: Path) -> None:
    company_with_inbox(engine, "musterfirma")
    drop(inbox_root / "musterfirma", "Rechnung.pdf", pdf("eins"))
    not_a_folder = inbox_root / "datei-statt-ordner"
    not_a_folder.write_text("x")
    with unit_of_work(engine) as session:
        other = session.exec(select(Company).where(Company.client_number == 2)).one()
        other.inbox_dir = str(not_a_folder)
        session.add(other)

    with pytest.raises(InboxError, match="fehlt oder ist kein Ordner"):
        import_all(engine, settings_with(inbox_root))
    assert [d.original_name for d in stored(engine)] == ["Rechnung.pdf"]  # the good folder was served


def test_inbox_folders_need_inbox_root(tmp_path: Path) -> None:
    bare = Settings(_env_file=None, app_env="test")
    with pytest.raises(InboxError, match="INBOX_ROOT"):
        resolve_folder(bare, "musterfirma")
    with pytest.raises(InboxError, match="INBOX_ROOT"):  # absolute folders too (tests/security/test_inbox_confinement.py)
        resolve_folder(bare, str(tmp_path))
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert resolve_folder(settings_with(tmp_path), "a/b") == tmp_path / "a" / "b"


# --- CLI: python -m core.cli import-documents ---------------------------------------------------


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "test", "ENCRYPTION_KEYS": TEST_KEY_ENTRY}
    return subprocess.run([sys.executable, "-m", "core.cli", "import-documents", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_import_documents(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    company_id = company_with_inbox(engine, None)
    good, bad, later = tmp_path / "Rechnung 7.pdf", tmp_path / "notiz.docx", tmp_path / "Rechnung 8.pdf"
    good.write_bytes(pdf("sieben"))
    bad.write_bytes(b"PK\x03\x04 kein Beleg")
    later.write_bytes(pdf("acht"))

    first = run_cli(sqlite_url, str(company_id), str(good), str(bad), str(tmp_path / "fehlt.pdf"),
                    "--type", "Rechnungseingang", "--note", "Scan vom Empfang", "--approve")

    assert first.returncode == 1, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("OK") and "Rechnung 7.pdf" in lines[0] and "(freigegeben)" in lines[0]
    assert [line.split()[0] for line in lines[1:3]] == ["ABGELEHNT", "ABGELEHNT"]
    assert any("fehlt.pdf" in line and "nicht lesbar" in line for line in lines)
    assert any("notiz.docx" in line for line in lines)
    assert lines[-1] == "1 übernommen (1 freigegeben), 2 abgelehnt."
    [document] = stored(engine)
    assert (document.original_name, document.status, document.source, document.note, document.document_type) == (
        "Rechnung 7.pdf", DocumentStatus.approved.value, "cli", "Scan vom Empfang", "Rechnungseingang")

    again = run_cli(sqlite_url, str(company_id), str(good))
    assert again.returncode == 1 and "bereits vorhanden" in again.stdout
    new = run_cli(sqlite_url, str(company_id), str(later))
    assert new.returncode == 0 and "(neu)" in new.stdout
    assert [d.status for d in stored(engine)] == [DocumentStatus.approved.value, DocumentStatus.new.value]
    unknown = run_cli(sqlite_url, "9999", str(later))
    assert unknown.returncode == 2 and "gibt es nicht" in unknown.stderr
    engine.dispose()
