"""The page a signed-out browser asked for, kept across the sign-in (issue #10: a deep link survives
sign-in). Streamlit's sign-in always ends on `/`, in a new session, so the target is stored server-side
under a hash of the browser (its Streamlit XSRF secret, the same identity the Anforderungslink uses),
for a few minutes, and taken once after sign-in. One row per browser; expired rows go on every write.

The target is only ever a page's url_path with a query string; the router checks it against the page
table and the user's role before it switches, so a stored value can never lead anywhere else.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete
from sqlmodel import col

from core.platform.db import unit_of_work
from core.platform.models import SignInReturn, clip, utcnow

KEEP_FOR = timedelta(minutes=15)


def _key(browser: str) -> str:
    return hashlib.sha256(f"sign-in-return|{browser}".encode()).hexdigest()


def remember(engine: Engine, *, browser: str, target: str, now: datetime | None = None) -> None:
    """Keep `target` for this browser (replacing an earlier one). No browser identity: nothing kept."""
    if not browser or not target:
        return
    now = now or utcnow()
    key = _key(browser)
    with unit_of_work(engine) as session:
        session.exec(delete(SignInReturn).where(
            (col(SignInReturn.browser_hash) == key) | (col(SignInReturn.expires_at) <= now)))
        session.add(SignInReturn(browser_hash=key, target=clip(SignInReturn.target, target),
                                 expires_at=now + KEEP_FOR))


def take(engine: Engine, *, browser: str, now: datetime | None = None) -> str | None:
    """The browser's kept target, once (deleted as it is read); None when there is none or it expired."""
    if not browser:
        return None
    now = now or utcnow()
    key = _key(browser)
    with unit_of_work(engine) as session:
        row = session.get(SignInReturn, key)
        if row is None:
            return None
        target, expires_at = row.target, row.expires_at
        deleted = session.exec(delete(SignInReturn).where(
            col(SignInReturn.browser_hash) == key)).rowcount
    return target if deleted == 1 and expires_at > now else None
