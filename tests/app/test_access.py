"""Each role against each page (through the router and as a direct page run, i.e. a deep link)."""

import pytest
from sqlmodel import select

from core.platform.db import get_engine, unit_of_work
from core.platform.models import AppUser, AuditEvent
from tests.support.rendered import shown
from ui.navigation import PAGE_TABLE


def texts(at) -> str:
    return " ".join(shown(str(e.value)) for e in [*at.title, *at.markdown, *at.info, *at.error, *at.caption])


def test_signed_out_visitor_sees_only_the_sign_in(app) -> None:
    at = app("signed_out").run()
    assert not at.exception
    assert "Bitte melden Sie sich an." in texts(at)
    assert len(at.dataframe) == 0
    assert [b.label for b in at.button] == ["Anmelden"]


def test_user_without_role_sees_no_access_page(app) -> None:
    at = app("nobody").run()
    assert not at.exception
    assert "Kein Zugriff" in texts(at)
    assert "nobody@tokendesk.demo" in texts(at)
    assert len(at.dataframe) == 0


def test_first_sign_in_binds_the_subject_once(app, app_db) -> None:
    engine = get_engine(app_db)
    with unit_of_work(engine) as s:
        assert s.exec(select(AppUser).where(AppUser.email == "viewer@tokendesk.demo")).one().sub is None

    for _ in range(2):  # two sign-ins (two browser sessions), each run looks the user up twice
        at = app("viewer").run()
        assert not at.exception
        assert "Angemeldet als" in [c.value for c in at.sidebar.caption]

    with unit_of_work(engine) as s:
        viewer = s.exec(select(AppUser).where(AppUser.email == "viewer@tokendesk.demo")).one()
        first_sign_ins = s.exec(select(AuditEvent).where(AuditEvent.action == "user.first_sign_in")).all()
    assert viewer.sub == "demo-viewer"
    assert [(e.actor, e.entity_id) for e in first_sign_ins] == [("viewer@tokendesk.demo", str(viewer.id))]


@pytest.mark.parametrize("spec", PAGE_TABLE, ids=lambda s: s.url_path)
@pytest.mark.parametrize("who", ["signed_out", "nobody"])
def test_direct_page_run_without_access_renders_nothing_protected(app, spec, who) -> None:
    at = app(who, spec.file).run()
    assert not at.exception
    assert len(at.dataframe) == 0 and len(at.text_input) == 0
    assert spec.title not in [t.value for t in at.title]


ALLOWED = {
    "viewer": {"overview", "company", "tokens", "companies", "documents", "transfer_log", "alarms", "datev_callback"},
    "operator": {"overview", "company", "tokens", "companies", "documents", "transfer", "transfer_log", "alarms", "datev_callback"},
    "admin": {"overview", "company", "tokens", "companies", "users", "http_log", "audit", "documents", "transfer", "transfer_log",
              "alarms", "datev_callback"},
}


@pytest.mark.parametrize("who", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("spec", PAGE_TABLE, ids=lambda s: s.url_path)
def test_role_against_page(app, who, spec) -> None:
    # Direct run of the page file (what a deep link into pages/ does on a fresh server).
    at = app(who, spec.file).run()
    assert not at.exception
    titles = [t.value for t in at.title]
    if spec.url_path in ALLOWED[who]:
        assert spec.title in titles
        assert "fehlt Ihnen die Berechtigung" not in texts(at)
    else:
        assert spec.title not in titles
        assert "fehlt Ihnen die Berechtigung" in texts(at)
        assert len(at.dataframe) == 0

    # Through the router: the page is registered only for roles that may open it.
    router = app(who).run()
    assert not router.exception
    if spec.url_path in ALLOWED[who]:
        router.switch_page(spec.file).run()
        assert spec.title in [t.value for t in router.title]
    else:
        with pytest.raises(ValueError):
            router.switch_page(spec.file)


@pytest.mark.parametrize("spec", PAGE_TABLE, ids=lambda s: s.url_path)
def test_no_select_box_shows_streamlits_english_placeholder(app, spec) -> None:
    """A select box whose value is None shows its placeholder; without ours, the browser would show
    Streamlit's "Choose an option". Every one says what None means here ("Alle", "Alle Unternehmen", …)."""
    at = app("admin", spec.file).run()
    assert not at.exception
    for box in at.selectbox:
        if box.value is None:
            assert box.proto.placeholder.strip(), f"{spec.url_path}: {box.label!r} has no placeholder"


@pytest.mark.parametrize("spec", PAGE_TABLE, ids=lambda s: s.url_path)
def test_no_table_shows_streamlits_none(app, spec) -> None:
    """A table cell without a value shows the table's placeholder; without one, the browser shows "None"
    (review finding: the Lexware company's Berater-Nr. on Unternehmen, "DATEV-Hilfe" on Übertragen)."""
    at = app("admin", spec.file).run()
    assert not at.exception
    for table in at.dataframe:
        if table.value.isna().to_numpy().any():
            assert table.proto.placeholder.strip(), f"{spec.url_path}: a table with empty cells has no placeholder"
