"""The Langzeittoken screen (AppTest): cards per role, the request link, DATEV's redirect back to
the callback page, the Lexware key form, and the HTTP log. Tokens are created through core
against the emulator over real HTTP, never by writing rows by hand."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import requests
from sqlmodel import select
from streamlit.proto.TextInput_pb2 import TextInput as TextInputProto
from streamlit.testing.v1 import AppTest

from core import companies
from core.connections import store
from core.connections.datev_login import start_login
from core.platform.crypto import fingerprint
from core.platform.db import unit_of_work
from core.platform.models import ConnectionKind, Interface, Provider, StoredSecret
from core.platform.secret_store import get_keyring
from core.transfers import readiness
from core.users import process
from testkit.datev_user import consent
from testkit.rows import present
from tests.support.desk import Desk, run_page
from tests.support.rendered import href_of, labels, page_text, texts

PAGE = "pages/tokens.py"
LEXWARE_KEY = "demo-lexware-key"


def test_viewer_sees_the_cards_read_only(app, desk: Desk) -> None:
    desk.request_token()
    at = run_page(app, "viewer", PAGE)
    assert [t.value for t in at.title] == ["Langzeittoken"]
    subheaders = [s.value for s in at.subheader]
    assert "Musterfirma GmbH · DATEV" in subheaders and "Lexware Demo GmbH · Lexware Office" in subheaders
    badges = [m.value for m in at.markdown if m.value.startswith("Status: ")]
    assert "Status: :green-badge[:material/check_circle: aktiv]" in badges
    assert "Status: :gray-badge[:material/radio_button_unchecked: fehlt]" in badges
    assert "**DATEV-Benutzer:** Max Mustermann" in texts(at)
    assert "Fingerprint" not in texts(at)  # technical details are for administrators
    assert labels(at) == [] and [t.key for t in at.text_input] == ["tokens_search"] and len(at.get("popover")) == 0
    assert len(at.get("expander")) == 0 and len(at.get("form")) == 0


def test_operator_may_log_in_once_but_not_request_or_delete(app, desk: Desk) -> None:
    desk.request_token()
    at = run_page(app, "operator", PAGE)
    assert labels(at) == ["Einmalig anmelden"] * 3  # the three DATEV companies
    assert len(at.get("popover")) == 0 and [t.key for t in at.text_input] == ["tokens_search"]
    at.button(key=f"oneoff_{desk.companies['Demo Bau AG']}").click().run()
    assert not at.exception
    assert "Weiter zur einmaligen DATEV-Anmeldung" in texts(at)
    [pending] = desk.pending()
    assert pending.kind == "one_off" and pending.company_id == desk.companies["Demo Bau AG"]


def test_admin_sees_request_test_and_delete(app, desk: Desk) -> None:
    desk.request_token()
    at = run_page(app, "admin", PAGE)
    musterfirma = desk.companies["Musterfirma GmbH"]
    assert at.button(key=f"request_{musterfirma}").label == "Neu anfordern"
    assert at.button(key=f"test_{musterfirma}").label == "Verbindung testen"
    assert at.button(key=f"delete_{musterfirma}").label == "Endgültig löschen"
    assert [p.proto.popover.label for p in at.get("popover")] == ["Langzeittoken löschen"]
    for name in ("Beispiel Handel KG", "Demo Bau AG"):
        assert at.button(key=f"request_{desk.companies[name]}").label == "Langzeittoken anfordern"
    assert "API-Schlüssel hinterlegen" in [e.label for e in at.expander]
    assert labels(at).count("Einmalig anmelden") == 3


def test_card_shows_the_facts_and_never_a_token(app, desk: Desk) -> None:
    desk.request_token()
    row = desk.connection()
    at = run_page(app, "admin", PAGE)
    shown = texts(at)
    assert "Status: :green-badge[:material/check_circle: aktiv]" in shown
    assert "**DATEV-Benutzer:** Max Mustermann" in shown
    assert re.search(r"\*\*Angefordert:\*\* \d\d\.\d\d\.\d{4} \d\d:\d\d von admin@tokendesk\.demo", shown)
    assert re.search(r"\*\*Gültig bis:\*\* \d\d\.\d\d\.\d{4} \d\d:\d\d", shown)
    assert "**Datenbestand (Berater-Nr.–Mandanten-Nr.):** gebunden an 455148–1" in shown
    assert "**Letzte Erneuerung:** –" in shown
    assert re.search(r"\*\*Letzte Verwendung:\*\* \d\d\.\d\d\.\d{4} \d\d:\d\d", shown)
    assert re.search(r"\*\*Letzte Testabfrage:\*\* \d\d\.\d\d\.\d{4} \d\d:\d\d: :green\[:material/check_circle:\] Zugriff auf Mandant 455148-1", shown)
    assert f"**Fingerprint:** `{row.token_fingerprint}`" in shown
    assert "https://apps.datev.de/tokrevui" in shown
    everything = page_text(at)
    with unit_of_work(desk.engine) as s:
        for secret in s.exec(select(StoredSecret)).all():
            value = get_keyring().open(secret.ciphertext, secret.context)
            assert value not in everything and secret.ciphertext not in everything
    assert present(row.token_fingerprint) in everything  # the search above can find what is shown


def test_request_shows_the_login_link_and_keeps_a_pending_row(app, desk: Desk) -> None:
    at = run_page(app, "admin", PAGE)
    assert desk.pending() == []
    musterfirma = desk.companies["Musterfirma GmbH"]
    at.button(key=f"request_{musterfirma}").click().run()
    assert not at.exception
    links = [m.value for m in at.markdown if 'data-testid="auth-link"' in m.value]
    assert len(links) == 1 and "Weiter zur DATEV-Anmeldung (Langzeittoken)" in links[0]
    href = href_of(links[0])
    assert href.startswith(desk.settings.emulator_url + "/openid/authorize?")
    assert "datev%3Aiam%3Aclient%3A455148-1" in href and "target=\"_self\"" in links[0]
    [pending] = desk.pending()
    assert pending.company_id == musterfirma and pending.kind == "long_term"
    assert pending.user_id == desk.user("admin@tokendesk.demo").id


def callback(app: Callable[..., AppTest], params: dict[str, str]) -> AppTest:
    """DATEV's redirect back: a new session on /datev_callback?code=…&state=… through the router."""
    at = app("admin").run()
    assert not at.exception
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page("pages/datev_callback.py").run()
    assert not at.exception, at.exception
    return at


