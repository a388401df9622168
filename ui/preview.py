"""Preview of a document (Beleg) before approval or transfer: PDF viewer, image, or download."""

from __future__ import annotations

import base64

import streamlit as st
from sqlalchemy import Engine

from core.documents import content_of
from core.errors import UserFacingError
from core.models import Document

INLINE_PDF_LIMIT = 8 * 1024 * 1024  # a data URL beyond this size gets slow in the browser
BROWSER_IMAGES = {"image/png", "image/jpeg", "image/gif"}


def _pdf_viewer_available() -> bool:
    try:
        import streamlit_pdf  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def show_preview(engine: Engine, document: Document, key: str) -> None:
    try:
        data = content_of(engine, document.id)  # type: ignore[arg-type]
    except UserFacingError as exc:
        st.error(exc.message)
        return
    if document.media_type == "application/pdf":
        if _pdf_viewer_available():
            st.pdf(data, height=600, key=f"{key}_pdf")
        elif len(data) <= INLINE_PDF_LIMIT:
            st.iframe("data:application/pdf;base64," + base64.b64encode(data).decode("ascii"), height=600)
        else:
            st.info("Die Datei ist für die Vorschau zu groß; bitte herunterladen.")
    elif document.media_type in BROWSER_IMAGES:
        st.image(data, caption=document.file_name)
    else:
        st.info("Für dieses Format gibt es keine Vorschau im Browser; bitte herunterladen.")
    st.download_button("Beleg herunterladen", data, file_name=document.file_name, mime=document.media_type,
                       key=f"{key}_download", on_click="ignore")
