"""The Übersicht and the company page (AppTest, through the router and as direct page runs): tiles,
"Heute zu tun" with the engine's own reason and the actions each role may take, the table and its
filters, the company page per role. Tokens come from core against the emulator over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from core.connections import store
from core.platform.db import unit_of_work
from core.platform.models import Company, DocumentStatus
from core.platform.secret_store import get_keyring
from core.statistics import day_labels
from core.transfers import readiness
from core.transfers.engine import PassOptions, run_pass
from core.users import process
from tests.support.desk import Desk, run_page, table
from tests.support.rendered import page_text, texts
from ui.text import plain

PAGE = "pages/overview.py"
COMPANY = "pages/company.py"


def todo_names(at: AppTest) -> list[str]:
    """The company names in "Heute zu tun", in their order."""
    return [m.value.strip("*") for m in at.markdown
            if m.value.startswith("**") and m.value.endswith("**") and "Status:" not in m.value]


def unescaped(at: AppTest) -> str:
    """The rendered texts with ui.text.plain's escapes removed (what the reader sees)."""
    return texts(at).replace("\\", "")


def through_router(app: Callable[..., AppTest], who: str, page: str | None = None, **params: str) -> AppTest:
    """The page as a signed-in user reaches it: the router first, then the page (with query parameters)."""
    at = app(who)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    if page is not None:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    [value] = [m.value for m in at.metric if m.label == label]
    return str(value)


def break_token(desk: Desk, company: str = "Musterfirma GmbH") -> None:
    row = desk.connection(company)
    assert row.id is not None
    assert store.mark_invalid(desk.engine, row.id, expected_version=row.version, reason="invalid_grant")


@pytest.mark.parametrize("who", ["viewer", "operator", "admin"])
def test_overview_is_the_default_page_of_every_role(app, desk: Desk, who: str) -> None:
    at = app(who).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Übersicht"]
    assert "Heute zu tun" in [s.value for s in at.subheader]


def test_tiles_count_companies_per_state(app, desk: Desk) -> None:
    desk.request_token()
    at = run_page(app, "viewer", PAGE)
    assert metric(at, "aktiv") == "1" and metric(at, "fehlt") == "3" and metric(at, "ungültig") == "0"
    assert metric(at, "Belege wartend") == "0" and metric(at, "Fehlgeschlagen (7 Tage)") == "0"
    assert metric(at, "Scheduler") == "steht"


def test_broken_token_comes_first_with_the_engines_reason(app, desk: Desk) -> None:
    desk.request_token()
    desk.intake("a.pdf", "b.pdf", approve=True)
    break_token(desk)
    at = run_page(app, "viewer", PAGE)
    assert todo_names(at)[0] == "Musterfirma GmbH"
    shown = unescaped(at)
    # The reason is readiness.waiting_reason's own text, with the documents it holds up.
    with unit_of_work(desk.engine) as s:
        company = s.get(Company, desk.companies["Musterfirma GmbH"])
        assert company is not None
        s.expunge(company)
    assert readiness.waiting_reason(company, desk.connection(), desk.settings, company.updated_at) == "Token ungültig"
    assert ":red[**Token ungültig**]" in shown
    assert "abgelehnt: invalid_grant. 2 Belege warten." in shown
    assert metric(at, "ungültig") == "1" and metric(at, "Belege wartend") == "2"
    # A viewer gets no action, only the way to the company.
    assert len(at.button) == 0
    assert "Öffnen" in page_text(at) and "Langzeittoken anfordern" not in page_text(at)


def test_admin_gets_the_way_to_request_the_token(app, desk: Desk) -> None:
    desk.request_token()
    break_token(desk)
    at = through_router(app, "admin")
    # the broken token is the most urgent item (before the companies that never had one): its link comes first
    link = next(el.proto for el in at.get("page_link") if el.proto.label == "Langzeittoken anfordern")
    assert link.page == "company" and link.query_string == f"company={desk.companies['Musterfirma GmbH']}"


def test_operator_resumes_a_paused_company(app, desk: Desk) -> None:
    desk.request_token()
    desk.intake("a.pdf", approve=True)
    company_id = desk.companies["Musterfirma GmbH"]
    readiness.pause(desk.engine, company_id, "DATEV: Belege online fehlt", "system:test")
    at = run_page(app, "operator", PAGE)
    assert todo_names(at)[0] == "Musterfirma GmbH"
    assert "pausiert: DATEV: Belege online fehlt" in unescaped(at)
    assert metric(at, "pausiert") == "1"
    at.button(key=f"act_resume_{company_id}").click().run()
    assert not at.exception
    with unit_of_work(desk.engine) as s:
        company = s.get(Company, company_id)
        assert company is not None and company.paused_at is None
    assert "Musterfirma GmbH" not in todo_names(at)