def test_callback_stores_the_token_and_shows_the_tokens_page(app, desk: Desk) -> None:
    at = run_page(app, "admin", PAGE)
    at.button(key=f"request_{desk.companies['Musterfirma GmbH']}").click().run()
    link = next(m.value for m in at.markdown if 'data-testid="auth-link"' in m.value)
    params = consent(href_of(link))
    assert set(params) == {"code", "state"}

    back = callback(app, params)
    assert [t.value for t in back.title] == ["Langzeittoken"]  # switched to the tokens page
    success = " ".join(s.value for s in back.success)
    assert "Langzeittoken gespeichert (DATEV-Benutzer: Max Mustermann)" in success
    assert "Zugriff auf Mandant 455148-1 (Musterfirma GmbH) bestätigt" in success
    assert "Musterfirma GmbH · DATEV" in [s.value for s in back.subheader]
    assert "Status: :green-badge[:material/check_circle: aktiv]" in [m.value for m in back.markdown]
    assert params["code"] not in page_text(back) and params["state"] not in page_text(back)
    assert not back.query_params.get("code") and not back.query_params.get("state")
    row = desk.connection()
    assert row.has_token and row.grantor_name == "Max Mustermann" and row.requested_by == "admin@tokendesk.demo"
    assert desk.pending() == []


@pytest.mark.parametrize("case", ["unknown_state", "denied"])
def test_callback_failure_is_shown_in_german_and_stores_nothing(app, desk: Desk, case: str) -> None:
    if case == "unknown_state":
        params, expected = {"state": "s" * 43, "code": "irgendwas"}, "unbekannt oder wurde bereits verwendet"
    else:
        url = start_login(desk.engine, desk.settings, get_keyring(), company_id=desk.companies["Musterfirma GmbH"],
                          user=desk.user("admin@tokendesk.demo"), kind=ConnectionKind.long_term)
        params, expected = consent(url, decision="deny"), "Die Zustimmung wurde bei DATEV abgelehnt."
    back = callback(app, params)
    assert [t.value for t in back.title] == ["Langzeittoken"]
    errors = " ".join(e.value for e in back.error)
    assert expected in errors and "Es wurde nichts gespeichert." in errors
    assert not back.success
    assert desk.find_connection() is None and desk.pending() == []
    with unit_of_work(desk.engine) as s:
        assert s.exec(select(StoredSecret)).first() is None


def test_callback_without_parameters_explains_itself(app, desk: Desk) -> None:
    back = callback(app, {})
    assert "Es ist keine DATEV-Anmeldung offen." in texts(back)
    [link] = [el.proto for el in back.get("page_link") if el.proto.label == "Zu den Langzeittoken"]
    assert link.page == "tokens"  # the page it names (review finding: it went to the Übersicht)
    assert desk.find_connection() is None


