"""Preview of a document (Beleg) before approval or transfer: PDF viewer, image, or download.

PDFs are shown with `st.pdf` (the official streamlit-pdf component, pdf.js): it renders in any
browser, also where the browser's own PDF plug-in is missing or blocked for embedded documents.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from core.documents.queries import content_of
from core.platform.errors import UserFacingError
from core.platform.models import Document
from ui.rows import id_of
from ui.text import plain

BROWSER_IMAGES = {"image/png", "image/jpeg", "image/gif"}


def show_preview(engine: Engine, document: Document, key: str) -> None:
    try:
        data = content_of(engine, id_of(document))
    except UserFacingError as exc:
        st.error(plain(exc.message))
        return
    if document.media_type == "application/pdf":
        st.pdf(data, height=600, key=f"{key}_pdf")
    elif document.media_type in BROWSER_IMAGES:
        st.image(data, caption=document.file_name)
    else:
        st.info("Für dieses Format gibt es keine Vorschau im Browser; bitte herunterladen.")
    st.download_button("Beleg herunterladen", data, file_name=document.file_name, mime=document.media_type,
                       key=f"{key}_download", on_click="ignore")