def test_operator_resumes_on_the_company_page_too(app, desk: Desk) -> None:
    """The company page offers the Übersicht's action (ui.company_actions), not only the red reason."""
    desk.request_token()
    desk.intake("a.pdf", approve=True)
    company_id = desk.companies["Musterfirma GmbH"]
    readiness.pause(desk.engine, company_id, "DATEV verweigert den Zugriff (HTTP 403)", "system:test")
    at = app("operator", COMPANY)
    at.query_params["company"] = str(company_id)
    at.run()
    assert "Kann nicht übertragen: pausiert: DATEV verweigert den Zugriff (HTTP 403)" in unescaped(at)
    at.button(key=f"act_resume_{company_id}").click().run()
    assert not at.exception, at.exception
    with unit_of_work(desk.engine) as s:
        company = s.get(Company, company_id)
        assert company is not None and company.paused_at is None
    viewer = app("viewer", COMPANY)
    viewer.query_params["company"] = str(company_id)
    readiness.pause(desk.engine, company_id, "DATEV 403", "system:test")
    viewer.run()
    assert f"act_resume_{company_id}" not in [b.key for b in viewer.button]


def test_viewer_cannot_resume(app, desk: Desk) -> None:
    desk.request_token()
    readiness.pause(desk.engine, desk.companies["Musterfirma GmbH"], "DATEV 403", "system:test")
    at = run_page(app, "viewer", PAGE)
    assert len(at.button) == 0


def test_operator_sends_failed_documents_again(app, desk: Desk) -> None:
    desk.request_token()
    [doc] = desk.intake("a.pdf", approve=True)
    with unit_of_work(desk.engine) as s:  # as a refused upload leaves it (the lifecycle test covers the move)
        from core.platform.models import Document
        row = s.get(Document, doc)
        assert row is not None
        row.status, row.last_error = DocumentStatus.failed.value, "Belegtyp unbekannt"
        s.add(row)
    company_id = desk.companies["Musterfirma GmbH"]
    at = run_page(app, "operator", PAGE)
    assert "1 Beleg fehlgeschlagen" in texts(at)
    at.button(key=f"act_retry_{company_id}").click().run()
    assert not at.exception
    assert desk.document(doc).status == DocumentStatus.approved.value
    assert "1 Beleg wieder freigegeben" in texts(at)


def test_table_filters_by_search_state_and_interface(app, desk: Desk) -> None:
    desk.request_token()
    at = run_page(app, "viewer", PAGE)
    table = at.dataframe(key="overview_table").value
    assert sorted(table["Unternehmen"]) == ["Beispiel Handel KG", "Demo Bau AG", "Lexware Demo GmbH",
                                            "Musterfirma GmbH"]
    row = table[table["Unternehmen"] == "Musterfirma GmbH"].iloc[0]
    assert row["Status"] == "aktiv" and row["Datenbestand"] == "455148–1" and row["Übertragung"] == "möglich"
    assert row["DATEV-Benutzer"] == "Max Mustermann" and row["Tage übrig"] > 700
    assert str(row["Gültig bis"].tz) == "Europe/Berlin"  # shown and sorted in Berlin time
    assert table[table["Unternehmen"] == "Demo Bau AG"]["Gültig bis"].isna().all()  # no token: empty ("–")
    assert row["Nummer"] == "455148–1"  # the company's own Berater-Nr.–Mandanten-Nr.
    at.text_input(key="overview_search").input("bau").run()
    assert list(at.dataframe(key="overview_table").value["Unternehmen"]) == ["Demo Bau AG"]
    for typed in ("455148-3", "455148–3"):  # Demo Bau AG has no token: found by its own number, typed either way
        at.text_input(key="overview_search").input(typed).run()
        assert list(at.dataframe(key="overview_table").value["Unternehmen"]) == ["Demo Bau AG"], typed
    at.text_input(key="overview_search").input("").run()
    at.multiselect(key="overview_states").select("aktiv").run()
    assert list(at.dataframe(key="overview_table").value["Unternehmen"]) == ["Musterfirma GmbH"]
    at.multiselect(key="overview_states").unselect("aktiv").run()
    at.multiselect(key="overview_interfaces").select("Lexware Office").run()
    assert list(at.dataframe(key="overview_table").value["Unternehmen"]) == ["Lexware Demo GmbH"]


