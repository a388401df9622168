"""Links between pages that carry a query parameter (the company page's `?company=ID`).

Through the router, `st.page_link` and `st.switch_page` find the page. A page file run without the router
(a deep link on a fresh server, docs/style.md §3.1 rule 1; AppTest's direct page runs) has no registered
pages: there a plain relative link does the same job instead of failing.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from ui.navigation import PAGE_TABLE

COMPANY_PAGE = "pages/company.py"
TRANSFER_LOG_PAGE = "pages/transfer_log.py"


def _url_path(page: str) -> str:
    return next(spec.url_path for spec in PAGE_TABLE if spec.file == page)


def page_link(page: str, label: str, *, icon: str | None = None, params: dict[str, str] | None = None) -> None:
    try:
        st.page_link(page, label=label, icon=icon, query_params=params)
    except StreamlitPageNotFoundError:
        query = f"?{urlencode(params)}" if params else ""
        st.markdown(f"[{label}](/{_url_path(page)}{query})")


def company_link(company_id: int, label: str, *, icon: str | None = None) -> None:
    page_link(COMPANY_PAGE, label, icon=icon, params={"company": str(company_id)})


def open_company(company_id: int) -> None:
    """Go to the company page now (a selected table row)."""
    try:
        st.switch_page(COMPANY_PAGE, query_params={"company": str(company_id)})
    except StreamlitPageNotFoundError:
        st.query_params["company"] = str(company_id)
