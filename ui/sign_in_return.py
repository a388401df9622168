"""Where a user continues after a round trip through a sign-in page. A deep link survives sign-in: the signed-out browser's requested page is kept (core.sign_in_return)
when "Anmelden" is clicked, and the first run after sign-in, which Streamlit always starts on `/`,
switches to it if the user's role may open it.

The same form of target is kept with a one-off DATEV login started on Übertragen (the company and the
chosen documents), so DATEV's redirect back returns there (pages/datev_callback.py). Only a page of the
page table and the query parameters in ALLOWED_PARAMS (digits only) are kept and followed, so a stored
value can never lead outside the app or past the user's role.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode

import streamlit as st

from core import sign_in_return
from core.platform.config import get_settings
from core.platform.db import get_engine
from core.platform.models import AppUser
from core.users import has_role
from ui.link_client import browser_identity
from ui.navigation import PAGE_TABLE, PageSpec

log = logging.getLogger(__name__)
# The query parameters a kept page may carry, each with the only form it may take.
ALLOWED_PARAMS = {"company": re.compile(r"\d{1,12}"), "documents": re.compile(r"\d{1,12}(,\d{1,12}){0,499}")}
CHECKED_KEY = "sign_in_return_checked"


def _params(pairs: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in pairs.items() if k in ALLOWED_PARAMS and ALLOWED_PARAMS[k].fullmatch(v)}


def requested_target(spec: PageSpec) -> str:
    """The page asked for, as "url_path?query" with the allowed parameters only."""
    return target_of(spec, {k: str(v) for k, v in st.query_params.to_dict().items()})


def remember(target: str) -> None:
    """Called as "Anmelden" is clicked on a deep link's sign-in page."""
    try:
        sign_in_return.remember(get_engine(get_settings().database_url), browser=browser_identity(), target=target)
    except Exception:  # a convenience: signing in must work without it
        log.exception("could not keep the requested page for after the sign-in")


def target_of(spec: PageSpec, params: dict[str, str]) -> str:
    """A page and parameters as a kept target ("url_path?query"), the form `resolve` reads back."""
    kept = _params(params)
    return spec.url_path + (f"?{urlencode(kept)}" if kept else "")


def resolve(target: str, user: AppUser) -> tuple[PageSpec, dict[str, str]] | None:
    """The page and parameters of a kept target, if it names a page this user may open."""
    path, _, query = target.partition("?")
    spec = next((s for s in PAGE_TABLE if s.url_path == path), None)
    if spec is None or not has_role(user, spec.min_role):
        return None
    return spec, _params(dict(parse_qsl(query)))


def continue_after_sign_in(user: AppUser, *, at_root: bool) -> None:
    """On the first run of a session, at `/` (where every sign-in ends): go to the page the browser asked
    for before signing in. Looked up once per session."""
    if st.session_state.get(CHECKED_KEY):
        return
    st.session_state[CHECKED_KEY] = True
    if not at_root:
        return
    target = sign_in_return.take(get_engine(get_settings().database_url), browser=browser_identity())
    found = resolve(target, user) if target else None
    if found is not None:
        spec, params = found
        st.switch_page(spec.file, query_params=params or None)