def test_company_names_stay_plain_text(app, desk: Desk) -> None:
    with unit_of_work(desk.engine) as s:
        company = s.get(Company, desk.companies["Demo Bau AG"])
        assert company is not None
        company.name = "**Bau** [hier](https://evil.example)"
        s.add(company)
    at = run_page(app, "viewer", PAGE)
    source = "\n".join(str(m.value) for m in at.markdown)  # the Markdown Streamlit receives, not what it shows
    assert f"**{plain('**Bau** [hier](https://evil.example)')}**" in source
    assert "[hier](https://evil.example)" not in source


@pytest.mark.parametrize("who", ["viewer", "operator", "admin"])
def test_company_page_per_role(app, desk: Desk, who: str) -> None:
    desk.request_token()
    desk.intake("a.pdf", approve=True)
    break_token(desk)
    at = app(who, COMPANY)
    at.query_params["company"] = str(desk.companies["Musterfirma GmbH"])
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Musterfirma GmbH"]
    assert "Kann nicht übertragen: Token ungültig" in texts(at)
    documents = at.dataframe[0].value  # the open documents come first
    assert list(documents["Beleg"]) == ["a.pdf"] and list(documents["Hinweis"]) == ["wartet: Token ungültig"]
    assert list(documents.columns)[:3] == ["Beleg", "Status", "Hinweis"]
    buttons = {b.label for b in at.button}
    assert ("Neu anfordern" in buttons) == (who == "admin")
    assert ("Einmalig anmelden" in buttons) == (who in ("operator", "admin"))
    assert ("Audit-Einträge" in [s.value for s in at.subheader]) == (who == "admin")


def test_company_page_without_a_valid_company_offers_a_choice(app, desk: Desk) -> None:
    at = app("viewer", COMPANY)
    at.query_params["company"] = "999999"
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Unternehmensdetails"]
    assert "Dieses Unternehmen gibt es nicht" in texts(at)
    at.selectbox(key="company_choice").select(desk.companies["Demo Bau AG"]).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Demo Bau AG"]


def open_url(at: AppTest, url_path: str) -> AppTest:
    """What a browser at /<url_path> gets: the page the router registered under that path. AppTest's
    switch_page matches files only; a URL matches the url_path, so pick its script hash (private API)."""
    [page_hash] = [h for h, info in at._registered_pages.items() if info.get("url_pathname") == url_path]
    at._page_hash = page_hash
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("direct", [False, True], ids=["url", "page_file"])
def test_viewer_on_an_admin_url_gets_the_german_page_naming_the_admins(app, desk: Desk, direct: bool) -> None:
    at = run_page(app, "viewer", "pages/users.py") if direct else open_url(through_router(app, "viewer"), "users")
    assert [t.value for t in at.title] == ["Keine Berechtigung"]
    shown = unescaped(at)
    assert "„Benutzer“ ist der Rolle „Administrator“ vorbehalten, Ihre Rolle ist „Betrachter“" in shown
    assert "Anna Admin (admin@tokendesk.demo)" in shown
    assert len(at.dataframe) == 0 and len(at.text_input) == 0 and len(at.button) <= 1  # the sidebar's Abmelden


def test_the_root_url_is_the_overview(app, desk: Desk) -> None:
    at = open_url(through_router(app, "operator"), "")  # the default page is served at /
    assert [t.value for t in at.title] == ["Übersicht"]


def test_charts_show_the_renewal_plan_and_say_when_there_is_nothing(app, desk: Desk) -> None:
    desk.request_token()  # a two-year token: in the plan's last month
    at = run_page(app, "viewer", PAGE)
    assert "Auswertungen" in [s.value for s in at.subheader]
    # the renewal plan's Vega-Lite spec (AppTest has no chart element type); no attempts yet for the other two
    assert page_text(at).count("vega.github.io/schema/vega-lite") == 1
    assert [e.label for e in at.expander] == ["Welche Unternehmen wann neu anfordern müssen"]
    plan = at.dataframe[-1].value  # the table behind the plan, in its expander
    assert list(plan["Unternehmen"]) == ["Musterfirma GmbH"] and list(plan["Schnittstelle"]) == ["DATEV"]
    captions = [c.value for c in at.caption]
    assert "In den letzten 30 Tagen gab es keine Übertragungsversuche." in captions
    assert "In den letzten 30 Tagen ist keine Übertragung fehlgeschlagen." in captions


