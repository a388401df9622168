"""Messages that survive one st.rerun() (e.g. "Gespeichert" after a form), and field errors."""

from __future__ import annotations

import streamlit as st

_FLASH_KEY = "_flash_messages"


def flash(message: str) -> None:
    st.session_state.setdefault(_FLASH_KEY, []).append(message)


def show_flashes() -> None:
    for message in st.session_state.pop(_FLASH_KEY, []):
        st.success(message)
