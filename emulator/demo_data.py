"""Seed data: dashboard users, DATEV persons and clients (Mandanten), Lexware organisation."""

from __future__ import annotations

DASHBOARD_USERS = {
    "admin": {"sub": "demo-admin", "email": "admin@tokendesk.demo", "name": "Anna Admin"},
    "operator": {"sub": "demo-operator", "email": "operator@tokendesk.demo", "name": "Otto Operator"},
    "viewer": {"sub": "demo-viewer", "email": "viewer@tokendesk.demo", "name": "Vera Viewer"},
    "nobody": {"sub": "demo-nobody", "email": "nobody@tokendesk.demo", "name": "Norbert Ohnerolle"},
}

DEFAULT_DOCUMENT_TYPES = [
    {"name": "Rechnungseingang", "category": "invoices_received", "debit_credit_identifier": "debit"},
    {"name": "Rechnungsausgang", "category": "outgoing_invoices", "debit_credit_identifier": "credit"},
    {"name": "Kasse", "category": "other_documents"},
    {"name": "Sonstige", "category": "other_documents"},
]

ALLOWED_EXTENSIONS = ["gif", "jpeg", "jpg", "png", "tif", "tiff", "xml", "pdf"]

LEXWARE_PROFILE = {
    "organizationId": "aa93e8a8-2aa3-470b-b914-caad8a255dd8",
    "companyName": "Lexware Demo GmbH",
    "created": {"userId": "1aea4a9e-1b36-4b5e-9f3c-6f4a1c2c1d01", "userName": "Demo Nutzer",
                "userEmail": "demo@lexware.demo", "date": "2025-01-01T00:00:00.000+01:00"},
    "connectionId": "3dea098b-b7b6-4e47-9a2e-ed9e0f1a6d3c",
    "taxType": "net",
    "smallBusiness": False,
}


def _person(pid, given, family, email, username, rights):
    return {
        "id": pid, "given_name": given, "family_name": family, "name": f"{given} {family}",
        "email": email, "account_id": f"acc-{pid}", "username": username, "rights": list(rights),
    }


def _company(consultant, number, name, belege_online=True):
    return {
        "id": f"{consultant}-{number}", "consultant_number": consultant, "client_number": number,
        "name": name, "belege_online": belege_online,
        "document_types": [dict(t) for t in DEFAULT_DOCUMENT_TYPES],
    }


def datev_persons() -> dict[str, dict]:
    people = [
        _person("max", "Max", "Mustermann", "max.mustermann@kanzlei.demo", "max",
                ["455148-1", "455148-2", "455148-3", "455148-4", "455148-5", "455148-6", "455148-7", "455148-8",
                 "455148-9"]),
        _person("erika", "Erika", "Musterfrau", "erika.musterfrau@kanzlei.demo", "erika", ["455148-1"]),
        _person("karl", "Karl", "Kanzlei", "karl.kanzlei@kanzlei.demo", "karl", ["455148-4", "455148-5"]),
    ]
    return {p["id"]: p for p in people}


def datev_companies() -> dict[str, dict]:
    companies = [
        _company(455148, 1, "Musterfirma GmbH"),
        _company(455148, 2, "Beispiel Handel KG"),
        _company(455148, 3, "Demo Bau AG", belege_online=False),
        _company(455148, 4, "Bäckerei Sonnenschein e.K."),
        _company(455148, 5, "Nordlicht Logistik GmbH & Co. KG"),
        # 6 … 9: the showcase of `make run` (testkit/showcase.py), one token state each.
        _company(455148, 6, "Rheinblick Gastronomie GmbH"),
        _company(455148, 7, "Alpenblick Hotel KG"),
        _company(455148, 8, "Hansewerft Service GmbH"),
        _company(455148, 9, "Waldmeister Gartenbau e.K."),
    ]
    return {c["id"]: c for c in companies}


DEMO_SANDBOX_PASSWORD = "demo"