def test_admin_tests_and_deletes_a_token(app, desk: Desk, emulator) -> None:
    desk.request_token()
    musterfirma = desk.companies["Musterfirma GmbH"]
    at = run_page(app, "admin", PAGE)
    at.button(key=f"test_{musterfirma}").click().run()
    assert not at.exception
    assert "Musterfirma GmbH: Zugriff auf Mandant 455148-1 (Musterfirma GmbH) bestätigt." in [s.value for s in at.success]
    at.button(key=f"delete_{musterfirma}").click().run()
    assert not at.exception
    assert "Musterfirma GmbH: Langzeittoken gelöscht und bei DATEV widerrufen." in [s.value for s in at.success]
    assert "Status: :gray-badge[:material/block: widerrufen]" in texts(at)
    assert "Gelöscht am" in texts(at) and "von admin@tokendesk.demo" in texts(at)
    assert at.warning.len == 0  # nothing left at DATEV
    row = desk.connection()
    assert not row.has_token and row.deleted_by == "admin@tokendesk.demo" and row.left_at_provider is None


def test_a_revocation_datev_did_not_confirm_stays_on_the_card(app, desk: Desk, emulator) -> None:
    """Review finding: when DATEV's revoke failed, the warning was shown once and the card said "widerrufen"
    from then on, while the grant was still alive at DATEV."""
    desk.request_token()
    musterfirma = desk.companies["Musterfirma GmbH"]
    requests.post(f"{emulator.base_url}/_admin/faults", json={"target": "revoke", "kind": "503", "count": 1},
                  timeout=5).raise_for_status()
    at = run_page(app, "admin", PAGE)
    at.button(key=f"delete_{musterfirma}").click().run()
    assert not at.exception
    [shown] = [w.value for w in at.warning if w.value.startswith("Musterfirma GmbH: ")]
    assert "Langzeittoken hier gelöscht. DATEV hat den Widerruf nicht bestätigt" in shown
    assert "apps.datev.de/tokrevui" in shown and at.success.len == 0
    later = run_page(app, "viewer", PAGE)  # another person, another day: the card still says it
    notes = [w.value for w in later.warning]
    assert any("DATEV hat den Widerruf nicht bestätigt" in n and "Verbundene Anwendungen" in n for n in notes), notes
    assert [g["revoked"] for g in requests.get(f"{emulator.base_url}/_admin/datev/grants", timeout=5).json()] == [False]


def test_lexware_key_form_stores_the_key_and_shows_only_its_fingerprint(app, desk: Desk) -> None:
    lexware = desk.companies["Lexware Demo GmbH"]
    at = run_page(app, "admin", PAGE)
    at.text_input(key=f"lexware_key_value_{lexware}").input(LEXWARE_KEY)
    at.button(key=f"lexware_key_submit_{lexware}").click().run()
    assert not at.exception
    assert ("Lexware Demo GmbH: API-Schlüssel gespeichert. Verbunden mit „Lexware Demo GmbH“."
            in [s.value for s in at.success])
    shown = texts(at)
    assert "Lexware Demo GmbH · Lexware Office" in [s.value for s in at.subheader]
    assert "Status: :green-badge[:material/check_circle: aktiv]" in [m.value for m in at.markdown]
    assert "**Lexware-Organisation:** Lexware Demo GmbH" in shown
    assert f"**Fingerprint:** `{fingerprint(LEXWARE_KEY)}`" in shown
    assert LEXWARE_KEY not in page_text(at)
    assert at.text_input(key=f"lexware_key_value_{lexware}").proto.type == TextInputProto.PASSWORD
    row = desk.connection("Lexware Demo GmbH")
    assert row.has_token and row.token_fingerprint == fingerprint(LEXWARE_KEY)


def test_lexware_key_form_shows_field_errors(app, desk: Desk) -> None:
    lexware = desk.companies["Lexware Demo GmbH"]
    at = run_page(app, "admin", PAGE)
    at.text_input(key=f"lexware_key_value_{lexware}").input("falscher-schluessel")
    at.button(key=f"lexware_key_submit_{lexware}").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Lexware Office lehnt diesen API-Schlüssel ab."]
    assert not at.success and desk.find_connection("Lexware Demo GmbH") is None


