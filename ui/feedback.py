"""Messages that survive one st.rerun() or st.switch_page() (e.g. "Gespeichert" after a form).

Shown as plain text (ui.text.plain): they carry company names and provider answers, never our markup."""

from __future__ import annotations

import streamlit as st

from ui.text import plain

_FLASH_KEY = "_flash_messages"


def flash(message: str) -> None:
    st.session_state.setdefault(_FLASH_KEY, []).append(("success", message))


def flash_warning(message: str) -> None:
    """Done, but something is left for a person to do (e.g. at the provider)."""
    st.session_state.setdefault(_FLASH_KEY, []).append(("warning", message))


def flash_error(message: str) -> None:
    st.session_state.setdefault(_FLASH_KEY, []).append(("error", message))


def show_flashes() -> None:
    shown = {"success": st.success, "warning": st.warning, "error": st.error}
    for kind, message in st.session_state.pop(_FLASH_KEY, []):
        shown.get(kind, st.error)(plain(message))
