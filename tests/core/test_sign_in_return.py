"""core.sign_in_return on both databases: a deep link kept per browser across the sign-in, taken once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import select

from core import sign_in_return
from core.platform.db import unit_of_work
from core.platform.models import SignInReturn, utcnow


def test_kept_per_browser_and_taken_once(engine: Engine) -> None:
    sign_in_return.remember(engine, browser="a" * 32, target="company?company=7")
    sign_in_return.remember(engine, browser="b" * 32, target="transfer")
    assert sign_in_return.take(engine, browser="b" * 32) == "transfer"
    assert sign_in_return.take(engine, browser="a" * 32) == "company?company=7"
    assert sign_in_return.take(engine, browser="a" * 32) is None  # once
    with unit_of_work(engine) as s:
        assert s.exec(select(SignInReturn)).all() == []


def test_a_newer_target_replaces_the_older_and_old_rows_go(engine: Engine) -> None:
    now = utcnow()
    sign_in_return.remember(engine, browser="old", target="audit", now=now - timedelta(hours=1))
    sign_in_return.remember(engine, browser="a", target="tokens", now=now)
    sign_in_return.remember(engine, browser="a", target="documents", now=now)
    with unit_of_work(engine) as s:
        rows = s.exec(select(SignInReturn)).all()
    assert [r.target for r in rows] == ["documents"]  # the expired row of the other browser went too
    assert sign_in_return.take(engine, browser="a") == "documents"


def test_expired_or_without_browser_nothing(engine: Engine) -> None:
    sign_in_return.remember(engine, browser="a", target="tokens", now=utcnow() - timedelta(minutes=16))
    assert sign_in_return.take(engine, browser="a") is None
    sign_in_return.remember(engine, browser="", target="tokens")
    assert sign_in_return.take(engine, browser="") is None
    with unit_of_work(engine) as s:
        assert s.exec(select(SignInReturn)).all() == []


def test_stored_under_a_hash_never_the_browser_secret(engine: Engine) -> None:
    sign_in_return.remember(engine, browser="secret-xsrf-token", target="tokens")
    with unit_of_work(engine) as s:
        [row] = s.exec(select(SignInReturn)).all()
    assert "secret" not in row.browser_hash and len(row.browser_hash) == 64
