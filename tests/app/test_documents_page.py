"""The Belege screen (AppTest): viewers read; operators upload (AppTest drives st.file_uploader),
approve singly and in bulk, delete before approval, refresh DATEV document types; filters, paging,
preview and the waiting reason of a paused company."""

from __future__ import annotations

from datetime import UTC, date, datetime

from core.platform.db import unit_of_work
from core.platform.models import Document
from testkit.rows import present
from testkit.samples import pdf
from tests.support.desk import Desk, run_page, table
from tests.support.rendered import labels, texts

PAGE = "pages/documents.py"


def test_viewer_reads_the_list_but_cannot_change_anything(app, desk: Desk) -> None:
    desk.intake("Rechnung 1.pdf", "Rechnung 2.pdf")
    at = run_page(app, "viewer", PAGE)
    assert [t.value for t in at.title] == ["Belege"]
    rows = table(at, "Datei")
    assert [r["Datei"] for r in rows] == ["Rechnung 2.pdf", "Rechnung 1.pdf"]
    assert {r["Status"] for r in rows} == {"neu"} and {r["Unternehmen"] for r in rows} == {"Musterfirma GmbH"}
    assert len(at.file_uploader) == 0 and len(at.multiselect(key="documents_filter_status").options) == 6
    assert "Freigeben" not in labels(at) and "Löschen" not in labels(at) and "Hochladen" not in labels(at)
    assert "Nur Bearbeiter und Administratoren können Belege hochladen, freigeben und löschen." in texts(at)


def test_operator_uploads_and_gets_a_german_line_per_file(app, desk: Desk) -> None:
    at = run_page(app, "operator", PAGE)
    at.selectbox(key="documents_upload_company").set_value(desk.companies["Musterfirma GmbH"]).run()
    assert "Erlaubt: PDF, JPG, JPEG, PNG, GIF, TIF, TIFF, XML bis 20 MB je Datei (DATEV)." in texts(at)
    at.file_uploader[0].set_value([("Rechnung März.pdf", pdf("ok"), "application/pdf"),
                                   ("leer.pdf", b"", "application/pdf"),
                                   ("kaputt.pdf", b"%PDF-1.4 nonsense", "application/pdf"),
                                   ("notiz.txt", b"Einkauf", "text/plain"),  # review: was dropped without a word
                                   (".pdf", pdf("ohne Namen"), "application/pdf")])
    at.button(key=f"documents_upload_submit_{desk.companies['Musterfirma GmbH']}").click().run()
    assert not at.exception, at.exception
    [stored] = desk.documents()
    assert [s.value for s in at.success] == [f"„Rechnung März.pdf“ angenommen (Beleg Nr. {stored.id}, "
                                             f"{stored.size} Byte)."]
    assert [e.value for e in at.error] == ["Die Datei „leer.pdf“ ist leer (0 Byte).",
                                           "Die PDF-Datei „kaputt.pdf“ ist beschädigt oder nicht lesbar.",
                                           "Die Datei „notiz.txt“ hat das Format .txt, das DATEV nicht annimmt. "
                                           "Erlaubt: PDF, JPG, JPEG, PNG, GIF, TIF, TIFF, XML.",
                                           "Die Datei „.pdf“ hat keinen Namen vor der Endung (z. B. Rechnung.pdf)."]
    assert stored.file_name == "Rechnung März.pdf" and stored.uploaded_by == "operator@tokendesk.demo"
    assert stored.document_type == "Rechnungseingang"  # the company's default type
    assert [r["Datei"] for r in table(at, "Datei")] == ["Rechnung März.pdf"]


def test_operator_approves_in_bulk_and_deletes_before_approval(app, desk: Desk) -> None:
    first, second, third = desk.intake("a.pdf", "b.pdf", "c.pdf")
    at = run_page(app, "operator", PAGE)
    assert at.multiselect(key="documents_chosen").options == ["Nr. 3 · c.pdf (Musterfirma GmbH)",
                                                              "Nr. 2 · b.pdf (Musterfirma GmbH)",
                                                              "Nr. 1 · a.pdf (Musterfirma GmbH)"]
    at.multiselect(key="documents_chosen").set_value([first, second]).run()
    at.button(key="documents_approve").click().run()
    assert not at.exception, at.exception
    assert "2 Belege freigegeben." in [s.value for s in at.success]
    assert [desk.document(i).status for i in (first, second, third)] == ["approved", "approved", "new"]
    assert desk.document(first).approved_by == "operator@tokendesk.demo"
    # approved documents can no longer be chosen for deletion
    assert at.multiselect(key="documents_chosen").options == ["Nr. 3 · c.pdf (Musterfirma GmbH)"]
    at.multiselect(key="documents_chosen").set_value([third]).run()
    assert [p.proto.popover.label for p in at.get("popover")] == ["Löschen"]  # a confirmation first
    assert at.button(key="documents_delete").label == "Ja, endgültig löschen"
    at.button(key="documents_delete").click().run()
    assert not at.exception, at.exception
    assert "1 Beleg gelöscht." in [s.value for s in at.success]
    assert desk.find_document(third) is None
    assert ("document.deleted", "operator@tokendesk.demo") in desk.audit_actions()
    assert [a for a, _ in desk.audit_actions()].count("document.approved") == 2


def test_select_all_new_of_the_page(app, desk: Desk) -> None:
    ids = desk.intake("a.pdf", "b.pdf")
    at = run_page(app, "operator", PAGE)
    at.button(key="documents_choose_all").click().run()
    assert sorted(at.multiselect(key="documents_chosen").value) == sorted(ids)
    at.button(key="documents_approve").click().run()
    assert {desk.document(i).status for i in ids} == {"approved"}


