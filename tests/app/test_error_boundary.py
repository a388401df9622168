"""No traceback in the browser: an unhandled error becomes a German message with a reference number,
the details go to the server log only, and an unreachable database says so."""

from __future__ import annotations

import logging

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.desk import IDENTITIES
from tests.support.harness import ROOT


def failing_page() -> None:
    from ui.errors import error_boundary

    with error_boundary():
        raise RuntimeError("refresh_token=geheim-123 went somewhere it should not")


def test_an_unhandled_error_shows_a_german_message_and_never_its_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="tokendesk.dashboard"):
        at = AppTest.from_function(failing_page, default_timeout=30).run()
    assert not at.exception
    (shown,) = [e.value for e in at.error]
    assert shown.startswith("Ein unerwarteter Fehler ist aufgetreten (Fehlernummer ")
    assert "geheim" not in shown and "RuntimeError" not in shown
    reference = shown.split("Fehlernummer ")[1][:8]
    (record,) = [r for r in caplog.records if r.name == "tokendesk.dashboard"]
    assert reference in record.getMessage() and record.exc_info is not None  # the details: server log only


def test_an_unreachable_database_is_named_as_such(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/missing-folder/tokendesk.db")
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=30)
    at.user = dict(IDENTITIES["admin"])
    at.run()
    assert not at.exception
    (shown,) = [e.value for e in at.error]
    assert shown.startswith("Die Datenbank ist gerade nicht erreichbar.")
    assert "Fehlernummer" in shown and "sqlite" not in shown.lower()


def test_a_page_run_directly_with_the_database_down_shows_the_german_message(tmp_path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/missing-folder/tokendesk.db")
    at = AppTest.from_file(str(ROOT / "pages/tokens.py"), default_timeout=30)  # a deep link, without the router
    at.user = dict(IDENTITIES["operator"])
    at.run()
    assert not at.exception
    assert [e.value.split(".")[0] for e in at.error] == ["Die Datenbank ist gerade nicht erreichbar"]
    assert "Langzeittoken" not in [t.value for t in at.title]
