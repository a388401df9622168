"""The Übertragen screen (AppTest) against the real emulator: dry run, manual transfer with the
stored Langzeittoken (progress and a result row per document), a DATEV rejection with its help link,
and the transfer after a one-off DATEV login."""

from __future__ import annotations

import requests
from sqlmodel import col, select

from core.documents import lifecycle
from core.platform.db import unit_of_work
from core.platform.models import Connection, ConnectionKind, HttpLogEntry, TransferAttempt
from testkit.datev_user import consent
from tests.support.desk import Desk, run_page, table
from tests.support.rendered import href_of, labels, texts

PAGE = "pages/transfer.py"


def datev_uploads(desk: Desk) -> list[str]:
    data = requests.get(desk.settings.emulator_url + "/_admin/datev/uploads", timeout=5).json()
    return sorted(u["guid"].lower() for u in (data if isinstance(data, list) else data["uploads"]))


def attempts() -> list[TransferAttempt]:
    from core.platform.db import get_engine

    with unit_of_work(get_engine()) as s:
        rows = list(s.exec(select(TransferAttempt).order_by(col(TransferAttempt.id))).all())
        s.expunge_all()
        return rows


def test_nothing_to_transfer(app, desk: Desk) -> None:
    desk.intake("neu.pdf")  # not approved: never offered
    at = run_page(app, "operator", PAGE)
    assert [t.value for t in at.title] == ["Übertragen"]
    assert "Keine freigegebenen Belege zum Übertragen." in texts(at)
    assert "Übertragen" not in labels(at)


def test_documents_in_transfer_are_said_not_offered(app, desk: Desk) -> None:
    """Review finding: reloading the page during a manual transfer showed "Keine freigegebenen Belege zum
    Übertragen." as if everything were done."""
    first, second = desk.intake("a.pdf", "b.pdf", approve=True)
    claimed = lifecycle.claim(desk.engine, desk.companies["Musterfirma GmbH"], "manual:other-session", 300)
    assert claimed is not None and claimed.document.id == first
    at = run_page(app, "operator", PAGE)
    assert "1 Beleg ist gerade in Übertragung; das Ergebnis steht danach im Übertragungsprotokoll." in texts(at)
    at.button(key="transfer_choose_all").click().run()
    assert at.multiselect(key="transfer_chosen").value == [second]  # the one in transfer is not offered


def test_dry_run_then_transfer_with_the_long_term_token(app, desk: Desk) -> None:
    desk.request_token()
    first, second = desk.intake("Rechnung 1.pdf", "Rechnung 2.pdf", approve=True)
    [lex] = desk.intake("lex.pdf", company="Lexware Demo GmbH", approve=True)
    at = run_page(app, "operator", PAGE)
    assert "Bitte wählen Sie die Belege aus, die übertragen werden sollen." in texts(at)
    at.button(key="transfer_choose_all").click().run()
    assert sorted(at.multiselect(key="transfer_chosen").value) == sorted([first, second, lex])
    plan = {r["Nr."]: r for r in table(at, "Hinweis")}
    assert list(table(at, "Hinweis")[0])[:2] == ["Beleg", "Hinweis"]  # the reason right after the document
    assert plan[first]["Ziel"] == "Mandant 455148-1 (Musterfirma GmbH)"
    assert plan[first]["Hinweis"] == "wird gesendet" and plan[first]["Belegtyp"] == "Rechnungseingang"
    assert plan[lex]["Hinweis"] == "wartet: API-Schlüssel fehlt"  # Lexware's words, as on its card
    assert "2 von 3 ausgewählten Belegen werden gesendet. Warum nicht: API-Schlüssel fehlt." in texts(at)
    assert not any("Methode" in frame.value.columns for frame in at.dataframe)  # technical: admins only
    assert datev_uploads(desk) == [] and attempts() == []  # the dry run sent nothing

    at.button(key="transfer_run").click().run()
    assert not at.exception, at.exception
    results = table(at, "Ergebnis")
    assert sorted(r["Nr."] for r in results) == sorted([first, second])
    assert {r["Ergebnis"] for r in results} == {"übertragen"} and {r["Meldung"] for r in results} == {"An DATEV übertragen."}
    assert "2 übertragen, 0 fehlgeschlagen, 0 ungeklärt." in [s.value for s in at.success]
    assert at.get("progress")[0].proto.value == 100
    assert datev_uploads(desk) == sorted(desk.document(i).guid for i in (first, second))
    assert [desk.document(i).status for i in (first, second, lex)] == ["delivered", "delivered", "approved"]
    assert {(a.trigger, a.triggered_by) for a in attempts()} == {("manual", "operator@tokendesk.demo")}

    at.run()  # next run: the delivered documents are no longer offered, the last result stays visible
    assert not at.exception
    assert at.multiselect(key="transfer_chosen").options == ["Nr. 3 · lex.pdf (Lexware Demo GmbH)"]
    assert "Ergebnis der letzten Übertragung" in texts(at)


