"""Lexware Office stand-in (§3, §7.5) under /lexware: profile, file uploads, vouchers, downloads."""

from __future__ import annotations

import base64
import json
import uuid

from flask import Blueprint, Response, current_app, jsonify, request

from . import upload_checks as checks
from .context import emulator_state
from .demo_data import LEXWARE_PROFILE
from .lexware_limits import key_is_valid

bp = Blueprint("lexware", __name__, url_prefix="/lexware")
ALLOWED = ("pdf", "jpg", "jpeg", "png", "xml")
XRECHNUNG_ROOTS = ("Invoice", "CreditNote", "CrossIndustryInvoice")


class LexwareError(Exception):
    def __init__(self, response) -> None:
        super().__init__("lexware error")
        self.response = response


bp.register_error_handler(LexwareError, lambda exc: exc.response)


@bp.before_request
def _auth_and_rate_limit():
    state = emulator_state()
    auth = request.headers.get("Authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    now = state.clock.now()
    with state.lock:
        valid = key_is_valid(state, key, now)
    if not valid:
        return Response(state.config.lexware_unauthorized_body, status=401, mimetype="application/json")
    if not current_app.extensions["token_desk_buckets"].take(key, now):
        response = jsonify({"status": 429, "error": "Too Many Requests", "message": "Rate limit exceeded"})
        response.status_code = 429
        if state.config.lexware_retry_after:
            response.headers["Retry-After"] = str(state.config.lexware_retry_after)
        return response
    return None


def _file_error(key: str, message: str):
    config = emulator_state().config
    if config.lexware_error_shape == "details":
        body = {"status": config.lexware_file_error_status, "error": "Not Acceptable", "message": message,
                "details": [{"violation": key, "field": "file", "message": message}]}
    else:
        body = {"IssueList": [{"i18nKey": key, "source": "file", "type": "validation_failure"}]}
    response = jsonify(body)
    response.status_code = config.lexware_file_error_status
    return LexwareError(response)


def _validated_file() -> tuple[str, bytes, str]:
    part = request.files.get("file")
    if part is None or not part.filename:
        raise _file_error("missing_file", "No file part 'file' in the request.")
    data = part.read()
    if len(data) > emulator_state().config.lexware_max_file_bytes:
        raise _file_error("max_file_size_exceeded", "The file is too large.")
    ext = checks.extension(part.filename)
    if ext not in ALLOWED:
        raise _file_error("inacceptable_file_extension", "File extension not accepted.")
    if ext == "xml":
        root = checks.xml_root(data)
        if not root or root.rsplit("}", 1)[-1] not in XRECHNUNG_ROOTS:
            raise _file_error("invalid_xrechnung", "The XML file is not a valid XRechnung.")
    elif ext == "pdf":
        if not checks.magic_matches("pdf", data) or not checks.pdf_parseable(data):
            raise _file_error("voucher_upload_toxic_pdf", "The PDF cannot be processed.")
    elif len(data) < 32 or not checks.magic_matches(ext, data):
        raise _file_error("image_conversion_error", "The image cannot be converted.")
    media_type = (checks.MEDIA_TYPES.get(ext) or ("application/octet-stream",))[0]
    return part.filename, data, media_type


def _store_file(state, filename: str, data: bytes, media_type: str, voucher_id: str) -> str:
    file_id = str(uuid.uuid4())
    state.data["lexware_files"][file_id] = {
        "id": file_id, "voucher_id": voucher_id, "filename": filename, "size": len(data),
        "sha256": checks.sha256(data), "media_type": media_type, "received_at": state.clock.iso(),
        "content_b64": base64.b64encode(data).decode("ascii"),
    }
    state.data["lexware_vouchers"].setdefault(voucher_id, {"id": voucher_id, "status": "unchecked",
                                                           "files": []})["files"].append(file_id)
    state.count("lexware_uploads")
    state.changed()
    return file_id


@bp.get("/v1/profile")
def profile():
    return jsonify(LEXWARE_PROFILE)


@bp.post("/v1/files")
def upload_file():
    config = emulator_state().config
    if request.form.get("type") != "voucher":
        return Response(json.dumps("Invalid or missing upload type."), status=config.lexware_type_error_status,
                        mimetype="application/json")
    filename, data, media_type = _validated_file()
    state = emulator_state()
    with state.lock:
        voucher_id = str(uuid.uuid4())
        file_id = _store_file(state, filename, data, media_type, voucher_id)
    response = jsonify({"id": file_id, "voucherId": voucher_id})
    response.status_code = 202
    return response


@bp.post("/v1/vouchers/<voucher_id>/files")
def attach_file(voucher_id: str):
    state = emulator_state()
    with state.lock:
        if voucher_id not in state.data["lexware_vouchers"]:
            return jsonify({"message": "Voucher not found"}), 404
    filename, data, media_type = _validated_file()
    with state.lock:
        file_id = _store_file(state, filename, data, media_type, voucher_id)
    response = jsonify({"id": file_id})
    response.status_code = 202
    return response


@bp.get("/v1/files/<file_id>")
def download_file(file_id: str):
    state = emulator_state()
    with state.lock:
        record = state.data["lexware_files"].get(file_id)
    if not record:
        return jsonify({"message": "Not Found"}), 404
    return Response(base64.b64decode(record["content_b64"]), mimetype=record["media_type"])