def test_a_company_without_automatic_transfer_says_its_documents_wait_for_a_person(app, desk: Desk) -> None:
    """Review finding: 'Kann übertragen' and 'wird bei der nächsten Übertragung gesendet' for a company whose
    automatic transfer is off, while no scheduler would ever send it."""
    desk.request_token()
    [doc] = desk.intake("von-hand.pdf", approve=True)
    with unit_of_work(desk.engine) as s:
        company = s.get(Company, desk.companies["Musterfirma GmbH"])
        assert company is not None
        company.auto_transfer = False
        s.add(company)
    at = app("viewer", COMPANY)
    at.query_params["company"] = str(desk.companies["Musterfirma GmbH"])
    at.run()
    assert not at.exception
    assert "nur von Hand" in texts(at) and "Kann übertragen." not in texts(at)
    hints = {r["Beleg"]: r["Hinweis"] for r in at.dataframe[0].value.to_dict("records")}
    assert hints["von-hand.pdf"].startswith("wartet auf eine Übertragung von Hand")
    at = run_page(app, "viewer", "pages/documents.py")
    listed = {r["Datei"]: r["Hinweis"] for r in at.dataframe[0].value.to_dict("records")}
    assert listed["von-hand.pdf"].startswith("wartet auf eine Übertragung von Hand"), doc


def test_the_transfers_chart_keeps_days_without_transfers(app, desk: Desk) -> None:
    """Reviewer finding: days without any attempt vanished from the chart (20 bars for "30 Tage", 27.11.
    next to 29.11.). The axis now holds every day of the period."""
    desk.request_token()
    [doc] = desk.intake("heute.pdf", approve=True)
    run_pass(desk.engine, desk.settings, get_keyring(),
             PassOptions(trigger="manual", actor=process("operator@tokendesk.demo"), document_ids=[doc]))
    at = run_page(app, "viewer", PAGE)
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    [axis] = [spec["encoding"]["x"] for spec in specs if spec["encoding"]["x"]["field"] == "Tag"]
    assert axis["scale"]["domain"] == day_labels() and len(axis["scale"]["domain"]) == 30  # one attempt, 30 days


def test_a_token_bound_to_another_data_set_is_said_to_wait_on_every_page(app, desk: Desk) -> None:
    """Review finding: after the Mandanten-Nr. changed, the company page said "Kann übertragen." and the dry run
    named the token's old data set as the target until a pass paused the company."""
    desk.request_token()  # bound to 455148-1
    with unit_of_work(desk.engine) as s:
        company = s.get(Company, desk.companies["Musterfirma GmbH"])
        assert company is not None
        company.client_number = 12
        s.add(company)
    [doc] = desk.intake("alt.pdf", approve=True)
    why = "Langzeittoken an den Datenbestand 455148–1 gebunden, das Unternehmen hat 455148–12"

    overview = run_page(app, "admin", PAGE)
    rows = overview.dataframe(key="overview_table").value
    row = rows[rows["Unternehmen"] == "Musterfirma GmbH"].iloc[0]
    assert row["Status"] == "fremder Datenbestand" and row["Übertragung"].startswith(f"nicht möglich: {why}")
    assert "Musterfirma GmbH" in todo_names(overview) and "Langzeittoken anfordern" in texts(overview)
    assert metric(overview, "fremder Datenbestand") == "1"  # its own tile, shown while a company is in that state

    page = app("viewer", COMPANY)
    page.query_params["company"] = str(desk.companies["Musterfirma GmbH"])
    page.run()
    assert not page.exception
    assert f"Kann nicht übertragen: {why}" in unescaped(page) and "Kann übertragen." not in texts(page)

    transfer = run_page(app, "operator", "pages/transfer.py")  # the dry run
    transfer.button(key="transfer_choose_all").click().run()
    [line] = [r for r in table(transfer, "Hinweis") if r["Nr."] == doc]
    assert line["Ziel"] == "Mandant 455148-12 (Musterfirma GmbH)" and line["Hinweis"] == f"wartet: {why}: bitte ein " \
        "neues Langzeittoken anfordern"
