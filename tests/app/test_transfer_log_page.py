"""The Übertragungsprotokoll screen (AppTest): real attempts made through core against the emulator
(delivered, rejected by DATEV, unresolved at Lexware), filters, paging, the detail with HTTP log lines
and DATEV's help link, retry and resolve as operator, read-only for viewers, and the CSV download."""

from __future__ import annotations

from datetime import date

import pytest
import requests
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from core.connections.lexware_key import default_key_expiry, store_lexware_key
from core.platform.db import unit_of_work
from core.platform.models import TransferAttempt
from core.platform.secret_store import get_keyring
from core.transfers.engine import PassOptions, run_pass
from core.transfers.history import CSV_HEADERS
from core.users import process
from testkit.rows import id_of
from tests.support.desk import Desk, run_page, table
from tests.support.rendered import labels, texts

PAGE = "pages/transfer_log.py"


@pytest.fixture
def attempts(desk: Desk) -> dict[str, int]:
    """Three manual attempts: delivered, failed (DATEV #DCO01010) and unresolved (Lexware 503)."""
    desk.request_token()
    lexware = desk.companies["Lexware Demo GmbH"]
    result = store_lexware_key(desk.engine, desk.settings, get_keyring(), company_id=lexware, api_key="demo-lexware-key",
                               valid_until=default_key_expiry(desk.settings, date.today()), actor=process("admin@tokendesk.demo"))
    assert result.ok, result.message
    [ok] = desk.intake("gut.pdf", approve=True)
    [bad] = desk.intake("falsch.pdf", approve=True, document_type="Gibt es nicht")
    [lex] = desk.intake("lex.pdf", company="Lexware Demo GmbH", approve=True)
    requests.post(desk.settings.emulator_url + "/_admin/faults", json={"target": "lexware", "kind": "503", "count": 1},
                  timeout=5).raise_for_status()
    summary = run_pass(desk.engine, desk.settings, get_keyring(),
                       PassOptions(trigger="manual", actor=process("operator@tokendesk.demo"), document_ids=[ok, bad, lex]))
    assert (summary.delivered, summary.failed, summary.unresolved) == (1, 1, 1), summary
    with unit_of_work(desk.engine) as s:
        by_doc = {a.document_id: id_of(a) for a in s.exec(select(TransferAttempt)).all()}
    return {"ok": by_doc[ok], "bad": by_doc[bad], "lex": by_doc[lex],
            "doc_ok": ok, "doc_bad": bad, "doc_lex": lex}


def select_attempt(at: AppTest, attempt_id: int) -> AppTest:
    at.selectbox(key="log_selected").set_value(attempt_id).run()
    assert not at.exception, at.exception
    return at


def test_viewer_sees_history_and_detail_but_no_actions(app, attempts: dict[str, int]) -> None:
    at = run_page(app, "viewer", PAGE)
    assert [t.value for t in at.title] == ["Übertragungsprotokoll"]
    rows = {r["Beleg"]: r for r in table(at, "Ergebnis")}
    assert {k: v["Ergebnis"] for k, v in rows.items()} == {"gut.pdf": "übertragen", "falsch.pdf": "fehlgeschlagen",
                                                           "lex.pdf": "ungeklärt"}
    assert rows["lex.pdf"]["Schnittstelle"] == "Lexware Office" and rows["lex.pdf"]["HTTP"] == 503
    assert rows["falsch.pdf"]["Auslöser"] == "manuell (operator@tokendesk.demo)"
    assert "Seite 1 von 1 · 3 Einträge" in texts(at)
    select_attempt(at, attempts["bad"])
    assert len(at.get("form")) == 0 and "Erneut übertragen" not in labels(at)
    select_attempt(at, attempts["lex"])
    assert len(at.get("form")) == 0 and "Entscheidung speichern" not in labels(at)
    assert [d.label for d in at.download_button] == ["CSV exportieren (gefilterte Einträge)"]


def test_detail_shows_http_lines_and_the_datev_help_link(app, attempts: dict[str, int]) -> None:
    viewer = select_attempt(run_page(app, "viewer", PAGE), attempts["bad"])
    assert any("#DCO01010" in e.value for e in viewer.error)  # the reason for everyone
    assert "Technische Details (Anfragen, Request-ID) sehen Administratoren." in texts(viewer)
    assert not any("Dauer (ms)" in frame.value.columns for frame in viewer.dataframe)
    assert list(table(viewer, "Ergebnis")[0])[:3] == ["Beleg", "Ergebnis", "Meldung"]
    at = select_attempt(run_page(app, "admin", PAGE), attempts["bad"])
    assert any("#DCO01010" in e.value for e in at.error)
    [help_line] = [m.value for m in at.markdown if m.value.startswith("DATEV-Hilfe zu diesem Fehler:")]
    assert "http" in help_line
    [line] = table(at, "Dauer (ms)")
    assert (line["Methode"], line["Status"]) == ("PUT", 400)
    assert line["Pfad"].endswith("/clients/455148-1/documents/" + line["Pfad"].rsplit("/", 1)[1])
    select_attempt(at, attempts["ok"])
    assert not any(m.value.startswith("DATEV-Hilfe") for m in at.markdown)
    assert [(r["Methode"], r["Status"]) for r in table(at, "Dauer (ms)")] == [("PUT", 201)]


