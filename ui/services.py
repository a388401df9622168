"""The process-wide settings, engine and keyring for pages, with a readable error instead of a traceback."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from core import heartbeat
from core.platform.config import ConfigurationError, Settings, get_settings
from core.platform.crypto import KeyConfigurationError, Keyring
from core.platform.db import get_engine
from core.platform.secret_store import get_keyring


def services() -> tuple[Settings, Engine, Keyring]:
    """Also this dashboard process's heartbeat with the key set it holds (core.heartbeat.beat_dashboard)."""
    try:
        settings = get_settings()
        engine, keyring = get_engine(settings.database_url), get_keyring()
    except (ConfigurationError, KeyConfigurationError) as exc:
        st.error(f"Token Desk ist nicht richtig eingerichtet: {exc}")
        st.stop()
    heartbeat.beat_dashboard(engine, keyring.key_ids)
    return settings, engine, keyring
