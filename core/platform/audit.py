"""The append-only audit trail: who, when, which action, on what, with before/after values.

`record()` adds the event to the caller's session, so it commits (or rolls back) together with the
change it describes. Values pass through `_scrub()`: keys that look like secrets never reach the table.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.platform.db import unit_of_work
from core.platform.models import AuditEvent, clip

SYSTEM_ACTOR = "system"
_SECRET_KEY_PARTS = ("token", "secret", "password", "verifier", "api_key", "apikey", "ciphertext")


def _scrub(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if any(part in key.lower() for part in _SECRET_KEY_PARTS) and "fingerprint" not in key.lower():
            clean[key] = "***"
        elif isinstance(value, datetime | date):
            clean[key] = value.isoformat()
        elif isinstance(value, Enum):
            clean[key] = value.value
        else:
            clean[key] = value
    return clean


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: object = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        before=_scrub(before),
        after=_scrub(after),
        detail=clip(AuditEvent.detail, detail) if detail else None,
    )
    session.add(event)
    return event


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose values differ, for compact before/after records."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def recent_events(
    engine: Engine, *, limit: int = 200, entity_type: str | None = None, entity_id: object = None
) -> list[AuditEvent]:
    """The newest events first, in their own short transaction (rows returned detached)."""
    query = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
    if entity_type:
        query = query.where(AuditEvent.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(AuditEvent.entity_id == str(entity_id))
    with unit_of_work(engine) as session:
        return list(session.exec(query).all())
