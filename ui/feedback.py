"""Messages that survive one st.rerun() or st.switch_page() (e.g. "Gespeichert" after a form)."""

from __future__ import annotations

import streamlit as st

_FLASH_KEY = "_flash_messages"


def flash(message: str) -> None:
    st.session_state.setdefault(_FLASH_KEY, []).append(("success", message))


def flash_error(message: str) -> None:
    st.session_state.setdefault(_FLASH_KEY, []).append(("error", message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop(_FLASH_KEY, []):
        (st.success if kind == "success" else st.error)(message)