def test_a_datev_rejection_shows_the_help_link(app, desk: Desk) -> None:
    desk.request_token()
    [doc] = desk.intake("falscher Typ.pdf", approve=True, document_type="Gibt es nicht")
    at = run_page(app, "operator", PAGE)
    at.multiselect(key="transfer_chosen").set_value([doc]).run()
    at.button(key="transfer_run").click().run()
    assert not at.exception, at.exception
    [row] = table(at, "Ergebnis")
    assert row["Ergebnis"] == "fehlgeschlagen" and "#DCO01010" in row["Meldung"]
    assert row["DATEV-Hilfe"] and row["DATEV-Hilfe"].startswith("http")
    assert "0 übertragen, 1 fehlgeschlagen, 0 ungeklärt." in [w.value for w in at.warning]
    assert desk.document(doc).status == "failed"


def test_transfer_after_a_one_off_datev_login(app, desk: Desk) -> None:
    [doc] = desk.intake("einmalig.pdf", approve=True)  # no long-term token at all
    at = run_page(app, "operator", PAGE)
    at.multiselect(key="transfer_chosen").set_value([doc]).run()
    assert table(at, "Hinweis")[0]["Hinweis"] == "wartet: Token fehlt"
    at.radio(key="transfer_mode").set_value("one_off").run()
    musterfirma = desk.companies["Musterfirma GmbH"]
    at.button(key=f"transfer_oneoff_{musterfirma}").click().run()
    assert not at.exception, at.exception
    [link] = [m.value for m in at.markdown if 'data-testid="auth-link"' in m.value]
    assert 'target="_self"' in link and "Weiter zur einmaligen DATEV-Anmeldung (Musterfirma GmbH)" in link
    href = href_of(link)
    assert href.startswith(desk.settings.emulator_url + "/openid/authorize?")

    desk.request_token(who="operator@tokendesk.demo", kind=ConnectionKind.one_off)
    at.run()
    assert "Musterfirma GmbH: einmalige DATEV-Anmeldung liegt vor." in [s.value for s in at.success]
    assert table(at, "Hinweis")[0]["Hinweis"] == "wird gesendet"
    assert at.button(key="transfer_run").label == "Mit einmaliger DATEV-Anmeldung übertragen"
    at.button(key="transfer_run").click().run()
    assert not at.exception, at.exception
    assert [r["Ergebnis"] for r in table(at, "Ergebnis")] == ["übertragen"]
    with unit_of_work(desk.engine) as s:
        one_off = s.exec(select(Connection).where(Connection.kind == "one_off")).one()
        used = {e.connection_id for e in s.exec(select(HttpLogEntry).where(HttpLogEntry.purpose == "upload"))}
    assert used == {one_off.id} and one_off.slot == f"one_off:{desk.user('operator@tokendesk.demo').id}"
    assert datev_uploads(desk) == [desk.document(doc).guid]


def test_one_off_login_returns_to_transfer_with_company_and_documents(app, desk: Desk) -> None:
    [doc] = desk.intake("zurück.pdf", approve=True)
    desk.intake("andere.pdf", approve=True)
    musterfirma = desk.companies["Musterfirma GmbH"]
    at = run_page(app, "operator", PAGE)
    at.selectbox(key="transfer_company").select(musterfirma).run()
    at.multiselect(key="transfer_chosen").set_value([doc]).run()
    at.radio(key="transfer_mode").set_value("one_off").run()
    at.button(key=f"transfer_oneoff_{musterfirma}").click().run()
    [link] = [m.value for m in at.markdown if 'data-testid="auth-link"' in m.value]
    params = consent(href_of(link))  # the person at DATEV logs in and agrees

    back = app("operator").run()  # DATEV's redirect: a new session, nothing in it
    for key, value in params.items():
        back.query_params[key] = value
    back.switch_page("pages/datev_callback.py").run()
    assert not back.exception, back.exception
    assert [t.value for t in back.title] == ["Übertragen"]
    assert back.selectbox(key="transfer_company").value == musterfirma
    assert back.multiselect(key="transfer_chosen").value == [doc]
    assert back.radio(key="transfer_mode").value == "one_off"
    assert "Musterfirma GmbH: DATEV-Anmeldung für diese Sitzung gespeichert" in texts(back)
    assert "Musterfirma GmbH: einmalige DATEV-Anmeldung liegt vor." in [s.value for s in back.success]
    assert not back.query_params.get("documents") and not back.query_params.get("code")


def test_admin_sees_the_technical_details_of_the_dry_run(app, desk: Desk) -> None:
    desk.request_token()
    [doc] = desk.intake("Rechnung 1.pdf", approve=True)
    [lex] = desk.intake("lex.pdf", company="Lexware Demo GmbH", approve=True)
    at = run_page(app, "admin", PAGE)
    at.button(key="transfer_choose_all").click().run()
    technical = {r["Nr."]: r for r in table(at, "Methode")}
    guid = desk.document(doc).guid
    assert (technical[doc]["Methode"], technical[doc]["Pfad"]) == ("PUT", f"/clients/455148-1/documents/{guid}")
    assert (technical[lex]["Methode"], technical[lex]["Pfad"]) == ("POST", "/v1/files")
