"""`PUT /clients/{id}/documents/stapled`: several files as one document (contract §2.4, §7.3).

Multipart part `files` repeated 1..10 times (more: #DCO01232, none: #DCO01220) with one metadata
for all. Each file passes the same checks as a single upload; the document gets one GUID (32 hex
characters without dashes, as in DATEV's example) and `files[]` lists every file.
"""

from __future__ import annotations

import uuid

from flask import jsonify, request

from . import upload_checks as checks
from .context import emulator_state
from .datev_gateway import authenticate, client_for, dco
from .datev_upload_validation import _check_lengths, _metadata
from .variants import VARIANTS

STAPLE_EXTENSIONS = ("pdf", "jpg", "jpeg", "png", "tif", "tiff")
MAX_STAPLED_FILES = 10


def _checked_file(part, config) -> dict:
    if not part.filename:
        raise dco("DCO01252", "FilenameIsRequiredFault")
    if len(part.filename) > 255:
        raise dco("DCO01222", "FileNameTooLongFault")
    ext = checks.extension(part.filename)
    if ext not in STAPLE_EXTENSIONS:
        raise dco("DCO01215", "UnsupportedFileTypeDuoNextFault")
    data = part.read()
    if not checks.content_type_matches(ext, part.mimetype) or not checks.magic_matches(ext, data):
        raise dco("DCO01219", "ContentTypeDoesNotMatchFileExtensionFault")
    if len(data) > config.max_upload_bytes:
        raise dco("DCO01216", "FileSizeDuoNextFault")
    if ext == "pdf" and not checks.pdf_parseable(data):
        raise dco("DCO01245", "PdfNotParseableFault")
    return {"id": str(uuid.uuid4()).upper(), "name": checks.sanitize_filename(part.filename), "size": len(data),
            "media_type": checks.MEDIA_TYPES[ext][0], "sha256": checks.sha256(data)}


def put_stapled(variant: str, client_id: str):
    state = emulator_state()
    with state.lock:
        grant, person = authenticate(state, variant, state.config.scope_documents)
        company = client_for(state, grant, person, client_id)
        if not company["belege_online"]:
            raise dco("DCO01019", "NoValidBelegeBestandFault")
        if request.mimetype != "multipart/form-data":
            raise dco("DCO01004", "MultipartUploadFault")
        parts = request.files.getlist("files")
        if not parts:
            raise dco("DCO01220", "FilesParameterIsMissingFault")
        if len(parts) > MAX_STAPLED_FILES:
            raise dco("DCO01232", "MultipleFilesUploadIsNotSupportedFault")
        metadata, custom = _metadata()
        _check_lengths(metadata, state.config)
        document_type = metadata.get("document_type") or None
        if document_type and document_type not in {t["name"] for t in company["document_types"]}:
            raise dco("DCO01010", "InvalidDocumentTypeFault")
        files = [_checked_file(part, state.config) for part in parts]
        now = state.clock.now()
        guid = uuid.uuid4().hex.upper()
        state.data["uploads"].append({
            "guid": guid, "filename": files[0]["name"], "original_filename": parts[0].filename,
            "sha256": files[0]["sha256"], "size": sum(f["size"] for f in files), "media_type": files[0]["media_type"],
            "document_type": document_type, "note": metadata.get("note") or None, "metadata": metadata,
            "custom_metadata": custom, "duplicate_key": None, "file_id": files[0]["id"], "client_id": client_id,
            "variant": variant, "via": "PUT stapled", "received_at": state.clock.iso(now),
            "person_id": person["id"], "oauth_client_id": grant["client_id"],
            "stapled_files": [{k: f[k] for k in ("id", "name", "size", "sha256")} for f in files],
        })
        state.count("uploads_accepted")
        state.changed()
        uploaded = state.clock.iso(now)
    body: dict = {"id": guid, "files": [{"id": f["id"], "name": f["name"], "size": f["size"], "upload_date": uploaded,
                                         "media_type": f["media_type"]} for f in files]}
    for key in ("document_type", "note"):
        if metadata.get(key):
            body[key] = metadata[key]
    response = jsonify(body)
    response.status_code = 201
    return response


def register(bp) -> None:
    for variant, paths in VARIANTS.items():
        bp.add_url_rule(paths["platform"] + "/clients/<client_id>/documents/stapled", f"stapled_{variant}",
                        put_stapled, defaults={"variant": variant}, methods=["PUT"])
