"""Fault injection: 503, 429, latency, drop, accept_then_drop and revoke_grants over real HTTP."""

from __future__ import annotations

import pytest
import requests

from tests.support.emulator_client import api_headers, connect, minimal_pdf, refresh, stats

LEX = {"Authorization": "Bearer demo-lexware-key"}


def _fault(base: str, **fault) -> None:
    requests.post(base + "/_admin/faults", json=fault, timeout=5).raise_for_status()


def test_maintenance_503_on_documents(base) -> None:
    token = connect(base, scope="openid accounting:documents accounting:clients:read")["access_token"]
    _fault(base, target="clients", kind="503", count=1)
    url = f"{base}/platform/v2/clients/455148-1"
    down = requests.get(url, headers=api_headers(token), timeout=5)
    assert down.status_code == 503 and down.json()["error"] == "#DCO01020" and down.json()["request_id"]
    assert requests.get(url, headers=api_headers(token), timeout=5).status_code == 200


def test_429_with_retry_after_on_token(base) -> None:
    _fault(base, target="token", kind="429", retry_after=7, count=2)
    for _ in range(2):
        limited = refresh(base, "whatever")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert refresh(base, "whatever").status_code == 400


def test_latency(base) -> None:
    _fault(base, target="any", kind="latency", latency_ms=50)
    assert requests.get(base + "/openid/.well-known/openid-configuration", timeout=5).status_code == 200
    assert requests.get(base + "/_admin/faults", timeout=5).json() == []


def test_answer_after_performs_the_request_and_answers_late(base) -> None:
    """The transfer benchmark's latency: the upload is done and the answer waits for the rest of the time
    (a read timeout shorter than the latency proves the answer was held back; no clock is read)."""
    _fault(base, target="lexware", kind="answer_after", latency_ms=2000)
    with pytest.raises(requests.ReadTimeout):
        requests.post(base + "/lexware/v1/files", headers=LEX, data={"type": "voucher"}, timeout=(5, 1.0),
                      files={"file": ("a.pdf", minimal_pdf(), "application/pdf")})
    assert len(requests.get(base + "/_admin/lexware/files", timeout=5).json()) == 1  # performed before the wait
    assert requests.get(base + "/_admin/faults", timeout=5).json() == []


def test_bad_fault_is_rejected(base) -> None:
    assert requests.post(base + "/_admin/faults", json={"kind": "boom"}, timeout=5).status_code == 400


def test_drop_before_doing_anything(base) -> None:
    body = connect(base)
    _fault(base, target="token", kind="drop")
    with pytest.raises(requests.ConnectionError):
        refresh(base, body["refresh_token"])
    assert stats(base)["refresh_requests"] == 0
    assert refresh(base, body["refresh_token"]).status_code == 200


def test_accept_then_drop_rotates_the_token(base) -> None:
    body = connect(base)
    _fault(base, target="token", kind="accept_then_drop")
    with pytest.raises(requests.ConnectionError):
        refresh(base, body["refresh_token"])
    assert stats(base)["refresh_successes"] == 1
    assert refresh(base, body["refresh_token"]).json()["error"] == "invalid_grant"


def test_accept_then_drop_stores_the_upload(base) -> None:
    _fault(base, target="lexware", kind="accept_then_drop")
    with pytest.raises(requests.ConnectionError):
        requests.post(base + "/lexware/v1/files", headers=LEX, data={"type": "voucher"}, timeout=5,
                      files={"file": ("a.pdf", minimal_pdf(), "application/pdf")})
    assert len(requests.get(base + "/_admin/lexware/files", timeout=5).json()) == 1


def test_accept_then_drop_on_datev_upload_then_409_on_retry(base) -> None:
    token = connect(base, scope="openid accounting:documents")["access_token"]
    _fault(base, target="documents", kind="accept_then_drop")
    url = f"{base}/platform/v2/clients/455148-1/documents/6F9619FF-8B86-D011-B42D-00C04FC964FF"
    files = {"file": ("a.pdf", minimal_pdf(), "application/pdf")}
    with pytest.raises(requests.ConnectionError):
        requests.put(url, headers=api_headers(token), files=files, timeout=5)
    retry = requests.put(url, headers=api_headers(token), files=files, timeout=5)
    assert retry.status_code == 409 and retry.json()["error"] == "#DCO01012"


def test_revoke_grants_lands_at_an_exact_request_in_the_sequence(base) -> None:
    body = connect(base, scope="openid accounting:documents offline_access datev:iam:client:455148-1")
    _fault(base, target="documents", kind="latency", latency_ms=1, count=1)
    _fault(base, target="documents", kind="revoke_grants", count=1)
    files = {"file": ("a.pdf", minimal_pdf("first"), "application/pdf")}
    url = f"{base}/platform/v2/clients/455148-1/documents/"
    first = requests.put(url + "6F9619FF-8B86-D011-B42D-00C04FC964F1", headers=api_headers(body["access_token"]),
                         files=files, timeout=5)
    assert first.status_code == 201
    files = {"file": ("b.pdf", minimal_pdf("second"), "application/pdf")}
    second = requests.put(url + "6F9619FF-8B86-D011-B42D-00C04FC964F2", headers=api_headers(body["access_token"]),
                          files=files, timeout=5)
    assert second.status_code == 401
    assert refresh(base, body["refresh_token"]).json()["error"] == "invalid_grant"
    assert all(g["revoked"] for g in requests.get(base + "/_admin/datev/grants", timeout=5).json())