def test_http_log_lists_the_calls_for_admins(app, desk: Desk) -> None:
    desk.request_token()
    at = app("admin", "pages/http_log.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert {"/datev-api/token", "/platform/v2/clients/455148-1"} <= set(table["Pfad"])
    assert set(table["Anbieter"]) == {"DATEV"}
    row = table[table["Pfad"] == "/platform/v2/clients/455148-1"].iloc[0]
    assert row["Status"] == 200 and row["Zweck"] == "Verbindungstest" and row["V-Cap-Request-ID"]
    assert row["Unternehmen"] == "Musterfirma GmbH"


def emulator_config(desk: Desk, **switches: object) -> None:
    response = requests.post(desk.settings.emulator_url.rstrip("/") + "/_admin/config", json=switches, timeout=5)
    response.raise_for_status()


def test_a_standard_providers_grant_is_shown_truthfully(app, desk: Desk) -> None:
    """A plain OpenID Connect provider sends no refresh_token_expires_in and drops the client scope:
    the card shows a long-term token, its derived expiry, and that it is not bound (never the company's
    own number as if it were)."""
    emulator_config(desk, idp_profile="standard", client_scope_grant="drop")
    desk.request_token()
    shown = texts(run_page(app, "admin", PAGE))
    assert re.search(r"\*\*Gültig bis:\*\* \d\d\.\d\d\.\d{4} \d\d:\d\d \(laut DATEV-Dokumentation\)", shown)
    assert "**Datenbestand (Berater-Nr.–Mandanten-Nr.):** nicht an einen Datenbestand gebunden" in shown
    assert "Nicht an einen Datenbestand gebunden" in shown
    assert "Kein Langzeittoken" not in shown and "gebunden an 455148–1" not in shown


def test_lexware_cards_speak_of_api_keys(app, desk: Desk) -> None:
    at = run_page(app, "admin", PAGE)
    lexware = desk.companies["Lexware Demo GmbH"]
    assert "Noch kein API-Schlüssel hinterlegt." in texts(at)
    expanders = [getattr(e, "label", "") for e in at.get("expander")]
    assert "API-Schlüssel hinterlegen" in expanders
    assert f"request_{lexware}" not in [b.key for b in at.button]


def test_list_is_filtered_and_paged_broken_tokens_first(app, desk: Desk) -> None:
    for n in range(12):
        companies.create_company(desk.engine, actor=process("admin@tokendesk.demo"), data=companies.CompanyInput(
            f"Filiale {n:02d} GmbH", "455148", str(100 + n), Interface.datev.value, False, ""))
    desk.request_token()
    row = desk.connection()
    assert row.id is not None and store.mark_invalid(desk.engine, row.id, expected_version=row.version, reason="x")
    at = run_page(app, "viewer", PAGE)
    subheaders = [s.value for s in at.subheader]
    assert len(subheaders) == 10  # never all 16 cards at once
    assert subheaders[0] == "Musterfirma GmbH · DATEV"  # the broken token first
    assert "16 von 16 Unternehmen · Seite 1 von 2" in texts(at)
    at.number_input(key="tokens_page").set_value(2).run()
    assert len(at.subheader) == 6
    at.text_input(key="tokens_search").input("filiale 1").run()
    assert [s.value for s in at.subheader] == ["Filiale 10 GmbH · DATEV", "Filiale 11 GmbH · DATEV"]
    at.text_input(key="tokens_search").input("455148 111").run()  # the number, typed with a space
    assert [s.value for s in at.subheader] == ["Filiale 11 GmbH · DATEV"]
    at.text_input(key="tokens_search").input("").run()
    at.multiselect(key="tokens_provider").select(Provider.lexware).run()
    assert [s.value for s in at.subheader] == ["Lexware Demo GmbH · Lexware Office"]


def test_deleting_an_api_key_asks_first(app, desk: Desk) -> None:
    lexware = desk.companies["Lexware Demo GmbH"]
    at = run_page(app, "admin", PAGE)
    at.text_input(key=f"lexware_key_value_{lexware}").input(LEXWARE_KEY)
    at.button(key=f"lexware_key_submit_{lexware}").click().run()
    assert "API-Schlüssel löschen" in [p.proto.popover.label for p in at.get("popover")]
    assert "API-Schlüssel löschen" not in labels(at)  # no button that deletes at once
    assert at.button(key=f"delete_{lexware}").label == "Endgültig löschen"
    at.button(key=f"delete_{lexware}").click().run()
    assert not at.exception, at.exception
    assert not desk.connection("Lexware Demo GmbH").has_token
    # Lexware has no revocation by API: never "widerrufen beim Anbieter", and the card keeps what is left to do
    [shown] = [w.value for w in at.warning if w.value.startswith("Lexware Demo GmbH: ")]
    assert shown.startswith("Lexware Demo GmbH: API-Schlüssel hier gelöscht. In Lexware Office bleibt der Schlüssel")
    assert "widerrufen" not in " ".join(s.value for s in at.success)
    assert any("app.lexware.de/addons/public-api" in w.value for w in run_page(app, "admin", PAGE).warning)


def test_a_paused_companys_card_says_so_as_the_overview_does(app, desk: Desk) -> None:
    """Review finding: the Übersicht said "pausiert" and the company's card only "aktiv"."""
    desk.request_token()
    readiness.pause(desk.engine, desk.companies["Musterfirma GmbH"], "DATEV verweigert den Zugriff (403)", "system:test")
    at = run_page(app, "viewer", PAGE)
    assert "Status: :green-badge[:material/check_circle: aktiv] · Übertragung pausiert: DATEV verweigert den Zugriff " \
           "(403)" in texts(at)
