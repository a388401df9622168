"""The Anforderungslink through the router (AppTest): the admin's panel on the token card creates, shows
once and withdraws a link; the link page, signed out, shows only the company, the data set, who asked and
until when, no menu and no sidebar, and refuses a browser without its session cookie before the link is
used up. The whole way through DATEV runs in a real browser (tests/e2e/test_request_link.py)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from sqlmodel import select

from core.connections import request_links
from core.platform.db import unit_of_work
from core.platform.models import AuditEvent, RequestLink
from core.platform.secret_store import get_keyring
from tests.support.desk import Desk
from tests.support.rendered import labels, texts

LINK_PAGE = "pages/anforderung.py"


def make_link(desk: Desk, company: str = "Musterfirma GmbH", recipient: str = "stb@kanzlei.example") -> str:
    created = request_links.create_link(desk.engine, desk.settings, get_keyring(), company_id=desk.companies[company],
                                        actor=desk.user("admin@tokendesk.demo"), recipient=recipient)
    return parse_qs(urlsplit(created.url).query)["link"][0]


def open_link_page(app, who: str, token: str | None):
    at = app(who).run()
    at.switch_page(LINK_PAGE)
    if token is not None:
        at.query_params["link"] = token
    return at.run()


def test_signed_out_visitor_sees_the_link_facts_and_nothing_else(app, desk: Desk) -> None:
    token = make_link(desk)
    at = open_link_page(app, "signed_out", token)
    assert not at.exception
    shown = texts(at)
    assert "Dauerhaften DATEV-Zugriff freigeben" in shown
    assert "Musterfirma GmbH" in shown and "455148–1" in shown and "Angefordert von:" in shown
    assert "stb@kanzlei.example" not in shown  # the recipient: the link may have been forwarded
    assert labels(at) == ["Weiter zur DATEV-Anmeldung"]  # no sign-in, no menu actions, nothing else
    assert len(at.sidebar) == 0 and len(at.dataframe) == 0
    assert "Angemeldet als" not in shown


def test_a_browser_without_its_session_cookie_is_refused_before_the_link_is_used(app, desk: Desk) -> None:
    token = make_link(desk)
    at = open_link_page(app, "signed_out", token)
    at.button[0].click().run()  # AppTest sends no cookies, like a browser that blocks them
    assert "kein Sitzungs-Cookie" in texts(at)
    with unit_of_work(desk.engine) as s:
        link = s.exec(select(RequestLink)).one()
        assert link.started_at is None  # still usable from a browser that keeps cookies


def test_unknown_or_missing_link_gets_the_one_message(app, desk: Desk) -> None:
    for token in ("x" * 43, None):
        at = open_link_page(app, "signed_out", token)
        assert not at.exception
        assert request_links.REFUSED in texts(at)
        assert labels(at) == []
    with unit_of_work(desk.engine) as s:
        refused = [e for e in s.exec(select(AuditEvent)).all() if e.action == "request_link.refused"]
    assert len(refused) == 1  # the unknown link is a counted try; an empty visit is not


def test_admin_creates_copies_and_withdraws_a_link_on_the_token_card(app, desk: Desk) -> None:
    at = app("admin").run()
    at.switch_page("pages/tokens.py").run()
    cid = desk.companies["Musterfirma GmbH"]
    at.text_input(key=f"request_link_to_{cid}").input("keine-adresse")
    at.button(key=f"FormSubmitter:request_link_{cid}-Anforderungslink erstellen").click().run()
    assert "gültige E-Mail-Adresse" in texts(at)  # German, at the field; nothing stored
    with unit_of_work(desk.engine) as s:
        assert s.exec(select(RequestLink)).all() == []

    at.text_input(key=f"request_link_to_{cid}").input("")
    at.button(key=f"FormSubmitter:request_link_{cid}-Anforderungslink erstellen").click().run()
    assert not at.exception
    assert "Anforderungslink erstellt" in texts(at)
    url = at.code[0].value
    assert "/anforderung?link=" in url
    with unit_of_work(desk.engine) as s:
        link = s.exec(select(RequestLink)).one()
    assert link.token_hash == request_links.hash_of(parse_qs(urlsplit(url).query)["link"][0])
    assert parse_qs(urlsplit(url).query)["link"][0] not in link.token_hash  # only the hash is stored

    at.button(key=f"hide_link_{cid}").click().run()
    assert len(at.code) == 0  # shown once
    assert "offen bis" in texts(at)
    at.button(key=f"withdraw_link_{link.id}").click().run()
    assert "Anforderungslink zurückgezogen" in texts(at)
    assert "zurückgezogen" in texts(at)
    with unit_of_work(desk.engine) as s:
        withdrawn = s.get(RequestLink, link.id)
        assert withdrawn is not None and withdrawn.withdrawn_by == "admin@tokendesk.demo"


def test_only_admins_see_the_panel(app, desk: Desk) -> None:
    for who in ("viewer", "operator"):
        at = app(who).run()
        at.switch_page("pages/tokens.py").run()
        assert not at.exception
        assert not [e for e in at.expander if "Anforderungslink" in e.label]


def test_an_open_link_shows_in_heute_zu_tun_and_on_the_company_page(app, desk: Desk) -> None:
    make_link(desk)  # Musterfirma GmbH has no token yet: it is in "Heute zu tun"
    at = app("viewer").run()
    assert not at.exception
    assert "Link an stb@kanzlei.example offen bis" in texts(at)
    at = app("viewer", "pages/company.py")
    at.query_params["company"] = str(desk.companies["Musterfirma GmbH"])
    at.run()
    assert not at.exception
    assert "Link an stb@kanzlei.example offen bis" in texts(at)


def test_the_renewal_plan_creates_one_link_per_company_of_a_month(app, desk: Desk) -> None:
    from core.platform.timefmt import local_day

    desk.request_token()  # two years: one bar in the renewal plan
    expires = desk.connection().refresh_expires_at
    assert expires is not None
    month = local_day(expires).replace(day=1)
    at = app("admin").run()
    assert not at.exception
    at.selectbox(key="bulk_links_month").select(month).run()
    assert "Musterfirma GmbH: läuft ab" in texts(at)
    at.text_input(key="bulk_links_to").input("stb@kanzlei.example")
    at.button(key="FormSubmitter:bulk_links-1 Anforderungslinks erstellen").click().run()
    assert not at.exception
    assert "1 Anforderungslinks erstellt" in texts(at)
    with unit_of_work(desk.engine) as s:
        links = s.exec(select(RequestLink)).all()
    assert [(link.company_id, link.recipient) for link in links] == [
        (desk.companies["Musterfirma GmbH"], "stb@kanzlei.example")]
    for who in ("viewer", "operator"):  # admins only
        other = app(who).run()
        assert not [e for e in other.expander if "Anforderungslinks" in e.label]
