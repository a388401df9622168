"""Fixtures for core tests that need users, companies and the emulator."""

import pytest
from sqlalchemy import Engine

from core.platform.crypto import Keyring
from tests.support.world import World, make_world


@pytest.fixture
def world(engine: Engine, database_url: str, keyring: Keyring, settings_for, emulator) -> World:
    return make_world(engine, database_url, keyring, settings_for(database_url), emulator.base_url)
