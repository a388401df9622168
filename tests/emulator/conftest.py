"""Fixtures for the emulator tests: one real HTTP emulator per session, reset before every test."""

from __future__ import annotations

import pytest
import requests

from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer


@pytest.fixture(scope="session")
def emulator():
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


@pytest.fixture
def base(emulator: EmulatorServer) -> str:
    requests.post(emulator.base_url + "/_admin/reset", timeout=5).raise_for_status()
    return emulator.base_url
