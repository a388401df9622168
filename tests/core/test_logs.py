"""core.logs on both databases: audit and HTTP log filters."""

from __future__ import annotations

from datetime import timedelta

from core.logs import AuditFilter, HttpFilter, audit_events, http_entries
from core.platform.models import utcnow
from tests.support.world import World


def test_audit_filters(world: World) -> None:
    world.request_token()
    everything = audit_events(world.engine, AuditFilter())
    assert {"company.created", "token.requested"} <= {e.action for e in everything}
    company = audit_events(world.engine, AuditFilter(company_id=world.company_id))
    assert {(e.entity_type, e.action) for e in company} >= {("company", "company.created"),
                                                            ("connection", "token.requested")}
    assert len(company) < len(everything)
    assert [e.action for e in audit_events(world.engine, AuditFilter(actor="ADMIN@tokendesk",
                                                                     actions=("token.requested",)))] \
        == ["token.requested"]
    assert audit_events(world.engine, AuditFilter(since=utcnow() + timedelta(minutes=1))) == []


def test_http_filters(world: World) -> None:
    world.request_token()
    assert {e.purpose for e in http_entries(world.engine, HttpFilter(result="ok"))} >= {"code_exchange",
                                                                                        "connection_test"}
    assert http_entries(world.engine, HttpFilter(result="error")) == []
    tests = http_entries(world.engine, HttpFilter(purposes=("connection_test",), company_id=world.company_id))
    assert [e.status for e in tests] == [200]
    assert http_entries(world.engine, HttpFilter(provider="lexware")) == []
