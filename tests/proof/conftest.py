"""Fixtures for the proof tests: the token world of tests/token_world.py and a fleet of DATEV
companies with long-term tokens (tests/proof/fleet.py), on SQLite and PostgreSQL."""

from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.platform.crypto import Keyring
from tests.support.fleet import Fleet, make_fleet
from tests.support.world import World, make_world


@pytest.fixture
def world(engine: Engine, database_url: str, keyring: Keyring, settings_for, emulator) -> World:
    return make_world(engine, database_url, keyring, settings_for(database_url), emulator.base_url)


@pytest.fixture
def fleet(world: World, database_url: str, tmp_path: Path) -> Fleet:
    return make_fleet(world, database_url, tmp_path)
