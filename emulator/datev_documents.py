"""DATEV accounting-documents v2 (§7.3): clients, document types, duo-version, uploads."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from . import datev_stapled
from . import datev_upload_validation as validation
from .context import emulator_state
from .datev_gateway import ApiError, authenticate, client_for, dco
from .demo_data import ALLOWED_EXTENSIONS
from .request_ids import add_datev_headers
from .variants import VARIANTS

bp = Blueprint("datev_documents", __name__)
bp.after_request(add_datev_headers)
bp.register_error_handler(ApiError, lambda exc: exc.response())


def _client_json(company: dict) -> dict:
    return {k: company[k] for k in ("client_number", "consultant_number", "id", "name")}


def list_clients(variant: str):
    state = emulator_state()
    with state.lock:
        grant, person = authenticate(state, variant, state.config.scope_clients_read)
        if grant["bound_client"]:
            if state.config.bound_token_clients_list != "only_bound":
                raise ApiError(403)
            ids = [grant["bound_client"]] if grant["bound_client"] in person["rights"] else []
        else:
            ids = person["rights"]
        companies = [state.data["companies"][i] for i in ids if i in state.data["companies"]]
    if not companies:
        raise ApiError(404)
    return jsonify([_client_json(c) for c in companies])


def get_client(variant: str, client_id: str):
    state = emulator_state()
    with state.lock:
        grant, person = authenticate(state, variant, state.config.scope_clients_read)
        company = client_for(state, grant, person, client_id)
    year = state.clock.now_dt().year
    info = [{
        "fiscal_year_start": f"{y}-01-01", "fiscal_year_end": f"{y}-12-31", "account_length": 4,
        "ledgers": {"is_accounts_payable_ledger_available": True, "is_accounts_receivable_ledger_available": True,
                    "is_cash_ledger_available": True},
    } for y in (year, year - 1, year - 2)]
    return jsonify({**_client_json(company), "is_document_management_available": company["belege_online"],
                    "basic_accounting_information": info})


def document_types(variant: str, client_id: str):
    state = emulator_state()
    with state.lock:
        grant, person = authenticate(state, variant, state.config.scope_documents)
        company = client_for(state, grant, person, client_id)
        return jsonify(company["document_types"])


def duo_version(variant: str, client_id: str):
    state = emulator_state()
    with state.lock:
        grant, person = authenticate(state, variant, state.config.scope_clients_read)
        client_for(state, grant, person, client_id)
    return jsonify({"allowed_file_extensions": ALLOWED_EXTENSIONS,
                    "allowed_staple_file_extensions": ["pdf", "jpg", "jpeg", "png", "tif", "tiff"],
                    "staple_logic": "logically"})


def _upload(variant: str, client_id: str, guid: str | None):
    state = emulator_state()
    with state.lock:
        grant, person = authenticate(state, variant, state.config.scope_documents)
        company = client_for(state, grant, person, client_id)  # 1
        if not company["belege_online"]:  # 2
            raise dco("DCO01019", "NoValidBelegeBestandFault")
        accepted = validation.validate(state, company, guid)
        now = state.clock.now()
        accepted.update(
            guid=accepted["guid"] or str(uuid.uuid4()).upper(), file_id=str(uuid.uuid4()).upper(),
            client_id=client_id, variant=variant, via=request.method, received_at=state.clock.iso(now),
            person_id=person["id"], oauth_client_id=grant["client_id"],
        )
        state.data["uploads"].append(accepted)
        state.count("uploads_accepted")
        state.changed()
    body = {"id": accepted["guid"], "files": [{
        "id": accepted["file_id"], "name": accepted["filename"], "size": accepted["size"],
        "upload_date": accepted["received_at"], "media_type": accepted["media_type"],
    }]}
    for key in ("document_type", "note"):
        if accepted[key] is not None:
            body[key] = accepted[key]
    response = jsonify(body)
    response.status_code = 201
    return response


def post_document(variant: str, client_id: str):
    return _upload(variant, client_id, None)


def put_document(variant: str, client_id: str, guid: str):
    return _upload(variant, client_id, guid)


for _variant, _paths in VARIANTS.items():
    _base = _paths["platform"]
    _defaults = {"variant": _variant}
    for _rule, _name, _view, _methods in (
        ("/clients", "clients", list_clients, ["GET"]),
        ("/clients/<client_id>", "client", get_client, ["GET"]),
        ("/clients/<client_id>/document-types", "document_types", document_types, ["GET"]),
        ("/clients/<client_id>/duo-version", "duo_version", duo_version, ["GET"]),
        ("/clients/<client_id>/documents", "post_document", post_document, ["POST"]),
        ("/clients/<client_id>/documents/<guid>", "put_document", put_document, ["PUT"]),
    ):
        bp.add_url_rule(_base + _rule, f"{_name}_{_variant}", _view, defaults=_defaults, methods=_methods)

datev_stapled.register(bp)
