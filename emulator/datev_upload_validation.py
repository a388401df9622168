"""Upload validation for accounting-documents, in exactly the order of contract §7.3 steps 3-17."""

from __future__ import annotations

import json
import re

from flask import request

from . import upload_checks as checks
from .datev_gateway import dco
from .demo_data import ALLOWED_EXTENSIONS

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
LEVELS = (("category", "DCO01224", "PropertyCategoryTooLongFault"),
          ("folder", "DCO01225", "PropertyFolderTooLongFault"),
          ("register", "DCO01226", "PropertyRegisterTooLongFault"))


def _json_part(name: str):
    """A JSON part sent as file part or plain field; None if absent. Raises ValueError if invalid."""
    if name in request.files:
        raw = request.files[name].read().decode("utf-8")
    elif name in request.form:
        raw = request.form[name]
    else:
        return None
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _metadata() -> tuple[dict, dict | None]:
    try:
        metadata, custom = _json_part("metadata"), _json_part("custom_metadata")
    except (ValueError, UnicodeDecodeError):
        raise dco("DCO01217", "MetadataParsingFault") from None
    metadata = metadata or {}
    for key in ("document_type", "note", "category", "folder", "register"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            raise dco("DCO01217", "MetadataParsingFault")
    return metadata, custom


def _check_lengths(metadata: dict, config) -> None:
    if len(metadata.get("note") or "") > 255:
        raise dco("DCO01223", "PropertyNoteTooLongFault")
    if len(metadata.get("document_type") or "") > 30:
        raise dco("DCO01227", "PropertyDocumentTypeTooLongFault")
    for key, code, name in LEVELS:
        if len(metadata.get(key) or "") > 30:
            raise dco(code, name)
    present = [bool(metadata.get(key)) for key, _, _ in LEVELS]
    if config.require_all_repository_levels and any(present) and not all(present):
        raise dco("DCO01217", "MetadataParsingFault")


def duplicate_key(config, digest: str, name: str, document_type: str | None) -> str | None:
    mode = config.duplicate_key
    if mode == "off":
        return None
    parts = [digest]
    if "name" in mode:
        parts.append(name)
    if "type" in mode:
        parts.append(document_type or "")
    return "|".join(parts)


def validate(state, company: dict, guid: str | None) -> dict:
    """Return the accepted upload's data or raise ApiError. Call with state.lock held."""
    config = state.config
    if request.mimetype != "multipart/form-data":  # 3
        raise dco("DCO01004", "MultipartUploadFault")
    try:
        files, form = request.files, request.form
    except Exception:  # noqa: BLE001  (any unparseable multipart body is DATEV's #DCO01004)
        raise dco("DCO01004", "MultipartUploadFault") from None
    if "file" not in files:  # 4, 5
        if "file" in form:
            raise dco("DCO01252", "FilenameIsRequiredFault")
        raise dco("DCO01220", "FilesParameterIsMissingFault")
    if len(files.getlist("file")) > 1:
        raise dco("DCO01004", "MultipartUploadFault")
    part = files["file"]
    if not part.filename:  # 5
        raise dco("DCO01252", "FilenameIsRequiredFault")
    if len(part.filename) > 255:  # 6
        raise dco("DCO01222", "FileNameTooLongFault")
    metadata, custom = _metadata()  # 7
    _check_lengths(metadata, config)  # 8, 9
    document_type = metadata.get("document_type") or None
    if document_type and document_type not in {t["name"] for t in company["document_types"]}:  # 10
        raise dco("DCO01010", "InvalidDocumentTypeFault")
    ext = checks.extension(part.filename)
    if ext not in ALLOWED_EXTENSIONS:  # 11
        raise dco("DCO01215", "UnsupportedFileTypeDuoNextFault")
    data = part.read()
    if not checks.content_type_matches(ext, part.mimetype) or not checks.magic_matches(ext, data):  # 12
        raise dco("DCO01219", "ContentTypeDoesNotMatchFileExtensionFault")
    if len(data) > config.max_upload_bytes:  # 13
        raise dco("DCO01216", "FileSizeDuoNextFault")
    if ext == "pdf" and not checks.pdf_parseable(data):  # 14
        raise dco("DCO01245", "PdfNotParseableFault")
    if guid is not None:
        if not GUID.match(guid):  # 15
            raise dco("DCO01234", "WrongUuidFormatFault")
        guid = guid.upper()
        if (company["id"], guid) in state.upload_keys()[0]:  # 16
            raise dco("DCO01012", "KeyConflictFault", 409)
    name, digest = checks.sanitize_filename(part.filename), checks.sha256(data)
    key = duplicate_key(config, digest, name, document_type)
    if key and (company["id"], key) in state.upload_keys()[1]:  # 17
        raise dco("DCO01253", "DuplicateFileFault")
    return {
        "guid": guid, "filename": name, "original_filename": part.filename, "sha256": digest,
        "size": len(data), "media_type": checks.MEDIA_TYPES[ext][0], "document_type": document_type,
        "note": metadata.get("note") or None, "metadata": metadata, "custom_metadata": custom,
        "duplicate_key": key,
    }
