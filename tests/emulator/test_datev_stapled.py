"""Stapled upload: several files as one document (contract §2.4, §7.3)."""

from __future__ import annotations

import json

import pytest
import requests

from tests.support.emulator_client import api_headers, connect, minimal_pdf

SCOPE = "openid profile accounting:documents accounting:clients:read"


@pytest.fixture
def token(base: str) -> str:
    access_token: str = connect(base, scope=SCOPE)["access_token"]
    return access_token


def _staple(base: str, token: str, files: list, metadata: dict | None = None) -> requests.Response:
    parts = [("files", f) for f in files]
    if metadata is not None:
        parts.append(("metadata", (None, json.dumps(metadata), "application/json")))
    return requests.put(f"{base}/platform/v2/clients/455148-1/documents/stapled", headers=api_headers(token),
                        files=parts, timeout=10)


def test_stapled_upload_creates_one_document_with_all_files(base, token) -> None:
    files = [(f"Seite {i}.pdf", minimal_pdf(f"s{i}"), "application/pdf") for i in range(3)]
    response = _staple(base, token, files, {"document_type": "Rechnungseingang", "note": "drei Seiten"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["id"]) == 32 and [f["name"] for f in body["files"]] == ["Seite 0.pdf", "Seite 1.pdf", "Seite 2.pdf"]
    assert body["document_type"] == "Rechnungseingang" and body["note"] == "drei Seiten"
    assert response.headers["X-Global-Transaction-ID"]
    uploads = requests.get(base + "/_admin/datev/uploads", timeout=5).json()
    uploads = uploads if isinstance(uploads, list) else uploads["uploads"]
    assert [u["guid"] for u in uploads] == [body["id"]] and len(uploads[0]["stapled_files"]) == 3


@pytest.mark.parametrize(("count", "code"), [(0, "#DCO01220"), (11, "#DCO01232")])
def test_stapled_upload_needs_one_to_ten_files(base, token, count: int, code: str) -> None:
    files = [(f"S{i}.pdf", minimal_pdf(f"x{i}"), "application/pdf") for i in range(count)]
    response = _staple(base, token, files) if files else requests.put(
        f"{base}/platform/v2/clients/455148-1/documents/stapled", headers=api_headers(token),
        files={"metadata": (None, "{}", "application/json")}, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == code


def test_each_stapled_file_is_checked(base, token) -> None:
    files = [("gut.pdf", minimal_pdf("g"), "application/pdf"), ("kaputt.pdf", b"%PDF-1.4 kaputt", "application/pdf")]
    response = _staple(base, token, files)
    assert response.status_code == 400 and response.json()["error"] == "#DCO01245"
    assert requests.get(base + "/_admin/stats", timeout=5).json()["uploads_accepted"] == 0
