"""A seeded database plus the emulator, with helpers to request tokens the way a user would.

Shared by the token, refresh-race and transfer tests (the `world` fixture is in tests/core/conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import requests
from sqlalchemy import Engine, update
from sqlmodel import select

from core.demo import seed_demo
from core.documents import intake, lifecycle
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.models import AppUser, Company, Connection, ConnectionKind, StoredSecret, utcnow
from core.users import process
from testkit.datev_user import log_in_at_datev
from testkit.rows import id_of, ids_of, present
from testkit.samples import pdf


@dataclass
class World:
    engine: Engine
    settings: Settings
    keyring: Keyring
    emulator_url: str
    admin: AppUser
    operator: AppUser
    company_id: int  # Musterfirma GmbH, 455148-1

    def stats(self) -> dict:
        stats: dict = requests.get(self.emulator_url + "/_admin/stats", timeout=5).json()
        return stats

    def admin_post(self, path: str, body: dict) -> dict:
        response = requests.post(self.emulator_url + "/_admin" + path, json=body, timeout=5)
        response.raise_for_status()
        return response.json() if response.content else {}

    def connection(self, slot: str = "long_term") -> Connection:
        """The company's connection in `slot`, which the test expects to exist."""
        return present(self.find_connection(slot), f"connection in slot {slot!r}")

    def find_connection(self, slot: str = "long_term") -> Connection | None:
        with unit_of_work(self.engine) as s:
            row = s.exec(select(Connection).where(Connection.company_id == self.company_id,
                                                  Connection.slot == slot)).first()
            if row is not None:
                s.expunge(row)
            return row

    def request_token(self, user: AppUser | None = None, kind: ConnectionKind = ConnectionKind.long_term,
                      **consent_args: str):
        return log_in_at_datev(self.engine, self.settings, self.keyring, company_id=self.company_id,
                               user=user or self.admin, kind=kind, **consent_args)

    def expire_access_token(self) -> None:
        with unit_of_work(self.engine) as s:
            s.exec(update(Connection).values(access_expires_at=utcnow() - timedelta(minutes=1)))

    def expire_refresh_lease(self) -> None:
        """As if the refresh lease had run out (instead of waiting REFRESH_LEASE_SECONDS)."""
        with unit_of_work(self.engine) as s:
            s.exec(update(Connection).values(refresh_lease_until=utcnow() - timedelta(seconds=1)))

    def stored_nothing(self) -> bool:
        with unit_of_work(self.engine) as s:
            return (s.exec(select(Connection)).first() is None
                    and s.exec(select(StoredSecret).where(StoredSecret.owner_type == "connection")).first() is None)


def make_world(engine: Engine, database_url: str, keyring: Keyring, settings: Settings, emulator_url: str) -> World:
    seed_demo(engine)
    with unit_of_work(engine) as s:
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        operator = s.exec(select(AppUser).where(AppUser.email == "operator@tokendesk.demo")).one()
        company = s.exec(select(Company).where(Company.client_number == 1)).one()
        s.expunge_all()
    return World(engine, settings, keyring, emulator_url, admin, operator, id_of(company))


def add_approved(world: World, count: int, company_id: int | None = None) -> list[int]:
    report = intake.intake(world.engine, company_id=company_id or world.company_id, actor=process("operator@x.de"),
                              files=[(f"Rechnung {i}.pdf", pdf(f"doc-{i}")) for i in range(count)])
    assert not report.rejected, report.rejected
    ids = ids_of(report.accepted)
    assert lifecycle.approve(world.engine, document_ids=ids, actor=process("operator@x.de")) == count
    return ids


def uploads(world: World) -> list[dict]:
    data = requests.get(world.emulator_url + "/_admin/datev/uploads", timeout=5).json()
    return data if isinstance(data, list) else data["uploads"]
