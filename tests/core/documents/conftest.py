"""Fixtures for the document tests."""

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from core.demo import seed_demo
from core.platform.db import unit_of_work
from core.platform.models import Company


@pytest.fixture
def company_id(engine: Engine) -> int:
    """Musterfirma GmbH of the demo data (Mandanten-Nr. 1)."""
    seed_demo(engine)
    with unit_of_work(engine) as s:
        found = s.exec(select(Company.id).where(Company.client_number == 1)).one()
    assert found is not None
    return found
