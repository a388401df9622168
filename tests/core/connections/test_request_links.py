"""The Anforderungslink over real HTTP against the emulator, on SQLite and PostgreSQL: one use, expiry,
withdrawal, one message for every refused try and a limit per address, the same checks as an admin's
own login (binding, no orphan grants), the e-mail at a real SMTP server, and a link for company A never
yields a token for company B."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import update
from sqlmodel import col, select

from core.alarms.outbox import NO_MAIL_SERVER, retry_due_alarms
from core.alarms.views import delivery_state
from core.connections import request_links
from core.connections.request_links import REFUSED, TOO_MANY, LinkRefused
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import AlarmSent, AuditEvent, Connection, RequestLink, StoredSecret, utcnow
from testkit.datev_user import consent
from tests.support.sinks import SmtpSink
from tests.support.world import World

ADDRESS = "203.0.113.7"
BROWSER = "xsrf-secret-of-the-browser-that-opened-the-link"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink.running() as sink:
        yield sink


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["link"][0]


def make_link(world: World, *, recipient: str = "", valid_days: int | None = None) -> tuple[int, str]:
    created = request_links.create_link(world.engine, world.settings, world.keyring, company_id=world.company_id,
                                        actor=world.admin, recipient=recipient, valid_days=valid_days)
    return created.link_id, token_of(created.url)


def use_link(world: World, token: str, **consent_args: str) -> request_links.LinkResult:
    url = request_links.start_link_login(world.engine, world.settings, world.keyring, token=token, address=ADDRESS,
                                         browser=BROWSER)
    params = consent(url, **consent_args)
    return request_links.finish_link_login(world.engine, world.settings, world.keyring, params=params, browser=BROWSER)


def grants(world: World) -> list[dict[str, object]]:
    found: list[dict[str, object]] = requests.get(world.emulator_url + "/_admin/datev/grants", timeout=5).json()
    return found


def actions(world: World) -> list[str]:
    with unit_of_work(world.engine) as s:
        return [a.action for a in s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
                if a.action.startswith("request_link.")]


def test_a_link_grants_the_token_as_if_the_admin_had_requested_it(world: World) -> None:
    link_id, token = make_link(world, recipient="stb@kanzlei.example")
    assert len(token) >= 43  # 256 bits, url-safe
    page = request_links.open_link(world.engine, world.settings, token=token, address=ADDRESS)
    assert (page.company_name, page.data_set) == ("Musterfirma GmbH", "455148–1")
    result = use_link(world, token)
    assert result.ok and result.grantor_name == "Max Mustermann" and result.valid_until is not None
    row = world.connection()
    assert row.offline_granted and row.bound_client == "455148-1" and row.requested_by == world.admin.email
    assert row.requested_via == "Anforderungslink für stb@kanzlei.example" and row.grantor_name == "Max Mustermann"
    [view] = request_links.list_links(world.engine, company_id=world.company_id)
    assert (view.id, view.state, view.succeeded) == (link_id, "verwendet", True)
    assert actions(world) == ["request_link.created", "request_link.mailed", "request_link.used",
                              "request_link.succeeded"]


def test_only_the_hash_is_stored_and_the_mailed_link_is_sealed(world: World) -> None:
    _link_id, token = make_link(world, recipient="stb@kanzlei.example")  # no SMTP: the mail waits
    with unit_of_work(world.engine) as s:
        link = s.exec(select(RequestLink)).one()
        message = s.exec(select(AlarmSent)).one()
        sealed = s.exec(select(StoredSecret).where(StoredSecret.owner_type == "alarm_sent")).all()
    assert link.token_hash == request_links.hash_of(token) and token not in link.token_hash
    assert "{link}" in message.body and token not in message.body and message.direct_to == "stb@kanzlei.example"
    assert len(sealed) == 1 and token not in sealed[0].ciphertext
    # without SMTP_HOST the mail cannot go anywhere: said as that (not "no alarm targets", which would mislead
    # when webhook alarms work), and shown as "nicht gesendet"
    assert message.detail == NO_MAIL_SERVER and delivery_state(message) == ("nicht gesendet", False)


def test_a_link_works_once(world: World) -> None:
    _link_id, token = make_link(world)
    assert use_link(world, token).ok
    with pytest.raises(LinkRefused) as again:
        request_links.start_link_login(world.engine, world.settings, world.keyring, token=token, address=ADDRESS,
                                         browser=BROWSER)
    assert again.value.message == REFUSED
    with pytest.raises(LinkRefused):
        request_links.open_link(world.engine, world.settings, token=token, address=ADDRESS)


def test_expired_withdrawn_and_unknown_links_get_the_same_message(world: World) -> None:
    expired_id, expired = make_link(world)
    with unit_of_work(world.engine) as s:
        s.exec(update(RequestLink).where(col(RequestLink.id) == expired_id)
               .values(expires_at=utcnow() - timedelta(seconds=1)))
    withdrawn_id, withdrawn = make_link(world)
    assert request_links.withdraw_link(world.engine, link_id=withdrawn_id, actor=world.admin)
    messages = set()
    for token in (expired, withdrawn, "kein-gueltiger-link"):
        with pytest.raises(LinkRefused) as refused:
            request_links.start_link_login(world.engine, world.settings, world.keyring, token=token, address=ADDRESS,
                                         browser=BROWSER)
        messages.add(refused.value.message)
    assert messages == {REFUSED} and world.stored_nothing()
    states = {v.id: v.state for v in request_links.list_links(world.engine)}
    assert (states[expired_id], states[withdrawn_id]) == ("abgelaufen", "zurückgezogen")


def test_tries_with_bad_links_are_limited_per_address(world: World) -> None:
    settings = world.settings.model_copy(update={"request_link_max_failures": 3})
    for _ in range(3):
        with pytest.raises(LinkRefused) as refused:
            request_links.open_link(world.engine, settings, token="geraten", address=ADDRESS)
        assert refused.value.message == REFUSED
    _link_id, good = make_link(world)
    with pytest.raises(LinkRefused) as blocked:  # even a good link, from that address, for a while
        request_links.open_link(world.engine, settings, token=good, address=ADDRESS)
    assert blocked.value.message == TOO_MANY
    assert request_links.open_link(world.engine, settings, token=good, address="198.51.100.1").company_name


def test_another_data_set_chosen_at_datev_is_refused_and_revoked(world: World) -> None:
    world.admin_post("/config", {"client_scope_grant": "other", "client_scope_other": "455148-5"})
    _link_id, token = make_link(world)
    result = use_link(world, token)
    assert not result.ok and "455148–5" in result.message and "nichts gespeichert" in result.message
    assert world.stored_nothing() and [g["revoked"] for g in grants(world)] == [True]
    [view] = request_links.list_links(world.engine)
    assert (view.state, view.succeeded) == ("verwendet", False)


def test_a_broken_userinfo_leaves_no_grant_behind_on_this_path_too(world: World) -> None:
    world.admin_post("/faults", {"target": "userinfo", "kind": "html_200", "count": 1})
    _link_id, token = make_link(world)
    assert not use_link(world, token).ok
    assert world.stored_nothing() and [g["revoked"] for g in grants(world)] == [True]


def test_consent_refused_is_reported_and_stores_nothing(world: World) -> None:
    _link_id, token = make_link(world)
    result = use_link(world, token, decision="deny")
    assert not result.ok and "abgelehnt" in result.message and world.stored_nothing()


def test_a_link_for_one_company_never_yields_a_token_for_another(world: World) -> None:
    """The link names the company; the DATEV login asks for that company's data set only, and the token
    is stored for that company only, whatever the person picks at DATEV."""
    _link_id, token = make_link(world)
    url = request_links.start_link_login(world.engine, world.settings, world.keyring, token=token, address=ADDRESS,
                                         browser=BROWSER)
    scopes = parse_qs(urlsplit(url).query)["scope"][0].split()
    assert [s for s in scopes if s.startswith("datev:iam:client:")] == ["datev:iam:client:455148-1"]
    world.admin_post("/config", {"client_scope_grant": "other", "client_scope_other": "455148-2"})  # Beispiel Handel
    result = request_links.finish_link_login(world.engine, world.settings, world.keyring, params=consent(url),
                                             browser=BROWSER)
    assert not result.ok
    with unit_of_work(world.engine) as s:
        assert s.exec(select(Connection)).first() is None  # neither A nor B got a token


def test_the_mail_arrives_once_with_the_link_and_stops_after_use(world: World, smtp: SmtpSink) -> None:
    world.settings = world.settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port,
                                                       "smtp_tls": "none"})
    created = request_links.create_link(world.engine, world.settings, world.keyring, company_id=world.company_id,
                                        actor=world.admin, recipient="stb@kanzlei.example")
    assert created.mailed
    [(recipients, mail)] = smtp.messages
    body = mail.get_content()
    assert recipients == ["stb@kanzlei.example"] and "Musterfirma GmbH" in str(mail["Subject"])
    assert created.url in body and "455148–1" in body and "apps.datev.de/tokrevui" in body
    assert "Belege online" in body and world.admin.email in body
    with unit_of_work(world.engine) as s:  # sent: the sealed link is gone
        assert s.exec(select(StoredSecret).where(StoredSecret.owner_type == "alarm_sent")).first() is None


def test_a_mail_that_could_not_be_sent_is_not_sent_after_the_link_was_used(world: World, smtp: SmtpSink) -> None:
    down = world.settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": 1, "smtp_tls": "none"})
    created = request_links.create_link(world.engine, down, world.keyring, company_id=world.company_id,
                                        actor=world.admin, recipient="stb@kanzlei.example")
    assert created.mailed is False
    assert use_link(world, token_of(created.url)).ok
    up = world.settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_tls": "none"})
    with unit_of_work(world.engine) as s:
        s.exec(update(AlarmSent).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    retry_due_alarms(world.engine, up)
    assert smtp.messages == []
    with unit_of_work(world.engine) as s:
        assert "nicht mehr gültig" in (s.exec(select(AlarmSent)).one().detail or "")


def test_housekeeping_expires_old_links_once(world: World) -> None:
    link_id, _token = make_link(world)
    with unit_of_work(world.engine) as s:
        s.exec(update(RequestLink).values(expires_at=utcnow() - timedelta(minutes=1)))
    assert request_links.expire_links(world.engine, utcnow()) == 1
    assert request_links.expire_links(world.engine, utcnow()) == 0
    assert actions(world).count("request_link.expired") == 1
    assert {v.id: v.state for v in request_links.list_links(world.engine)}[link_id] == "abgelaufen"


def test_only_admins_create_and_withdraw_links(world: World) -> None:
    with pytest.raises(UserFacingError):
        request_links.create_link(world.engine, world.settings, world.keyring, company_id=world.company_id,
                                  actor=world.operator)
    link_id, _token = make_link(world)
    with pytest.raises(UserFacingError):
        request_links.withdraw_link(world.engine, link_id=link_id, actor=world.operator)


def test_the_validity_is_bounded(world: World) -> None:
    with pytest.raises(ValidationFailed) as failure:
        make_link(world, valid_days=31)
    assert "1 bis 30 Tage" in failure.value.field_errors["valid_days"]


def test_the_datev_answer_counts_only_in_the_browser_that_started_the_login(world: World) -> None:
    """A callback URL that leaked (history, a screenshot) cannot be finished in another browser; the
    browser that opened the link still can, and a browser without a cookie cannot use the link up."""
    link_id, token = make_link(world)
    with pytest.raises(UserFacingError, match="Cookie"):
        request_links.start_link_login(world.engine, world.settings, world.keyring, token=token, address=ADDRESS,
                                       browser="")
    assert request_links.list_links(world.engine, company_id=world.company_id)[0].state == "offen"
    url = request_links.start_link_login(world.engine, world.settings, world.keyring, token=token, address=ADDRESS,
                                         browser=BROWSER)
    params = consent(url)
    elsewhere = request_links.finish_link_login(world.engine, world.settings, world.keyring, params=params,
                                                browser="another-browser")
    assert not elsewhere.ok and "anderen Browser" in elsewhere.message and world.stored_nothing()
    result = request_links.finish_link_login(world.engine, world.settings, world.keyring, params=params,
                                             browser=BROWSER)
    assert result.ok, result.message
    assert "request_link.succeeded" in actions(world) and link_id