def test_approved_documents_of_a_company_without_token_show_why_they_wait(app, desk: Desk) -> None:
    desk.intake("wartet.pdf", approve=True)
    desk.intake("lex.pdf", company="Lexware Demo GmbH", approve=True)
    at = run_page(app, "viewer", PAGE)
    hints = {r["Datei"]: r["Hinweis"] for r in table(at, "Datei")}
    assert hints == {"wartet.pdf": "wartet: Token fehlt", "lex.pdf": "wartet: API-Schlüssel fehlt"}
    desk.request_token()
    at = run_page(app, "viewer", PAGE)
    hints = {r["Datei"]: r["Hinweis"] for r in table(at, "Datei")}
    assert hints == {"wartet.pdf": "wird bei der nächsten Übertragung gesendet", "lex.pdf": "wartet: API-Schlüssel fehlt"}
    assert list(table(at, "Datei")[0])[:3] == ["Datei", "Status", "Hinweis"]  # the reason right after the name


def test_filters_and_paging(app, desk: Desk) -> None:
    desk.intake(*[f"Beleg {i:02}.pdf" for i in range(52)])
    desk.intake("lex.pdf", company="Lexware Demo GmbH", approve=True)
    at = run_page(app, "viewer", PAGE)
    assert "Seite 1 von 2 · 53 Belege" in texts(at) and len(table(at, "Datei")) == 50
    at.number_input(key="documents_page").set_value(2).run()
    assert [r["Datei"] for r in table(at, "Datei")] == ["Beleg 02.pdf", "Beleg 01.pdf", "Beleg 00.pdf"]
    at.multiselect(key="documents_filter_status").set_value(["approved"]).run()
    assert not at.exception
    assert [r["Datei"] for r in table(at, "Datei")] == ["lex.pdf"]  # the page number fell back to 1
    at.multiselect(key="documents_filter_status").set_value([]).run()
    at.selectbox(key="documents_filter_company").set_value(desk.companies["Lexware Demo GmbH"]).run()
    assert [r["Datei"] for r in table(at, "Datei")] == ["lex.pdf"]
    at.selectbox(key="documents_filter_company").set_value(None).run()
    at.text_input(key="documents_filter_type").set_value("Rechnungseingang").run()
    assert "Seite 1 von 2 · 52 Belege" in texts(at)


def test_period_filter_takes_whole_days_of_the_display_zone(app, desk: Desk) -> None:
    # Berlin switches to summer time on 29.03.2026: that day runs from 28.03. 23:00 to 29.03. 22:00 UTC.
    uploaded = {"a.pdf": datetime(2026, 3, 28, 22, 59, tzinfo=UTC), "b.pdf": datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
                "c.pdf": datetime(2026, 3, 29, 21, 59, tzinfo=UTC), "d.pdf": datetime(2026, 3, 29, 22, 0, tzinfo=UTC)}
    ids = dict(zip(uploaded, desk.intake(*uploaded), strict=True))
    with unit_of_work(desk.engine) as s:
        for name, moment in uploaded.items():
            present(s.get(Document, ids[name])).uploaded_at = moment
    at = run_page(app, "viewer", PAGE)
    at.date_input(key="documents_filter_period").set_value((date(2026, 3, 29),)).run()
    assert not at.exception, at.exception
    assert {r["Datei"]: r["Hochgeladen"] for r in table(at, "Datei")} == {"c.pdf": "29.03.2026 23:59",
                                                                        "b.pdf": "29.03.2026 00:00"}
    at.date_input(key="documents_filter_period").set_value((date(2026, 3, 28), date(2026, 3, 29))).run()
    assert [r["Datei"] for r in table(at, "Datei")] == ["c.pdf", "b.pdf", "a.pdf"]


def test_preview_of_an_image_and_a_pdf(app, desk: Desk) -> None:
    pdf_id, png_id = desk.intake("scan.pdf", "foto.png")
    at = run_page(app, "viewer", PAGE)
    at.selectbox(key="documents_preview").set_value(png_id).run()
    assert not at.exception
    assert len(at.get("image")) == 1
    assert [d.label for d in at.download_button] == ["Beleg herunterladen"]
    at.selectbox(key="documents_preview").set_value(pdf_id).run()
    assert not at.exception
    assert len(at.get("image")) == 0
    (viewer,) = at.get("bidi_component")  # st.pdf (streamlit-pdf); a real browser renders it in tests/e2e
    assert "pdf_viewer" in str(viewer.proto)


def test_refresh_document_types_from_datev(app, desk: Desk) -> None:
    company = desk.companies["Musterfirma GmbH"]
    at = run_page(app, "operator", PAGE)
    at.selectbox(key="documents_upload_company").set_value(company).run()
    at.button(key="documents_refresh_types").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Musterfirma GmbH: Kein Langzeittoken hinterlegt – Belegtypen können "
                                           "nicht geladen werden."]
    desk.request_token()
    at.button(key="documents_refresh_types").click().run()
    assert not at.exception
    [message] = [s.value for s in at.success]
    assert message.startswith("Musterfirma GmbH: ") and message.endswith(" Belegtypen von DATEV geladen.")
    options = at.selectbox(key=f"documents_type_{company}").options
    assert options[0] == "Standard des Unternehmens (Rechnungseingang)" and "Rechnungseingang" in options[1:]
