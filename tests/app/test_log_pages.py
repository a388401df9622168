"""Audit-Protokoll and HTTP-Protokoll (AppTest, admins): filters by company, who, action or purpose,
result, and German names for the stored codes."""

from __future__ import annotations

from tests.support.desk import Desk, run_page


def test_audit_log_filters_by_company_actor_and_action(app, desk: Desk) -> None:
    desk.request_token()
    desk.request_token(company="Demo Bau AG")
    at = run_page(app, "admin", "pages/audit_log.py")
    table = at.dataframe[0].value
    assert {"Unternehmen angelegt", "Token hinterlegt"} <= set(table["Aktion"])
    at.selectbox(key="audit_company").select(desk.companies["Demo Bau AG"]).run()
    table = at.dataframe[0].value
    assert set(table["Code"]) >= {"company.created", "token.requested"}
    assert set(table["Objekt"]) <= {f"Unternehmen {desk.companies['Demo Bau AG']}",
                                    *(f"Verbindung {i}" for i in range(1, 20))}
    assert len(table) < len(run_page(app, "admin", "pages/audit_log.py").dataframe[0].value)
    at.multiselect(key="audit_actions").select("token.requested").run()
    assert list(at.dataframe[0].value["Aktion"]) == ["Token hinterlegt"]
    at.text_input(key="audit_actor").input("niemand@").run()
    assert len(at.dataframe) == 0 and "Keine Einträge für diese Auswahl." in [i.value for i in at.info]


def test_http_log_filters_by_purpose_result_and_company(app, desk: Desk) -> None:
    desk.request_token()
    at = run_page(app, "admin", "pages/http_log.py")
    assert "Anmeldung abschließen" in set(at.dataframe[0].value["Zweck"])
    at.multiselect(key="http_log_purposes").select("connection_test").run()
    table = at.dataframe[0].value
    assert set(table["Zweck"]) == {"Verbindungstest"} and set(table["Status"]) == {200}
    at.selectbox(key="http_log_result").select("error").run()
    assert len(at.dataframe) == 0  # the test call succeeded
    at.selectbox(key="http_log_result").select("ok").run()
    at.selectbox(key="http_log_company").select(desk.companies["Demo Bau AG"]).run()
    assert len(at.dataframe) == 0 and "Keine Aufrufe für diese Auswahl." in [i.value for i in at.info]


def test_viewer_gets_neither_log(app, desk: Desk) -> None:
    for page in ("pages/audit_log.py", "pages/http_log.py"):
        at = run_page(app, "viewer", page)
        assert [t.value for t in at.title] == ["Keine Berechtigung"] and len(at.dataframe) == 0
