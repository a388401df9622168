"""DATEV API gateway rules and accounting-documents uploads, one test per DCO code, in §7.3 order."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer
from tests.support.emulator_client import DATEV_ID, api_headers, connect, minimal_pdf

SCOPE = "openid profile accounting:documents accounting:clients:read"
API = "/platform/v2"


@pytest.fixture
def token(base: str) -> str:
    access_token: str = connect(base, scope=SCOPE)["access_token"]
    return access_token


def _upload(base, token, client="455148-1", guid=None, files=None, data=None, **kwargs) -> requests.Response:
    url = f"{base}{API}/clients/{client}/documents" + (f"/{guid}" if guid else "")
    method = requests.put if guid else requests.post
    if files is None:
        files = {"file": ("Rechnung 1.pdf", minimal_pdf(), "application/pdf")}
    return method(url, headers=api_headers(token), files=files, data=data, timeout=10, **kwargs)


def _meta(**fields) -> tuple:
    return (None, json.dumps(fields), "application/json")


def _error(response: requests.Response) -> str:
    body = response.json()
    assert body["request_id"] and body["error_uri"].endswith(body["error"].lstrip("#"))
    error: str = body["error"]
    return error


def test_gateway_token_header_scope_rules(base, token) -> None:
    url = f"{base}{API}/clients/455148-1"
    no_token = requests.get(url, headers={"X-DATEV-Client-Id": DATEV_ID}, timeout=5)
    assert no_token.status_code == 401 and no_token.json()["error"] == "invalid_token"
    assert no_token.headers["X-Global-Transaction-ID"] and no_token.headers["V-Cap-Request-ID"]
    missing_header = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert missing_header.status_code == 400 and _error(missing_header) == "#DCO01018"
    other = requests.get(url, headers={**api_headers(token), "X-DATEV-Client-Id": "other-app"}, timeout=5)
    assert other.status_code == 401
    limited = connect(base, scope="openid accounting:clients:read")["access_token"]
    scope_fault = requests.get(url + "/document-types", headers=api_headers(limited), timeout=5)
    assert scope_fault.status_code == 403 and _error(scope_fault) == "#DCO01005"
    sandbox = requests.get(f"{base}/platform-sandbox/v2/clients", headers=api_headers(token), timeout=5)
    assert sandbox.status_code == 401


def test_clients_and_client_details(base, token) -> None:
    clients = requests.get(f"{base}{API}/clients", headers=api_headers(token), timeout=5).json()
    assert {c["id"] for c in clients} >= {"455148-1", "455148-2", "455148-3"}
    assert clients[0] == {"client_number": 1, "consultant_number": 455148, "id": "455148-1",
                          "name": "Musterfirma GmbH"}
    details = requests.get(f"{base}{API}/clients/455148-3", headers=api_headers(token), timeout=5).json()
    assert details["is_document_management_available"] is False
    assert len(details["basic_accounting_information"]) == 3
    missing = requests.get(f"{base}{API}/clients/999999-9", headers=api_headers(token), timeout=5)
    assert missing.status_code == 404 and set(missing.json()) == {"request_id"}
    types = requests.get(f"{base}{API}/clients/455148-1/document-types", headers=api_headers(token), timeout=5)
    assert types.json()[0] == {"name": "Rechnungseingang", "category": "invoices_received",
                               "debit_credit_identifier": "debit"}
    duo = requests.get(f"{base}{API}/clients/455148-1/duo-version", headers=api_headers(token), timeout=5).json()
    assert "pdf" in duo["allowed_file_extensions"] and duo["staple_logic"] == "logically"


def test_rights_are_per_person_and_can_be_removed(base) -> None:
    erika = connect(base, person="erika", scope=SCOPE)["access_token"]
    assert len(requests.get(f"{base}{API}/clients", headers=api_headers(erika), timeout=5).json()) == 1
    forbidden = requests.get(f"{base}{API}/clients/455148-2", headers=api_headers(erika), timeout=5)
    assert forbidden.status_code == 403 and set(forbidden.json()) == {"request_id"}
    requests.post(base + "/_admin/datev/rights/remove", json={"person": "erika", "client_id": "455148-1"}, timeout=5)
    assert requests.get(f"{base}{API}/clients/455148-1", headers=api_headers(erika), timeout=5).status_code == 403


def test_bound_offline_token(base) -> None:
    bound = connect(base)["access_token"]
    assert requests.get(f"{base}{API}/clients/455148-1", headers=api_headers(bound), timeout=5).status_code == 200
    other = requests.get(f"{base}{API}/clients/455148-2", headers=api_headers(bound), timeout=5)
    assert other.status_code == 403 and set(other.json()) == {"request_id"}
    assert requests.get(f"{base}{API}/clients", headers=api_headers(bound), timeout=5).status_code == 403
    with EmulatorServer(EmulatorConfig(bound_token_clients_list="only_bound")) as emu:
        bound2 = connect(emu.base_url)["access_token"]
        listed = requests.get(f"{emu.base_url}{API}/clients", headers=api_headers(bound2), timeout=5).json()
        assert [c["id"] for c in listed] == ["455148-1"]


def test_successful_post_and_put(base, token) -> None:
    meta = _meta(document_type="Rechnungseingang", note="Fibu-Notiz")
    created = _upload(base, token, files={"file": ("Rechnung ü/1.pdf", minimal_pdf(), "application/pdf"),
                                          "metadata": meta})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == body["id"].upper() and body["document_type"] == "Rechnungseingang"
    assert body["note"] == "Fibu-Notiz" and body["files"][0]["name"] == "Rechnung ü_1.pdf"
    assert body["files"][0]["media_type"] == "application/pdf" and body["files"][0]["size"] > 0
    guid = str(uuid.uuid4())
    put = _upload(base, token, guid=guid)
    assert put.status_code == 201 and put.json()["id"] == guid.upper() and "document_type" not in put.json()
    uploads = requests.get(base + "/_admin/datev/uploads", timeout=5).json()
    assert [u["via"] for u in uploads] == ["POST", "PUT"] and uploads[1]["guid"] == guid.upper()
    assert requests.get(f"{base}{API}/clients/455148-1/documents/{guid}", headers=api_headers(token),
                        timeout=5).status_code == 405


def test_put_with_reused_guid_conflicts_in_any_case(base, token) -> None:
    guid = str(uuid.uuid4())
    assert _upload(base, token, guid=guid.upper()).status_code == 201
    again = _upload(base, token, guid=guid.lower(), files={"file": ("andere.pdf", minimal_pdf(), "application/pdf")})
    assert again.status_code == 409 and _error(again) == "#DCO01012"


def test_duplicate_file_detection(base, token) -> None:
    pdf = minimal_pdf("same")
    assert _upload(base, token, files={"file": ("a.pdf", pdf, "application/pdf")}).status_code == 201
    duplicate = _upload(base, token, files={"file": ("a.pdf", pdf, "application/pdf")})
    assert duplicate.status_code == 400 and _error(duplicate) == "#DCO01253"
    assert _upload(base, token, files={"file": ("b.pdf", pdf, "application/pdf")}).status_code == 201
    typed = {"file": ("a.pdf", pdf, "application/pdf"), "metadata": _meta(document_type="Kasse")}
    assert _upload(base, token, files=typed).status_code == 201


PDF = minimal_pdf("order")
CASES = [
    ("no_belege_online", {"client": "455148-3"}, "#DCO01019"),
    ("not_multipart", {"files": {}, "data": "x", "headers_json": True}, "#DCO01004"),
    ("no_file", {"files": {"metadata": _meta(note="x")}}, "#DCO01220"),
    ("no_filename", {"files": {"file": (None, PDF)}}, "#DCO01252"),
    ("name_too_long", {"files": {"file": ("a" * 252 + ".pdf", PDF, "application/pdf")}}, "#DCO01222"),
    ("bad_metadata", {"files": {"file": ("a.pdf", PDF, "application/pdf"), "metadata": (None, "{no")}}, "#DCO01217"),
    ("note_too_long", {"files": {"file": ("a.pdf", PDF), "metadata": _meta(note="n" * 256)}}, "#DCO01223"),
    ("type_too_long", {"files": {"file": ("a.pdf", PDF), "metadata": _meta(document_type="t" * 31)}}, "#DCO01227"),
    ("category_too_long", {"files": {"file": ("a.pdf", PDF), "metadata": _meta(category="c" * 31)}}, "#DCO01224"),
    ("folder_too_long", {"files": {"file": ("a.pdf", PDF), "metadata": _meta(folder="f" * 31)}}, "#DCO01225"),
    ("register_too_long", {"files": {"file": ("a.pdf", PDF), "metadata": _meta(register="r" * 31)}}, "#DCO01226"),
    ("levels_incomplete", {"files": {"file": ("a.pdf", PDF), "metadata": _meta(category="c")}}, "#DCO01217"),
    ("unknown_type", {"files": {"file": ("a.pdf", PDF), "metadata": _meta(document_type="Fantasie")}}, "#DCO01010"),
    ("zip_file", {"files": {"file": ("a.zip", b"PK\x03\x04", "application/zip")}}, "#DCO01215"),
    ("wrong_content_type", {"files": {"file": ("a.pdf", PDF, "image/png")}}, "#DCO01219"),
    ("wrong_magic", {"files": {"file": ("a.png", PDF, "image/png")}}, "#DCO01219"),
    ("too_large", {"files": {"file": ("a.pdf", b"%PDF-1.4\n" + b"0" * (20 * 1024 * 1024), "application/pdf")}},
     "#DCO01216"),
    ("broken_pdf", {"files": {"file": ("a.pdf", b"%PDF-1.4 broken", "application/pdf")}}, "#DCO01245"),
    ("bad_guid", {"guid": "not-a-guid"}, "#DCO01234"),
]


@pytest.mark.parametrize(("name", "case", "code"), CASES, ids=[c[0] for c in CASES])
def test_upload_validation(base, token, name, case, code) -> None:
    case = dict(case)
    if case.pop("headers_json", False):
        url = f"{base}{API}/clients/455148-1/documents"
        response = requests.post(url, headers={**api_headers(token), "Content-Type": "application/json"},
                                 data="{}", timeout=5)
    else:
        response = _upload(base, token, **case)
    assert response.status_code == 400, response.text
    assert _error(response) == code
    assert requests.get(base + "/_admin/datev/uploads", timeout=5).json() == []


def test_validation_order_first_failure_wins(base, token) -> None:
    files = {"file": ("a.zip", b"x", "application/zip"), "metadata": _meta(note="n" * 256)}
    assert _error(_upload(base, token, files=files)) == "#DCO01223"
    files = {"file": ("a.pdf", b"%PDF-1.4 broken", "application/pdf")}
    assert _error(_upload(base, token, files=files, guid="bad")) == "#DCO01245"
