"""The process-wide settings, engine and keyring for pages, with a readable error instead of a traceback."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from core.platform.config import ConfigurationError, Settings, get_settings
from core.platform.crypto import KeyConfigurationError, Keyring
from core.platform.db import get_engine
from core.platform.secret_store import get_keyring


def services() -> tuple[Settings, Engine, Keyring]:
    try:
        settings = get_settings()
        return settings, get_engine(settings.database_url), get_keyring()
    except (ConfigurationError, KeyConfigurationError) as exc:
        st.error(f"Token Desk ist nicht richtig eingerichtet: {exc}")
        st.stop()
