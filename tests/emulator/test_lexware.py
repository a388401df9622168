"""Lexware Office stand-in: keys, token bucket, file validation, 202 without idempotency."""

from __future__ import annotations

import time

import pytest
import requests

from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer
from tests.support.emulator_client import minimal_pdf, set_clock

KEY = {"Authorization": "Bearer demo-lexware-key"}
XRECHNUNG = (b'<?xml version="1.0"?><Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">'
             b"</Invoice>")


@pytest.fixture(scope="module")
def fast_lexware():
    """Own server without practical rate limit, so the functional tests never see a 429."""
    with EmulatorServer(EmulatorConfig(lexware_rate_per_second=1000, lexware_burst=1000)) as server:
        yield server


@pytest.fixture
def lx(fast_lexware: EmulatorServer) -> str:
    requests.post(fast_lexware.base_url + "/_admin/reset", timeout=5).raise_for_status()
    return fast_lexware.base_url


def _files(base: str, name: str, data: bytes, content_type: str = "application/pdf", **form) -> requests.Response:
    return requests.post(base + "/lexware/v1/files", headers=KEY, files={"file": (name, data, content_type)},
                         data=form, timeout=10)


def test_profile_and_unauthorized(lx) -> None:
    profile = requests.get(lx + "/lexware/v1/profile", headers=KEY, timeout=5).json()
    assert profile["companyName"] and profile["organizationId"]
    wrong = requests.get(lx + "/lexware/v1/profile", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json() == {"message": "Unauthorized"}


def test_key_expiry_revocation_and_24_month_cap(lx) -> None:
    too_long = requests.post(lx + "/_admin/lexware/keys", json={"expires_at": 9999999999}, timeout=5)
    assert too_long.status_code == 400
    created = requests.post(lx + "/_admin/lexware/keys", json={"expires_at": time.time() + 60}, timeout=5).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert requests.get(lx + "/lexware/v1/profile", headers=headers, timeout=5).status_code == 200
    set_clock(lx, 120)
    assert requests.get(lx + "/lexware/v1/profile", headers=headers, timeout=5).status_code == 401
    set_clock(lx, 0)
    requests.post(lx + "/_admin/lexware/keys/revoke", json={"key": "demo-lexware-key"}, timeout=5)
    assert requests.get(lx + "/lexware/v1/profile", headers=KEY, timeout=5).status_code == 401


def test_upload_is_accepted_twice_and_downloadable(lx) -> None:
    pdf = minimal_pdf()
    first = _files(lx, "beleg.pdf", pdf, type="voucher")
    second = _files(lx, "beleg.pdf", pdf, type="voucher")
    assert first.status_code == 202 and second.status_code == 202
    assert first.json()["voucherId"] != second.json()["voucherId"]
    assert len(requests.get(lx + "/_admin/lexware/files", timeout=5).json()) == 2
    download = requests.get(f"{lx}/lexware/v1/files/{first.json()['id']}", headers=KEY, timeout=5)
    assert download.content == pdf
    attach = requests.post(f"{lx}/lexware/v1/vouchers/{first.json()['voucherId']}/files", headers=KEY,
                           files={"file": ("anhang.xml", XRECHNUNG, "application/xml")}, timeout=5)
    assert attach.status_code == 202 and attach.json()["id"]
    assert requests.get(lx + "/_admin/stats", timeout=5).json()["lexware_uploads"] == 3


@pytest.mark.parametrize(("name", "data", "key"), [
    ("big.pdf", b"%PDF-1.4\n" + b"0" * (5 * 1024 * 1024), "max_file_size_exceeded"),
    ("bild.gif", b"GIF89a" + b"0" * 40, "inacceptable_file_extension"),
    ("rechnung.xml", b"<root/>", "invalid_xrechnung"),
    ("kaputt.pdf", b"%PDF-1.4 broken", "voucher_upload_toxic_pdf"),
    ("leer.png", b"\x89PNG\r\n\x1a\n", "image_conversion_error"),
])
def test_file_validation(lx, name, data, key) -> None:
    response = _files(lx, name, data, type="voucher")
    assert response.status_code == 406
    assert response.json()["IssueList"][0]["i18nKey"] == key
    assert requests.get(lx + "/_admin/lexware/files", timeout=5).json() == []


def test_upload_type_required(lx) -> None:
    for form in ({}, {"type": "receipt"}):
        response = _files(lx, "a.pdf", minimal_pdf(), **form)
        assert response.status_code == 400 and response.json() == "Invalid or missing upload type."


def test_exactly_five_mib_passes(lx) -> None:
    data = minimal_pdf()
    data += b"\n%" + b"0" * (5 * 1024 * 1024 - len(data) - 2)
    assert len(data) == 5 * 1024 * 1024
    assert _files(lx, "genau.pdf", data, type="voucher").status_code == 202


def test_token_bucket_429_has_no_side_effects(base) -> None:
    pdf = minimal_pdf()
    statuses = [_files(base, f"b{i}.pdf", pdf, type="voucher").status_code for i in range(8)]
    assert 429 in statuses and set(statuses) <= {202, 429}
    stored = requests.get(base + "/_admin/lexware/files", timeout=5).json()
    assert len(stored) == statuses.count(202)
    limited = requests.get(base + "/lexware/v1/profile", headers=KEY, timeout=5)
    if limited.status_code == 429:
        assert limited.headers["Retry-After"] == "1"