def test_filters_and_paging(app, desk: Desk, attempts: dict[str, int]) -> None:
    at = run_page(app, "viewer", PAGE)
    at.multiselect(key="log_outcomes").set_value(["failed", "unresolved"]).run()
    assert sorted(r["Beleg"] for r in table(at, "Ergebnis")) == ["falsch.pdf", "lex.pdf"]
    at.selectbox(key="log_provider").set_value("lexware").run()
    assert [r["Beleg"] for r in table(at, "Ergebnis")] == ["lex.pdf"]
    at.selectbox(key="log_trigger").set_value("scheduler").run()
    assert "Keine Übertragungsversuche für diese Auswahl." in texts(at)
    at.selectbox(key="log_trigger").set_value(None).run()
    at.selectbox(key="log_provider").set_value(None).run()
    at.multiselect(key="log_outcomes").set_value([]).run()
    at.selectbox(key="log_company").set_value(desk.companies["Musterfirma GmbH"]).run()
    assert sorted(r["Beleg"] for r in table(at, "Ergebnis")) == ["falsch.pdf", "gut.pdf"]
    assert at.number_input(key="log_page").max == 1


def test_operator_retries_a_failed_document(app, desk: Desk, attempts: dict[str, int]) -> None:
    at = select_attempt(run_page(app, "operator", PAGE), attempts["bad"])
    at.text_input(key=f"log_retry_reason_{attempts['doc_bad']}").set_value("Belegtyp geprüft")
    at.button(key=f"log_retry_submit_{attempts['doc_bad']}").click().run()
    assert not at.exception, at.exception
    assert "„falsch.pdf“ ist wieder freigegeben und wird bei der nächsten Übertragung gesendet." in [
        s.value for s in at.success]
    doc = desk.document(attempts["doc_bad"])
    assert (doc.status, doc.attempts) == ("approved", 0)
    assert ("document.retry", "operator@tokendesk.demo") in desk.audit_actions()
    assert "**Beleg-Status jetzt:** freigegeben" in texts(at)


def test_operator_resolves_an_unresolved_document_with_a_reason(app, desk: Desk, attempts: dict[str, int]) -> None:
    doc_id = attempts["doc_lex"]
    at = select_attempt(run_page(app, "operator", PAGE), attempts["lex"])
    assert at.radio(key=f"log_resolve_decision_{doc_id}").options == [
        "Ist in Lexware vorhanden: als übertragen markieren", "Ist nicht angekommen: erneut senden"]
    at.button(key=f"log_resolve_submit_{doc_id}").click().run()  # no reason
    assert not at.exception
    assert "Bitte geben Sie einen Grund an (er steht im Audit-Protokoll)." in [e.value for e in at.error]
    assert desk.document(doc_id).status == "unresolved"
    at.text_area(key=f"log_resolve_reason_{doc_id}").set_value("Beleg in Lexware gefunden")
    at.radio(key=f"log_resolve_decision_{doc_id}").set_value("delivered")
    at.button(key=f"log_resolve_submit_{doc_id}").click().run()
    assert not at.exception, at.exception
    assert "„lex.pdf“: in Lexware vorhanden: als übertragen markiert." in [s.value for s in at.success]
    assert desk.document(doc_id).status == "delivered"
    assert ("document.resolved", "operator@tokendesk.demo") in desk.audit_actions()


def test_csv_download_has_the_filtered_rows(app, attempts: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The deferred download: the CSV is built only when the button is clicked (as the browser asks)."""
    import streamlit.testing.v1.app_test as app_test_module
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    managers: list[MediaFileManager] = []

    class Recording(MediaFileManager):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            managers.append(self)

    monkeypatch.setattr(app_test_module, "MediaFileManager", Recording)
    at = run_page(app, "viewer", PAGE)
    at.multiselect(key="log_outcomes").set_value(["failed"]).run()
    [button] = at.get("download_button")
    file_id = button.proto.deferred_file_id
    assert file_id and button.proto.url == ""  # nothing generated on a plain rerun
    manager = managers[-1]
    url = manager.execute_deferred(file_id)
    storage = manager._storage
    assert isinstance(storage, MemoryMediaFileStorage)  # what AppTest gives its media file manager
    stored = storage.get_file(url.rsplit("/", 1)[1])
    assert stored.mimetype.startswith("text/csv")
    lines = stored.content.decode("utf-8-sig").split("\r\n")
    assert lines[0] == ";".join(CSV_HEADERS)
    assert len([line for line in lines if line]) == 2 and "falsch.pdf" in lines[1] and "fehlgeschlagen" in lines[1]


def test_ungeklaert_from_the_overview_opens_the_filtered_log_with_the_decision(app, desk: Desk,
                                                                              attempts: dict[str, int]) -> None:
    """"Ungeklärte Belege prüfen" (Übersicht and company page) links to this page with `company` and
    `outcome`: only that company's unresolved attempts are listed, the first one selected, its decision
    form open (the reviewer found the unfiltered log with another company's attempt selected)."""
    lexware = desk.companies["Lexware Demo GmbH"]
    overview = run_page(app, "operator", "pages/overview.py")
    # a direct page run has no router, so ui.links draws the same target as a plain link
    assert f"[Ungeklärte Belege prüfen](/transfer_log?company={lexware}&outcome=unresolved)" in \
        [m.value for m in overview.markdown]

    at = app("operator", PAGE)
    at.query_params["company"], at.query_params["outcome"] = str(lexware), "unresolved"
    at.run()
    assert not at.exception, at.exception
    assert [r["Beleg"] for r in table(at, "Ergebnis")] == ["lex.pdf"]
    assert at.selectbox(key="log_company").value == lexware
    assert at.multiselect(key="log_outcomes").value == ["unresolved"]
    assert "Entscheidung speichern" in labels(at)
