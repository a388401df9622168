"""The page table: one place that says which role may open which page.

`streamlit_app.py` builds `st.navigation` from it for the signed-in user's role, and every page's
guard (`ui.guard.require_page`) looks its own file up here, so a deep link cannot skip the check.
A page file missing from this table is closed to everyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.platform.models import Role

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"


@dataclass(frozen=True)
class PageSpec:
    file: str  # relative to the project root
    title: str
    icon: str
    url_path: str
    min_role: Role
    section: str = ""
    hidden: bool = False  # reachable by URL (e.g. DATEV's redirect back), not listed in the menu


PAGE_TABLE: tuple[PageSpec, ...] = (
    # The first page is the default page (`/`) of every role.
    PageSpec("pages/overview.py", "Übersicht", ":material/dashboard:", "overview", Role.viewer),
    PageSpec("pages/tokens.py", "Langzeittoken", ":material/key:", "tokens", Role.viewer),
    PageSpec("pages/companies.py", "Unternehmen", ":material/apartment:", "companies", Role.viewer),
    PageSpec("pages/documents.py", "Belege", ":material/description:", "documents", Role.viewer),
    PageSpec("pages/transfer.py", "Übertragen", ":material/upload:", "transfer", Role.operator),
    PageSpec("pages/transfer_log.py", "Übertragungsprotokoll", ":material/receipt_long:", "transfer_log", Role.viewer),
    PageSpec("pages/alarms.py", "Alarme", ":material/notifications:", "alarms", Role.viewer),
    PageSpec("pages/users.py", "Benutzer", ":material/group:", "users", Role.admin, "Verwaltung"),
    PageSpec("pages/http_log.py", "HTTP-Protokoll", ":material/lan:", "http_log", Role.admin, "Verwaltung"),
    PageSpec("pages/audit_log.py", "Audit-Protokoll", ":material/history:", "audit", Role.admin, "Verwaltung"),
    PageSpec("pages/datev_callback.py", "DATEV-Anmeldung", ":material/login:", "datev_callback", Role.viewer,
             hidden=True),
    PageSpec("pages/company.py", "Unternehmensdetails", ":material/domain:", "company", Role.viewer, hidden=True),
)


def spec_for_file(path: str) -> PageSpec | None:
    name = Path(path).resolve()
    for spec in PAGE_TABLE:
        if (PAGES_DIR.parent / spec.file).resolve() == name:
            return spec
    return None
